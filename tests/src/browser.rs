//! A headless Chromium for the dashboard tests, driven through `chromedriver` with a small
//! blocking W3C WebDriver client.
//!
//! [`Browser::start`] starts the rig's `chromedriver` (`SLIPWAY_TEST_CHROMEDRIVER`) on a free
//! loopback port and opens one session of the rig's Chromium (`SLIPWAY_TEST_CHROMIUM`) with a
//! fresh profile that cannot reach anything but this machine. Dropping the [`Browser`] ends the
//! session and stops the driver. Every wait is bounded by the caller's timeout and polls;
//! nothing asserts how long something took.
//!
//! Chromium is heavy on a two-core machine, so a test uses one browser, and the browsers of a
//! test binary take turns (see [`Browser::start`]); `.config/nextest.toml` also runs the browser
//! test binaries one test at a time.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use reqwest::Method;
use reqwest::blocking::Client;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::command::tail;

/// The environment variable that names the Chromium binary; `scripts/rig/up` exports it.
pub const CHROMIUM_ENV: &str = "SLIPWAY_TEST_CHROMIUM";
/// The environment variable that names the `chromedriver` binary; `scripts/rig/up` exports it.
pub const CHROMEDRIVER_ENV: &str = "SLIPWAY_TEST_CHROMEDRIVER";
/// Where screenshots go (under `screenshots/`), so that CI can keep them; `scripts/test` sets
/// it to `test-artifacts/` in cargo's target directory. Without it they go there as well:
/// `$CARGO_TARGET_DIR/test-artifacts/` when that is set, else `target/test-artifacts/` in the
/// workspace.
pub const ARTIFACTS_ENV: &str = "SLIPWAY_TEST_ARTIFACTS";

/// A generous default for the `wait_*` methods: pages are rendered by a real server and a real
/// browser on a shared two-core machine. It only bounds how long a failing test hangs; a
/// passing wait returns as soon as its condition holds.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The viewport every browser starts with, in CSS pixels: a laptop screen's page area.
pub const DESKTOP_VIEWPORT: (u32, u32) = (1280, 900);

/// How long `chromedriver` may take to answer `/status` with `ready: true`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one WebDriver command may take. Creating the session starts Chromium, and
/// navigation waits for the page to load, so this is far above what either needs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The session's own page-load bound, below [`COMMAND_TIMEOUT`] so that a page that never
/// finishes loading is reported by WebDriver (with its message) rather than by the HTTP client.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a script run by [`Browser::execute`] may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ending the session may take when the browser is dropped.
const QUIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the `wait_*` methods look again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How much of the page source a failed wait shows.
const SOURCE_EXCERPT_BYTES: usize = 1500;
/// How many times a port that another process took in the meantime is replaced.
const PORT_ATTEMPTS: usize = 3;

/// The key under which W3C WebDriver passes element references, in both directions.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The flags Chromium runs with. Besides headless operation these make the browser quiet: no
/// first-run pages, component or extension updates, sync, crash uploads, pings or background
/// fetches, no proxy, and a host resolver that answers "not found" for every name except the
/// loopback ones, so a page can only ever reach servers on this machine.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    // The tests run as root, where Chromium's sandbox refuses to start.
    "--no-sandbox",
    "--disable-gpu",
    // Containers often have a small /dev/shm; Chromium then uses the temporary directory.
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-component-update",
    "--disable-background-networking",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-extensions",
    "--no-pings",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    // Without a desktop keyring Chromium would otherwise probe D-Bus for one.
    "--password-store=basic",
    "--mute-audio",
    // A scroll (the wheel, a key, a script) lands at once instead of animating, so a test that
    // reads the scroll position right after one sees where it ends.
    "--disable-smooth-scrolling",
    // Screenshots of the same page look the same on every machine.
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--lang=en-US",
];

/// One browser per test binary at a time: `cargo test` runs a binary's tests on parallel
/// threads, and two Chromiums on two cores make both tests slow enough to time out.
static BROWSER_SLOT: Mutex<()> = Mutex::new(());

/// An error that WebDriver reported: its error code (`no such element`, `stale element
/// reference`, `javascript error`, …) and message. Tests can find it in an [`anyhow::Error`]
/// with `downcast_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebDriverError {
    pub code: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebDriver error \"{}\": {}", self.code, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// Whether `error` is the WebDriver error `code`.
fn is_webdriver_error(error: &anyhow::Error, code: &str) -> bool {
    error
        .downcast_ref::<WebDriverError>()
        .is_some_and(|e| e.code == code)
}

/// A cookie as WebDriver reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    /// Seconds since the Unix epoch; `None` for a session cookie.
    #[serde(default)]
    pub expiry: Option<u64>,
    #[serde(default)]
    pub same_site: Option<String>,
}

/// The `chromedriver` child process. Dropping it kills the child by its handle and reaps it.
#[derive(Debug)]
struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base_url: String,
    /// chromedriver's own log (`--log-path`): every command and Chromium's start-up.
    log_path: PathBuf,
    /// What chromedriver printed to stdout and stderr, including why it could not start.
    output_path: PathBuf,
}

/// Why one attempt to start `chromedriver` failed.
enum DriverStartError {
    /// Another process took the port between finding it free and chromedriver binding it.
    PortTaken,
    Other(anyhow::Error),
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port in `dir` and waits until it is ready.
    fn start(binary: &Path, dir: &Path, http: &Client) -> anyhow::Result<Self> {
        // A free port is found by binding and releasing it, so another process can take it in
        // between; chromedriver then exits at once, and a new port is tried.
        for attempt in 1..=PORT_ATTEMPTS {
            match Self::try_start(binary, dir, http, attempt) {
                Ok(driver) => return Ok(driver),
                Err(DriverStartError::PortTaken) => continue,
                Err(DriverStartError::Other(error)) => return Err(error),
            }
        }
        bail!(
            "{} could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts",
            binary.display()
        )
    }

    fn try_start(
        binary: &Path,
        dir: &Path,
        http: &Client,
        attempt: usize,
    ) -> Result<Self, DriverStartError> {
        let port = free_loopback_port().map_err(DriverStartError::Other)?;
        let log_path = dir.join(format!("chromedriver-{attempt}.log"));
        let output_path = dir.join(format!("chromedriver-{attempt}.out"));
        let output = File::create(&output_path)
            .and_then(|file| Ok((file.try_clone()?, file)))
            .with_context(|| format!("create {}", output_path.display()))
            .map_err(DriverStartError::Other)?;
        let home = dir.join("home");
        // No `--allowed-ips`: without it chromedriver listens on 127.0.0.1 and [::1] only and
        // refuses remote clients, whereas passing it, even empty, makes it listen on every
        // interface. Chromium inherits the environment, so HOME points into the temporary
        // directory to keep its crash database and caches out of the real home directory.
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(output.0)
            .stderr(output.1)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))
            .map_err(DriverStartError::Other)?;
        let mut driver = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
            output_path,
        };
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            match driver.child.try_wait() {
                Ok(Some(status)) => {
                    let output = driver.output();
                    if output.contains("port not available")
                        || output.contains("Address already in use")
                    {
                        return Err(DriverStartError::PortTaken);
                    }
                    return Err(DriverStartError::Other(anyhow!(
                        "{} exited before it was ready ({status}):\n{output}\n{}",
                        binary.display(),
                        driver.log_tail()
                    )));
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(DriverStartError::Other(
                        anyhow::Error::new(error).context("cannot poll chromedriver"),
                    ));
                }
            }
            if driver.is_ready(http) {
                return Ok(driver);
            }
            if Instant::now() >= deadline {
                return Err(DriverStartError::Other(anyhow!(
                    "{} did not report ready on {} within {DRIVER_START_TIMEOUT:?}:\n{}\n{}",
                    binary.display(),
                    driver.base_url,
                    driver.output(),
                    driver.log_tail()
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Whether `GET /status` answers with `value.ready == true`; any failure means "not yet".
    fn is_ready(&self, http: &Client) -> bool {
        http.get(format!("{}/status", self.base_url))
            .timeout(Duration::from_secs(5))
            .send()
            .and_then(reqwest::blocking::Response::json::<Value>)
            .is_ok_and(|status| status["value"]["ready"] == Value::Bool(true))
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output_path).unwrap_or_default()
    }

    /// The end of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        format!(
            "---- end of {} ----\n{}",
            self.log_path.display(),
            tail(&log, 4000)
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only the child this harness started is killed, through its handle; `Child::kill`
        // does nothing harmful to a child that already exited. Chromium stays in this test's
        // process group, so a test runner that kills the group after a crash reaches it too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session. Dropping it ends the session (which closes Chromium) and then
/// stops `chromedriver`.
#[derive(Debug)]
pub struct Browser {
    http: Client,
    /// `http://127.0.0.1:PORT/session/ID`: every command's URL starts with it.
    session_url: String,
    driver: Driver,
    /// chromedriver's logs, Chromium's profile and its home directory. Declared after the
    /// driver so that it is removed only once the driver and the browser are gone.
    dir: TempDir,
    /// Held while this browser exists; declared last so that the next browser starts only
    /// after this one is completely gone.
    _slot: MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session with a fresh profile and a
    /// [`DESKTOP_VIEWPORT`]-sized viewport, showing `about:blank`.
    ///
    /// Fails with instructions when the rig's `SLIPWAY_TEST_CHROMEDRIVER` or
    /// `SLIPWAY_TEST_CHROMIUM` is not set. If another browser of this test binary exists, this
    /// waits until it is dropped.
    pub fn start() -> anyhow::Result<Self> {
        let chromedriver = rig_binary(CHROMEDRIVER_ENV)?;
        let chromium = rig_binary(CHROMIUM_ENV)?;
        // A test that panicked while holding the slot has still dropped its browser, so a
        // poisoned lock is as good as a free one.
        let slot = BROWSER_SLOT.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = TempDir::with_prefix("slipway-e2e-browser-")
            .context("create the browser's temporary directory")?;
        let profile = dir.path().join("profile");
        for path in [profile.clone(), dir.path().join("home")] {
            std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        }
        // The proxy settings of the environment must not apply to loopback WebDriver traffic.
        let http = Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .no_proxy()
            .build()
            .context("build the WebDriver HTTP client")?;
        let driver = Driver::start(&chromedriver, dir.path(), &http)?;
        let session_url = new_session(&http, &driver, &chromium, &profile)?;
        let browser = Self {
            http,
            session_url,
            driver,
            dir,
            _slot: slot,
        };
        browser
            .set_viewport_size(DESKTOP_VIEWPORT.0, DESKTOP_VIEWPORT.1)
            .context("give the new browser a desktop-sized viewport")?;
        Ok(browser)
    }

    /// Opens `url` and waits until the page has loaded. Only loopback addresses (and
    /// `about:`/`data:` URLs) are accepted, because the tests only talk to this machine.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        check_local_url(url)?;
        self.command(Method::POST, "url", Some(json!({ "url": url })))
            .with_context(|| format!("open {url}"))?;
        Ok(())
    }

    /// Reloads the current page and waits until it has loaded.
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.command(Method::POST, "refresh", Some(json!({})))
            .context("reload the page")?;
        Ok(())
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> anyhow::Result<String> {
        let value = self.command(Method::GET, "url", None)?;
        string_value(value, "the current URL")
    }

    /// The current page's `<title>`.
    pub fn title(&self) -> anyhow::Result<String> {
        let value = self.command(Method::GET, "title", None)?;
        string_value(value, "the page title")
    }

    /// The current page's DOM, serialised as HTML.
    pub fn page_source(&self) -> anyhow::Result<String> {
        let value = self.command(Method::GET, "source", None)?;
        string_value(value, "the page source")
    }

    /// The first element that matches the CSS selector `css`, now; an error if there is none.
    pub fn find(&self, css: &str) -> anyhow::Result<Element<'_>> {
        let value = self
            .command(Method::POST, "element", Some(css_locator(css)))
            .with_context(|| format!("find {css:?} on {}", self.url_for_errors()))?;
        Element::from_reference(self, css, &value)
    }

    /// Every element that matches the CSS selector `css` now, in document order; empty if
    /// there is none.
    pub fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element<'_>>> {
        let value = self
            .command(Method::POST, "elements", Some(css_locator(css)))
            .with_context(|| format!("find all {css:?} on {}", self.url_for_errors()))?;
        Element::from_references(self, css, value)
    }

    /// Waits up to `timeout` for an element that matches `css` and returns the first one.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element<'_>> {
        let found = poll(timeout, || Ok(self.find_all(css)?.into_iter().next()))?;
        found.ok_or_else(|| self.wait_failed(&format!("an element matching {css:?}"), timeout))
    }

    /// Waits up to `timeout` for an element that matches `css` and whose text contains
    /// `needle`, and returns the first such element.
    pub fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<Element<'_>> {
        let mut seen = Vec::new();
        let found = poll(timeout, || {
            seen.clear();
            for element in self.find_all(css)? {
                match element.text() {
                    Ok(text) if text.contains(needle) => return Ok(Some(element)),
                    Ok(text) => seen.push(text),
                    // The page replaced the element between finding and reading it; the next
                    // round finds its successor.
                    Err(error) if is_webdriver_error(&error, "stale element reference") => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(None)
        })?;
        found.ok_or_else(|| {
            let seen = if seen.is_empty() {
                "no element matched".to_owned()
            } else {
                format!("the matching elements' texts were {seen:?}")
            };
            self.wait_failed(
                &format!("an element matching {css:?} with text containing {needle:?} ({seen})"),
                timeout,
            )
        })
    }

    /// Waits up to `timeout` until the JavaScript expression `expression` is `true`. A script
    /// error counts as "not yet" (the page may still be setting up), and the last one is
    /// reported if the wait fails; a result that is not a boolean fails at once.
    pub fn wait_until(&self, expression: &str, timeout: Duration) -> anyhow::Result<()> {
        let script = format!("return (\n{expression}\n);");
        let mut last_error = None;
        let done = poll(timeout, || match self.execute(&script, Vec::new()) {
            Ok(Value::Bool(true)) => Ok(Some(())),
            Ok(Value::Bool(false)) => Ok(None),
            Ok(other) => Err(anyhow!(
                "the expression {expression:?} returned {other}, not a boolean"
            )),
            Err(error) if is_webdriver_error(&error, "javascript error") => {
                last_error = Some(format!("{error:#}"));
                Ok(None)
            }
            Err(error) => Err(error),
        })?;
        done.ok_or_else(|| {
            let last = last_error.map_or_else(String::new, |e| format!(" (last error: {e})"));
            self.wait_failed(&format!("{expression:?} to be true{last}"), timeout)
        })
    }

    /// Runs `script` as the body of a function in the page, with `args` as its `arguments`
    /// ([`Element::to_arg`] passes an element), and returns what it returns. Elements in the
    /// result come back as WebDriver references.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.command(
            Method::POST,
            "execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .with_context(|| format!("run the script {:?}", tail(script, 300)))
    }

    /// Resizes the window. Headless Chromium still reserves room for a browser's toolbars, so
    /// the viewport (what pages and screenshots see) comes out smaller than the window; use
    /// [`Browser::set_viewport_size`] for a page of a given size.
    pub fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command(
            Method::POST,
            "window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .with_context(|| format!("resize the window to {width}x{height}"))?;
        Ok(())
    }

    /// Resizes the window so that the viewport is `width`×`height` CSS pixels, for example
    /// 390×844 for a phone-width screenshot: the window is set to that size, and then grown by
    /// whatever the page reports it lost to the toolbars' room.
    pub fn set_viewport_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.set_window_size(width, height)?;
        let (inner_width, inner_height) = self.viewport_size()?;
        if (inner_width, inner_height) != (width, height) {
            let grown = |target: u32, inner: u32| target.saturating_mul(2).saturating_sub(inner);
            self.set_window_size(grown(width, inner_width), grown(height, inner_height))?;
        }
        let size = self.viewport_size()?;
        if size != (width, height) {
            bail!(
                "asked for a {width}x{height} viewport, but the page reports {}x{}",
                size.0,
                size.1
            );
        }
        Ok(())
    }

    /// The viewport's size in CSS pixels, as the page sees it.
    pub fn viewport_size(&self) -> anyhow::Result<(u32, u32)> {
        let size = self.execute(
            "return [window.innerWidth, window.innerHeight];",
            Vec::new(),
        )?;
        let dimension = |index: usize| {
            size[index]
                .as_u64()
                .and_then(|pixels| u32::try_from(pixels).ok())
                .ok_or_else(|| anyhow!("the page reports no viewport size: {size}"))
        };
        Ok((dimension(0)?, dimension(1)?))
    }

    /// Saves a PNG of the viewport as `screenshots/{name}.png` under `$SLIPWAY_TEST_ARTIFACTS`
    /// (or `target/test-artifacts/` in the workspace) and returns its path. `name` is letters,
    /// digits, `-`, `_` and `.`, and a later screenshot of the same name replaces it.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        check_artifact_name(name)?;
        let encoded = string_value(
            self.command(Method::GET, "screenshot", None)?,
            "the screenshot",
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .context("the screenshot is not valid base64")?;
        let dir = artifacts_dir().join("screenshots");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Presses and releases each key of `keys` in turn, as a keyboard would, sending the events
    /// to whatever has the focus (unlike [`Element::send_keys`], which focuses its element
    /// first). Special keys are WebDriver's code points, such as [`Browser::TAB`].
    pub fn press_keys(&self, keys: &str) -> anyhow::Result<()> {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                let key = key.to_string();
                [
                    json!({ "type": "keyDown", "value": key }),
                    json!({ "type": "keyUp", "value": key }),
                ]
            })
            .collect();
        self.perform(json!({ "type": "key", "id": "keyboard", "actions": actions }))
            .with_context(|| format!("press the keys {keys:?}"))
    }

    /// Turns the mouse wheel over the viewport point (`x`, `y`) by `delta_y` CSS pixels (negative
    /// scrolls up), as a person would: the page gets real wheel events, then scrolls.
    pub fn wheel(&self, x: u32, y: u32, delta_y: i32) -> anyhow::Result<()> {
        self.perform(json!({
            "type": "wheel",
            "id": "wheel",
            "actions": [{
                "type": "scroll", "origin": "viewport", "x": x, "y": y,
                "deltaX": 0, "deltaY": delta_y, "duration": 0,
            }],
        }))
        .with_context(|| format!("turn the wheel by {delta_y} px at {x},{y}"))
    }

    /// WebDriver's Tab key, for [`Browser::press_keys`].
    pub const TAB: &str = "\u{e004}";
    /// WebDriver's Enter key, for [`Browser::press_keys`].
    pub const ENTER: &str = "\u{e007}";

    /// Performs one input source's actions and releases every key and button afterwards, so
    /// that no key stays held for the next command.
    fn perform(&self, source: Value) -> anyhow::Result<()> {
        self.command(
            Method::POST,
            "actions",
            Some(json!({ "actions": [source] })),
        )?;
        self.command(Method::DELETE, "actions", None)?;
        Ok(())
    }

    /// The cookies visible to the current page.
    pub fn cookies(&self) -> anyhow::Result<Vec<Cookie>> {
        let value = self.command(Method::GET, "cookie", None)?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("WebDriver's cookies are not a list of cookies: {value}"))
    }

    /// Deletes every cookie visible to the current page.
    pub fn delete_all_cookies(&self) -> anyhow::Result<()> {
        self.command(Method::DELETE, "cookie", None)?;
        Ok(())
    }

    /// Sends one WebDriver command to this session (`path` is relative to the session) and
    /// returns its `value`.
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = if path.is_empty() {
            self.session_url.clone()
        } else {
            format!("{}/{path}", self.session_url)
        };
        send(&self.http, method, &url, body)
    }

    /// The current URL for an error message, or a note that even that failed.
    fn url_for_errors(&self) -> String {
        self.current_url()
            .unwrap_or_else(|e| format!("(the current URL is unknown: {e:#})"))
    }

    /// The error of a wait for `what` that did not succeed within `timeout`: where the browser
    /// is, and the start of the page's body, so that a CI log shows what was there instead.
    fn wait_failed(&self, what: &str, timeout: Duration) -> anyhow::Error {
        let title = self.title().unwrap_or_else(|e| format!("(unknown: {e:#})"));
        let source = match self.page_source() {
            Ok(source) => source_excerpt(&source, SOURCE_EXCERPT_BYTES),
            Err(e) => format!("(the page source is unavailable: {e:#})"),
        };
        anyhow!(
            "timed out after {timeout:?} waiting for {what} on {} (title {title:?}); the \
             page's source from <body>:\n{source}",
            self.url_for_errors()
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium and wait for it. If that fails,
        // chromedriver's /shutdown closes every session it has; the driver itself is killed
        // after that, when the `driver` field is dropped.
        let ended = self
            .http
            .delete(&self.session_url)
            .timeout(QUIT_TIMEOUT)
            .send()
            .is_ok_and(|response| response.status().is_success());
        if !ended {
            let _ = self
                .http
                .get(format!("{}/shutdown", self.driver.base_url))
                .timeout(QUIT_TIMEOUT)
                .send();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- chromedriver (pid {}), its files in {} ----\n{}\n{}",
                self.driver.child.id(),
                self.dir.path().display(),
                self.driver.output(),
                self.driver.log_tail()
            );
        }
    }
}

/// One element of the page, found by a CSS selector, which error messages name.
#[derive(Debug, Clone)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
    css: String,
}

impl<'a> Element<'a> {
    fn from_reference(browser: &'a Browser, css: &str, value: &Value) -> anyhow::Result<Self> {
        let id = value[ELEMENT_KEY].as_str().ok_or_else(|| {
            anyhow!("WebDriver returned no element reference for {css:?}: {value}")
        })?;
        Ok(Self {
            browser,
            id: id.to_owned(),
            css: css.to_owned(),
        })
    }

    fn from_references(browser: &'a Browser, css: &str, value: Value) -> anyhow::Result<Vec<Self>> {
        let Value::Array(references) = value else {
            bail!("WebDriver returned no list of elements for {css:?}: {value}");
        };
        references
            .iter()
            .map(|reference| Self::from_reference(browser, css, reference))
            .collect()
    }

    /// The first descendant of this element that matches `css`.
    pub fn find(&self, css: &str) -> anyhow::Result<Element<'a>> {
        let value = self.command(Method::POST, "element", Some(css_locator(css)))?;
        Self::from_reference(self.browser, &format!("{} {css}", self.css), &value)
    }

    /// Every descendant of this element that matches `css`, in document order.
    pub fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element<'a>>> {
        let value = self.command(Method::POST, "elements", Some(css_locator(css)))?;
        Self::from_references(self.browser, &format!("{} {css}", self.css), value)
    }

    /// Clicks the element's centre, scrolling it into view first.
    pub fn click(&self) -> anyhow::Result<()> {
        self.command(Method::POST, "click", Some(json!({})))?;
        Ok(())
    }

    /// Types `text` into the element, after what it already holds.
    pub fn send_keys(&self, text: &str) -> anyhow::Result<()> {
        self.command(Method::POST, "value", Some(json!({ "text": text })))?;
        Ok(())
    }

    /// Empties an input or text area.
    pub fn clear(&self) -> anyhow::Result<()> {
        self.command(Method::POST, "clear", Some(json!({})))?;
        Ok(())
    }

    /// The element's rendered text, as a user sees it.
    pub fn text(&self) -> anyhow::Result<String> {
        let value = self.command(Method::GET, "text", None)?;
        string_value(value, &format!("the text of {:?}", self.css))
    }

    /// The attribute `name`, or `None` when the element does not have it. For `value` of an
    /// input, chromedriver reports what the input currently holds.
    pub fn attribute(&self, name: &str) -> anyhow::Result<Option<String>> {
        check_path_segment(name)?;
        match self.command(Method::GET, &format!("attribute/{name}"), None)? {
            Value::Null => Ok(None),
            Value::String(value) => Ok(Some(value)),
            other => Ok(Some(other.to_string())),
        }
    }

    /// The DOM property `name` (such as `checked` or `value`), as JSON.
    pub fn property(&self, name: &str) -> anyhow::Result<Value> {
        check_path_segment(name)?;
        self.command(Method::GET, &format!("property/{name}"), None)
    }

    /// Whether the element is rendered visibly.
    pub fn is_displayed(&self) -> anyhow::Result<bool> {
        match self.command(Method::GET, "displayed", None)? {
            Value::Bool(displayed) => Ok(displayed),
            other => bail!(
                "WebDriver's answer to \"is {:?} displayed\" is {other}",
                self.css
            ),
        }
    }

    /// This element as an argument of [`Browser::execute`].
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Sends a command about this element (`path` is relative to it); errors name its
    /// selector.
    fn command(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        self.browser
            .command(method, &format!("element/{}/{path}", self.id), body)
            .with_context(|| format!("{what} on the element {:?}", self.css))
    }
}

/// Reads the rig variable `name`, which names an executable; the error says how to get it.
fn rig_binary(name: &str) -> anyhow::Result<PathBuf> {
    rig_binary_from(name, std::env::var_os(name))
}

/// [`rig_binary`] with the variable's value given, so that its messages can be tested without
/// changing the process's environment.
fn rig_binary_from(name: &str, value: Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
    let path = match value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => bail!(
            "the environment variable {name} is not set: run scripts/rig/up (it installs \
             chromium and chromium-driver) and load the env file it writes \
             (`set -a; . /tmp/slipway-rig/env; set +a` by default), or run scripts/test"
        ),
    };
    if !path.is_file() {
        bail!(
            "{name}={} does not exist: run scripts/rig/up (it installs chromium and \
             chromium-driver)",
            path.display()
        );
    }
    Ok(path)
}

/// Creates the WebDriver session and returns its URL.
fn new_session(
    http: &Client,
    driver: &Driver,
    chromium: &Path,
    profile: &Path,
) -> anyhow::Result<String> {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&arg| arg.to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let capabilities = json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                // The harness polls by itself, so WebDriver never waits implicitly.
                "timeouts": {
                    "implicit": 0,
                    "pageLoad": millis(PAGE_LOAD_TIMEOUT),
                    "script": millis(SCRIPT_TIMEOUT),
                },
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": args,
                },
            },
        },
    });
    let value = send(
        http,
        Method::POST,
        &format!("{}/session", driver.base_url),
        Some(capabilities),
    )
    .with_context(|| {
        format!(
            "start a Chromium session ({}) through chromedriver:\n{}",
            chromium.display(),
            driver.log_tail()
        )
    })?;
    let id = value["sessionId"]
        .as_str()
        .ok_or_else(|| anyhow!("chromedriver created a session without an id: {value}"))?;
    Ok(format!("{}/session/{id}", driver.base_url))
}

/// Sends one WebDriver request and returns the `value` of its answer, or the WebDriver error
/// it reports.
fn send(http: &Client, method: Method, url: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .with_context(|| format!("WebDriver request {method} {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .with_context(|| format!("read the answer to {method} {url}"))?;
    let mut answer: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the answer to {method} {url} ({status}) is not JSON: {}",
            tail(&text, 500)
        )
    })?;
    let value = answer["value"].take();
    if let Some(code) = value["error"].as_str() {
        return Err(WebDriverError {
            code: code.to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        }
        .into());
    }
    if !status.is_success() {
        bail!(
            "WebDriver answered {method} {url} with {status}: {}",
            tail(&text, 500)
        );
    }
    Ok(value)
}

/// Calls `attempt` until it returns `Some`, it fails, or `timeout` has passed (then `None`). It
/// always tries at least once, and sleeps [`POLL_INTERVAL`] between tries.
fn poll<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = attempt()? {
            return Ok(Some(found));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// The locator of a CSS selector.
fn css_locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string_value(value: Value, what: &str) -> anyhow::Result<String> {
    match value {
        Value::String(text) => Ok(text),
        other => bail!("WebDriver returned {other} as {what}, not a string"),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Finds a port on 127.0.0.1 that is free now, by binding and releasing it.
fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("find a free port on 127.0.0.1 for chromedriver")?;
    Ok(listener
        .local_addr()
        .context("the address of a free port")?
        .port())
}

/// Refuses URLs that would leave this machine: the tests only serve on loopback, and a typo
/// that points elsewhere should fail plainly rather than as a resolver error page.
fn check_local_url(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    match parsed.scheme() {
        "about" | "data" => return Ok(()),
        "http" | "https" => {}
        other => {
            bail!("{url:?}: the browser only opens http(s), about: and data: URLs, not {other}:")
        }
    }
    // An IPv6 host keeps its brackets in `host_str`.
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !local {
        bail!("{url:?} is not on a loopback address; the tests only use 127.0.0.1");
    }
    Ok(())
}

/// Screenshot names become file names, so they cannot name another directory.
fn check_artifact_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        bail!("{name:?} is not a valid screenshot name: use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Attribute and property names go into the command's path.
fn check_path_segment(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
    if !valid {
        bail!("{name:?} is not an attribute or property name");
    }
    Ok(())
}

/// `$SLIPWAY_TEST_ARTIFACTS`, or `test-artifacts` in cargo's target directory
/// (`$CARGO_TARGET_DIR`, relative to the workspace when it is relative, else `target/`).
fn artifacts_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    artifacts_dir_from(
        workspace,
        std::env::var_os(ARTIFACTS_ENV),
        std::env::var_os("CARGO_TARGET_DIR"),
    )
}

/// [`artifacts_dir`] with the variables given, so that it can be tested without changing the
/// process's environment.
fn artifacts_dir_from(
    workspace: &Path,
    artifacts: Option<std::ffi::OsString>,
    target: Option<std::ffi::OsString>,
) -> PathBuf {
    match (artifacts, target) {
        (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
        (_, Some(target)) if !target.is_empty() => workspace.join(target).join("test-artifacts"),
        _ => workspace.join("target").join("test-artifacts"),
    }
}

/// Up to `max` bytes of `source` from its `<body` tag (or its start when it has none), cut at
/// a character boundary, for failure messages: the head is mostly styles and scripts.
fn source_excerpt(source: &str, max: usize) -> String {
    let from = source.find("<body").unwrap_or(0);
    let rest = &source[from..];
    if rest.len() <= max {
        return rest.to_owned();
    }
    let mut end = max;
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &rest[..end], rest.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_opened() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/x",
            "http://localhost:3000/login",
            "http://[::1]:8080/",
            "about:blank",
            "data:text/html,<p>hi</p>",
        ] {
            assert!(check_local_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://example.com/",
            "https://10.0.0.1/",
            "http://localhost.example.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_local_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn screenshot_names_stay_in_their_directory() {
        for name in ["overview", "build-page.phone", "a_1"] {
            assert!(check_artifact_name(name).is_ok(), "{name}");
        }
        for name in ["", ".hidden", "../x", "a/b", "a b", "ü"] {
            assert!(check_artifact_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn screenshots_go_to_the_named_directory_or_the_target_directory() {
        let workspace = Path::new("/work/repo");
        assert_eq!(
            artifacts_dir_from(workspace, Some("/ci/artifacts".into()), Some("/t".into())),
            PathBuf::from("/ci/artifacts")
        );
        assert_eq!(
            artifacts_dir_from(workspace, Some("".into()), Some("/t".into())),
            PathBuf::from("/t/test-artifacts")
        );
        assert_eq!(
            artifacts_dir_from(workspace, None, Some("build".into())),
            PathBuf::from("/work/repo/build/test-artifacts")
        );
        assert_eq!(
            artifacts_dir_from(workspace, None, None),
            PathBuf::from("/work/repo/target/test-artifacts")
        );
    }

    #[test]
    fn excerpts_start_at_the_body_and_respect_characters() {
        let source = "<html><head><style>x</style></head><body><p>ééé</p></body></html>";
        assert_eq!(
            source_excerpt(source, 1000),
            "<body><p>ééé</p></body></html>"
        );
        // The first "é" is bytes 9 and 10 of the excerpt and the second 11 and 12, so a cut
        // after 12 bytes would split the second one and moves back to 11.
        let cut = source_excerpt(source, 12);
        assert!(cut.starts_with("<body><p>é…"), "{cut}");
        assert_eq!(source_excerpt("plain", 100), "plain");
    }

    #[test]
    fn a_missing_rig_variable_says_how_to_get_it() {
        for value in [None, Some(std::ffi::OsString::new())] {
            let error = rig_binary_from(CHROMEDRIVER_ENV, value)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(
                error.contains("SLIPWAY_TEST_CHROMEDRIVER is not set")
                    && error.contains("scripts/rig/up"),
                "{error}"
            );
        }
        let error = rig_binary_from(CHROMIUM_ENV, Some("/nonexistent/chromium".into()))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.contains("/nonexistent/chromium does not exist")
                && error.contains("scripts/rig/up"),
            "{error}"
        );
    }

    #[test]
    fn webdriver_errors_are_recognised_through_context() {
        let error = anyhow::Error::new(WebDriverError {
            code: "stale element reference".to_owned(),
            message: "gone".to_owned(),
        })
        .context("read the text");
        assert!(is_webdriver_error(&error, "stale element reference"));
        assert!(!is_webdriver_error(&error, "no such element"));
        assert!(!is_webdriver_error(&anyhow!("other"), "no such element"));
    }
}
