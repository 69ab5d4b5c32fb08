//! Checks of the browser harness itself against tiny pages served here, without Slipway: if
//! these fail, the dashboard tests' verdicts cannot be trusted either.
//!
//! They need the rig's Chromium and chromedriver (`scripts/rig/up`) and fail, never skip,
//! without them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use slipway_e2e::{Browser, DESKTOP_VIEWPORT, WAIT_TIMEOUT, WebDriverError};

/// The first eight bytes of every PNG file.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

const FORM_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness form</title></head>
<body>
  <form method="post" action="/greet">
    <label for="name">Your name</label>
    <input id="name" name="name" value="placeholder">
    <button id="send" type="submit">Send</button>
  </form>
</body>
</html>
"#;

/// A page whose script appends a numbered line every 100 ms, like a live build log.
const TICKER_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness ticker</title></head>
<body>
  <ol id="lines"></ol>
  <p id="hidden" style="display: none">not shown</p>
  <script>
    let count = 0;
    setInterval(() => {
      count += 1;
      const line = document.createElement("li");
      line.textContent = "line " + count;
      document.getElementById("lines").appendChild(line);
    }, 100);
  </script>
</body>
</html>
"#;

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

/// The answer to the form: the greeting, and a cookie for `Browser::cookies` to find.
async fn greet(axum::Form(greeting): axum::Form<Greeting>) -> impl IntoResponse {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Greeted</title>\
         </head><body><h1 id=\"greeting\">Hello, {}!</h1></body></html>",
        escape_html(&greeting.name)
    );
    (
        [(header::SET_COOKIE, "harness_seen=yes; Path=/; HttpOnly")],
        Html(page),
    )
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The pages above on `127.0.0.1:<ephemeral port>`, served from a private runtime on a
/// background thread so that the test thread can block on the browser. Dropping it stops the
/// server.
struct PageServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PageServer {
    fn start() -> anyhow::Result<Self> {
        // Binding on the test's thread makes the address known before the browser needs it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("bind the page server to 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("make the page server's socket non-blocking")?;
        let address = listener.local_addr().context("the page server's address")?;
        let app = Router::new()
            .route("/", get(|| async { Html(FORM_PAGE) }))
            .route("/greet", post(greet))
            .route("/ticker", get(|| async { Html(TICKER_PAGE) }));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build the page server's runtime")?;
        let thread = std::thread::Builder::new()
            .name("page-server".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => panic!("the page server cannot use its socket: {error}"),
                    };
                    // The browser keeps connections alive, so the server stops at once
                    // instead of waiting for them to close.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(error) = result {
                                panic!("the page server failed: {error}");
                            }
                        }
                        _ = stop => {}
                    }
                });
            })
            .context("start the page server's thread")?;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a PNG's width and height from its header chunk, which always comes first.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let width = png.get(16..20)?.try_into().ok()?;
    let height = png.get(20..24)?.try_into().ok()?;
    Some((u32::from_be_bytes(width), u32::from_be_bytes(height)))
}

#[test]
fn a_form_is_filled_in_submitted_and_photographed() -> anyhow::Result<()> {
    let server = PageServer::start()?;
    let browser = Browser::start()?;

    browser.goto(&server.url("/"))?;
    assert_eq!(browser.title()?, "Harness form");
    assert_eq!(browser.find("label[for=name]")?.text()?, "Your name");
    let input = browser.find("#name")?;
    assert!(input.is_displayed()?);
    assert_eq!(input.attribute("value")?.as_deref(), Some("placeholder"));
    assert_eq!(input.attribute("data-absent")?, None);
    input.clear()?;
    input.send_keys("Ada & <Grace>")?;
    assert_eq!(input.property("value")?, json!("Ada & <Grace>"));
    assert!(browser.cookies()?.is_empty(), "{:?}", browser.cookies()?);

    browser.find("#send")?.click()?;
    let greeting = browser.wait_for_text("#greeting", "Hello", WAIT_TIMEOUT)?;
    // The server escaped the name, so the browser shows it exactly as it was typed.
    assert_eq!(greeting.text()?, "Hello, Ada & <Grace>!");
    assert_eq!(browser.current_url()?, server.url("/greet"));
    assert_eq!(browser.title()?, "Greeted");

    let cookies = browser.cookies()?;
    let seen = cookies
        .iter()
        .find(|cookie| cookie.name == "harness_seen")
        .with_context(|| format!("the server's cookie is missing: {cookies:?}"))?;
    assert_eq!(seen.value, "yes");
    assert!(seen.http_only, "{seen:?}");
    browser.delete_all_cookies()?;
    assert!(browser.cookies()?.is_empty(), "{:?}", browser.cookies()?);

    // A missing element is an error that names the selector and WebDriver's reason.
    let Err(missing) = browser.find("#no-such-thing") else {
        panic!("found an element that does not exist");
    };
    let message = format!("{missing:#}");
    assert!(message.contains("#no-such-thing"), "{message}");
    assert_eq!(
        missing
            .downcast_ref::<WebDriverError>()
            .map(|e| e.code.as_str()),
        Some("no such element"),
        "{message}"
    );

    let path = browser.screenshot("harness-form-result")?;
    let png = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    assert!(
        png.starts_with(&PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
    // A screenshot shows the viewport, which starts at the desktop size.
    assert_eq!(browser.viewport_size()?, DESKTOP_VIEWPORT);
    assert_eq!(png_size(&png), Some(DESKTOP_VIEWPORT), "{}", path.display());

    // Headless Chromium keeps room for toolbars, so a window of a phone's size has a shorter
    // viewport than the phone; set_viewport_size makes up for that.
    browser.set_window_size(390, 844)?;
    let (width, height) = browser.viewport_size()?;
    assert!(width == 390 && height < 844, "{width}x{height}");
    browser.set_viewport_size(390, 844)?;
    assert_eq!(browser.viewport_size()?, (390, 844));
    let phone = browser.screenshot("harness-form-result-phone")?;
    let png = std::fs::read(&phone).with_context(|| format!("read {}", phone.display()))?;
    assert!(
        png.starts_with(&PNG_SIGNATURE),
        "{} is not a PNG",
        phone.display()
    );
    assert_eq!(png_size(&png), Some((390, 844)), "{}", phone.display());
    Ok(())
}

#[test]
fn a_page_that_appends_lines_is_waited_for_and_read() -> anyhow::Result<()> {
    let server = PageServer::start()?;
    let browser = Browser::start()?;

    browser.goto(&server.url("/ticker"))?;
    browser.wait_until(
        "document.querySelectorAll('#lines li').length >= 5",
        WAIT_TIMEOUT,
    )?;
    let lines = browser.find_all("#lines li")?;
    assert!(lines.len() >= 5, "{} lines", lines.len());
    let texts = lines
        .iter()
        .take(5)
        .map(|line| line.text())
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(texts, ["line 1", "line 2", "line 3", "line 4", "line 5"]);

    // Elements also search inside themselves and can be handed to scripts.
    let list = browser.find("#lines")?;
    assert_eq!(list.find("li")?.text()?, "line 1");
    assert_eq!(
        browser.execute(
            "return arguments[0].firstElementChild.textContent + arguments[1];",
            vec![list.to_arg(), json!("!")],
        )?,
        json!("line 1!")
    );
    assert!(!browser.find("#hidden")?.is_displayed()?);

    // A line that is not there yet is waited for.
    let later = browser.wait_for_text("#lines li", "line 12", WAIT_TIMEOUT)?;
    assert_eq!(later.text()?, "line 12");
    assert!(browser.find_all("#no-such-thing")?.is_empty());

    // A wait that cannot succeed fails within its bound and shows the page it looked at.
    let Err(error) = browser.wait_for("#never", Duration::from_millis(300)) else {
        panic!("found an element that does not exist");
    };
    let message = format!("{error:#}");
    assert!(
        message.contains("#never") && message.contains("<body") && message.contains("line 1"),
        "{message}"
    );
    let Err(error) = browser.wait_until("document.title === 'never'", Duration::from_millis(300))
    else {
        panic!("the title changed by itself");
    };
    assert!(format!("{error:#}").contains("Harness ticker"), "{error:#}");
    Ok(())
}
