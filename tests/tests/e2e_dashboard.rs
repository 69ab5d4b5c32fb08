//! Issue 6's browser acceptance: the dashboard in headless Chromium against a real
//! `slipway serve`, real git server, Docker engine and registry. A user signs in, a signed
//! webhook makes a build appear on the overview, its page shows log lines arriving live,
//! the "follow the end" toggle follows, stops when the reader scrolls up or unticks it, and
//! follows again, cancel and retry work from the page, and a read-only user sees no buttons and
//! gets 403 from the API. Basic, 256-colour and truecolour log text shows in its colours under
//! the page's Content-Security-Policy, rendered by the server and streamed by the script alike;
//! the build and repository pages fit a phone's width, Tab goes from the skip link through the
//! navigation, and every control on the build page has a name. Screenshots of the main pages
//! are written as test artifacts.

use std::time::Duration;

use slipway_e2e::{
    Browser, DESKTOP_VIEWPORT, Fixture, RepoFile, Rule, Slipway, WAIT_TIMEOUT, ZERO_ID,
};

/// Long enough for a real build on two busy cores.
const BUILD_WAIT: Duration = Duration::from_secs(180);

/// A Dockerfile whose `RUN` step prints a numbered line every 0.3 s for `lines` lines, naming
/// the fixture so that no cached layer can skip it.
fn ticking_app(fx: &Fixture, lines: u32) -> Vec<RepoFile> {
    let marker = fx.name().replace('/', "-");
    let dockerfile = format!(
        "FROM {}\nRUN i=1; while [ $i -le {lines} ]; do echo \"tick-$i {marker}\"; i=$((i+1)); sleep 0.3; done\nCMD [\"true\"]\n",
        fx.rig.base_image
    );
    vec![RepoFile::text("Dockerfile", &dockerfile)]
}

/// A Dockerfile whose build log holds 100,000 numbered lines.
fn chatty_app(fx: &Fixture) -> Vec<RepoFile> {
    let marker = fx.name().replace('/', "-");
    let dockerfile = format!(
        "FROM {}\nRUN echo {marker} && seq 1 100000\nCMD [\"true\"]\n",
        fx.rig.base_image
    );
    vec![RepoFile::text("Dockerfile", &dockerfile)]
}

fn sign_in(browser: &Browser, slipway: &Slipway, name: &str, password: &str) -> anyhow::Result<()> {
    browser.delete_all_cookies()?;
    browser.goto(&slipway.url("/login"))?;
    browser.wait_for("#name", WAIT_TIMEOUT)?.send_keys(name)?;
    browser.find("#password")?.send_keys(password)?;
    browser.find("form button[type=submit]")?.click()?;
    browser.wait_for_text("header", "Signed in as", WAIT_TIMEOUT)?;
    Ok(())
}

#[test]
fn a_writer_watches_a_build_live_cancels_it_and_retries_it() -> anyhow::Result<()> {
    let fx = Fixture::new("dashboard-live");
    // Long enough to watch the log follow its end, stop following and follow again.
    let commit = fx
        .repo
        .commit("A slow, chatty build", &ticking_app(&fx, 80));
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let browser = Browser::start()?;

    browser.goto(&slipway.url("/login"))?;
    browser.wait_for("#name", WAIT_TIMEOUT)?;
    browser.screenshot("login")?;
    sign_in(&browser, &slipway, Slipway::ADMIN, Slipway::ADMIN_PASSWORD)?;
    browser.wait_for_text("h1", "Builds", WAIT_TIMEOUT)?;

    // A signed webhook makes the build appear on the overview.
    let answer = fx.deliver_push(&slipway, &fx.push_payload("refs/heads/main", ZERO_ID));
    answer.assert_status(202);
    let id = answer.single_build_id();
    browser.refresh()?;
    browser.wait_for_text("table", &commit[..10], WAIT_TIMEOUT)?;
    browser.screenshot("overview")?;

    // Its page shows log lines arriving without a reload.
    browser.find(&format!("a[href='/builds/{id}']"))?.click()?;
    browser.wait_for("#log", WAIT_TIMEOUT)?;
    browser.execute("window.slipwayTestMarker = 'same page';", vec![])?;
    browser.wait_until(
        "document.getElementById('log').textContent.includes('tick-3 ')",
        BUILD_WAIT,
    )?;
    let lines_then = line_count(&browser)?;
    browser.wait_until(
        &format!(
            "document.getElementById('log').textContent.split('\\n').length > {lines_then} + 3"
        ),
        WAIT_TIMEOUT,
    )?;
    assert_eq!(
        browser.execute("return window.slipwayTestMarker || null;", vec![])?,
        "same page",
        "the lines arrived on the same page, not through a reload"
    );
    assert_eq!(browser.find("#build-status")?.text()?, "running");
    browser.screenshot("build-running")?;

    follow_the_end(&browser)?;
    browser.set_viewport_size(DESKTOP_VIEWPORT.0, DESKTOP_VIEWPORT.1)?;

    // Cancel from the page.
    browser.find("form[action$='/cancel'] button")?.click()?;
    browser.wait_for_text("#build-status", "cancelled", WAIT_TIMEOUT)?;
    let (build, error) = slipway.wait_for_end(&id, "cancelled", WAIT_TIMEOUT);
    assert!(error.contains(Slipway::ADMIN), "{build:#}");

    // Retry from the page: a new build, which runs to the end and is shown ending live.
    browser
        .wait_for("form[action$='/retry'] button", WAIT_TIMEOUT)?
        .click()?;
    browser.wait_until(
        &format!("!location.pathname.endsWith('{id}') && location.pathname.startsWith('/builds/')"),
        WAIT_TIMEOUT,
    )?;
    let retry_id = browser
        .current_url()?
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    browser.wait_until(
        "document.getElementById('log').dataset.state === 'ended'",
        BUILD_WAIT,
    )?;
    assert_eq!(browser.find("#build-status")?.text()?, "succeeded");
    let retried = slipway.build(&retry_id);
    assert_eq!(retried["retry_of"], id.as_str(), "{retried:#}");
    assert_eq!(retried["status"], "succeeded", "{retried:#}");
    let states: Vec<&str> = retried["timeline"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["state"].as_str()).collect())
        .unwrap_or_default();
    for state in ["queued", "cloning", "building", "pushing", "succeeded"] {
        assert!(states.contains(&state), "timeline {states:?} lacks {state}");
    }
    // The timeline is drawn by the server; a reload shows the phases the build went through.
    browser.refresh()?;
    browser.wait_for_text("ol.timeline", "pushing", WAIT_TIMEOUT)?;
    browser.screenshot("build-succeeded")?;

    // The repository and its deliveries.
    browser.goto(&slipway.url(&format!("/repos/{}", fx.name())))?;
    browser.wait_for_text("h1", fx.name(), WAIT_TIMEOUT)?;
    browser.wait_for("svg.duration-chart", WAIT_TIMEOUT)?;
    browser.screenshot("repository")?;
    browser.goto(&slipway.url(&format!("/repos/{}/deliveries", fx.name())))?;
    browser
        .wait_for("table", WAIT_TIMEOUT)?
        .find("a")?
        .click()?;
    browser.wait_for_text("h2", "Why each rule", WAIT_TIMEOUT)?;
    browser.screenshot("delivery")?;

    // Readable on a phone: the overview at 390 px wide has no page-wide horizontal scroll.
    browser.set_viewport_size(390, 844)?;
    browser.goto(&slipway.url("/"))?;
    browser.wait_for("table", WAIT_TIMEOUT)?;
    let overflow = browser.execute(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        vec![],
    )?;
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "the page scrolls sideways by {overflow} px"
    );
    browser.screenshot("overview-phone")?;
    Ok(())
}

/// Whether the page is scrolled to its end: the window scrolls with the log, whose last line
/// is then on screen.
const AT_THE_END: &str = "window.scrollY > 0 && \
     window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2 && \
     document.getElementById('log').getBoundingClientRect().bottom <= window.innerHeight + 2";

/// The follow toggle, on a running build's page whose log is arriving: while it is on, new lines
/// scroll into view; scrolling up with the wheel turns it off, and then the page stays where the
/// reader put it; ticking it follows again, and unticking it (here by keyboard) stops again.
fn follow_the_end(browser: &Browser) -> anyhow::Result<()> {
    // A short window, so that the page scrolls after a few lines.
    browser.set_viewport_size(DESKTOP_VIEWPORT.0, 500)?;
    let follow = |expected: bool| -> anyhow::Result<()> {
        let checked = browser.find("#follow-tail")?.property("checked")?;
        assert_eq!(checked, expected, "the follow toggle is {checked}");
        Ok(())
    };
    follow(true)?;
    browser.wait_until(
        "document.documentElement.scrollHeight > window.innerHeight + 200",
        BUILD_WAIT,
    )?;

    // Following: each new line is brought into view.
    let lines = line_count(browser)?;
    browser.wait_until(
        &format!("{} && {AT_THE_END}", more_lines_than(lines + 2)),
        WAIT_TIMEOUT,
    )?;

    // The reader scrolls up with the wheel: following stops, and new lines do not move the page.
    browser.wheel(640, 250, -300)?;
    browser.wait_until(
        "!document.getElementById('follow-tail').checked",
        WAIT_TIMEOUT,
    )?;
    let top = scroll_top(browser)?;
    let lines = line_count(browser)?;
    browser.wait_until(&more_lines_than(lines + 2), WAIT_TIMEOUT)?;
    assert_eq!(
        scroll_top(browser)?,
        top,
        "the page stayed where the reader scrolled to"
    );
    assert_eq!(
        browser.execute(&format!("return {AT_THE_END};"), vec![])?,
        false
    );
    browser.screenshot("build-log-not-following")?;

    // Ticking the box follows again at once, and then with every line.
    browser.find("#follow-tail")?.click()?;
    follow(true)?;
    let lines = line_count(browser)?;
    browser.wait_until(
        &format!("{} && {AT_THE_END}", more_lines_than(lines + 2)),
        WAIT_TIMEOUT,
    )?;

    // Unticking it with the keyboard (focused without scrolling, then Space) stops following
    // at the end of the log: the page keeps its place while lines arrive below.
    browser.execute(
        "document.getElementById('follow-tail').focus({ preventScroll: true });",
        vec![],
    )?;
    browser.press_keys(" ")?;
    follow(false)?;
    let top = scroll_top(browser)?;
    let lines = line_count(browser)?;
    browser.wait_until(&more_lines_than(lines + 2), WAIT_TIMEOUT)?;
    assert_eq!(scroll_top(browser)?, top, "the page kept its place");
    assert_eq!(
        browser.execute(&format!("return {AT_THE_END};"), vec![])?,
        false
    );
    Ok(())
}

/// A condition: the log holds more than `lines` lines.
fn more_lines_than(lines: i64) -> String {
    format!("document.getElementById('log').textContent.split('\\n').length > {lines}")
}

fn scroll_top(browser: &Browser) -> anyhow::Result<f64> {
    let top = browser.execute("return window.scrollY;", vec![])?;
    top.as_f64()
        .ok_or_else(|| anyhow::anyhow!("window.scrollY is {top}"))
}

fn line_count(browser: &Browser) -> anyhow::Result<i64> {
    let count = browser.execute(
        "return document.getElementById('log').textContent.split('\\n').length;",
        vec![],
    )?;
    Ok(count.as_i64().unwrap_or(0))
}

#[test]
fn a_reader_sees_a_huge_log_but_no_buttons_and_gets_403_from_the_api() -> anyhow::Result<()> {
    let fx = Fixture::new("dashboard-reader");
    fx.repo
        .commit("A build with a 100,000-line log", &chatty_app(&fx));
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let id = fx.push_main(&slipway);
    slipway.wait_for_success(&id);

    let password = "reader-password";
    let added = slipway.cli_with_input(
        &["user", "add", "--role", "read", "reader"],
        &format!("{password}\n"),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // On the database: through the API (the administrator's token) it would be theirs.
    let created = slipway.cli_on_database(
        &["token", "create", "--user", "reader", "--scope", "owner"],
        "",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();

    // The API refuses the reader's writes with 403 (the token's scope does not lift the role).
    for action in ["cancel", "retry"] {
        let response = slipway
            .request(reqwest::Method::POST, &format!("/api/builds/{id}/{action}"))
            .bearer_auth(&token)
            .send()?;
        assert_eq!(response.status().as_u16(), 403, "{action}");
        let body: serde_json::Value = response.json()?;
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    let anonymous = slipway.get_anonymous(&format!("/api/builds/{id}"));
    anonymous.assert_status(401);

    let browser = Browser::start()?;
    sign_in(&browser, &slipway, "reader", password)?;
    // The whole log, streamed into the page from its first byte.
    let started = std::time::Instant::now();
    browser.goto(&slipway.url(&format!("/builds/{id}?full=1")))?;
    browser.wait_until(
        "document.getElementById('log').dataset.state === 'ended'",
        BUILD_WAIT,
    )?;
    browser.wait_until(
        "document.getElementById('log').textContent.includes('\\n100000\\n')",
        WAIT_TIMEOUT,
    )?;
    eprintln!(
        "a 100,000-line log was streamed and rendered in {:?} (figure for reading, not asserted)",
        started.elapsed()
    );
    let blocks = browser.execute(
        "return document.querySelectorAll('#log .log-block').length;",
        vec![],
    )?;
    assert!(
        blocks.as_i64().is_some_and(|n| n >= 200),
        "the log is drawn in blocks: {blocks}"
    );
    // The page still answers: scrolling to the end and toggling "follow" work at once.
    browser.execute(
        "document.getElementById('log').scrollIntoView(false);",
        vec![],
    )?;
    browser.find("#follow-tail")?.click()?;
    assert!(
        browser
            .find_all("form[action$='/cancel'], form[action$='/retry']")?
            .is_empty(),
        "a reader sees no buttons"
    );
    browser.screenshot("build-huge-log-reader")?;
    Ok(())
}

/// A Dockerfile whose build log has one line with a basic, a 256-colour and two truecolour
/// words, a 256-colour background and a dark 256-colour word, each between plain text.
fn colourful_app(fx: &Fixture) -> Vec<RepoFile> {
    let marker = fx.name().replace('/', "-");
    let line = [
        "plain",
        "\\033[31mbasic-red\\033[0m",
        "\\033[38;5;208mxterm-208\\033[0m",
        "\\033[38;2;250;130;5mtrue-orange\\033[0m",
        "\\033[48;2;0;95;135mtrue-teal-bg\\033[0m",
        "\\033[1;38;5;17mbold-navy\\033[0m",
        "end",
    ]
    .join(" ");
    let dockerfile = format!(
        "FROM {}\nRUN echo {marker} && printf '{line}\\n'\nCMD [\"true\"]\n",
        fx.rig.base_image
    );
    vec![RepoFile::text("Dockerfile", &dockerfile)]
}

/// `#rrggbb` as `getComputedStyle` reports it.
fn rgb(hex: &str) -> String {
    let channel = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).unwrap_or_default();
    format!("rgb({}, {}, {})", channel(1), channel(3), channel(5))
}

/// The value of `property` in the stylesheet's one-line rule for `.class`.
fn rule_value(css: &str, class: &str, property: &str) -> Option<String> {
    let line = css
        .lines()
        .find(|line| line.starts_with(&format!(".{class} {{")))?;
    let key = format!(" {property}: ");
    let at = line.find(&key)? + key.len();
    line[at..]
        .split(';')
        .next()
        .map(|value| value.trim().to_owned())
}

/// Checks the coloured words of [`colourful_app`]'s line in the log as the browser shows it:
/// the classes the renderer gave them, and the colours Chromium computed from the stylesheet
/// under the page's Content-Security-Policy.
fn assert_log_colours(browser: &Browser, css: &str, part: &str) -> anyhow::Result<()> {
    let words = browser.execute(
        "const log = document.getElementById('log');\
         const found = {};\
         for (const span of log.querySelectorAll('span')) {\
           if (span.classList.contains('log-block') || span.classList.contains('log-tail')) continue;\
           const style = getComputedStyle(span);\
           found[span.textContent] = {\
             classes: span.className, color: style.color, background: style.backgroundColor,\
             weight: style.fontWeight, inline: span.hasAttribute('style') };\
         }\
         found.default = getComputedStyle(log).color;\
         return found;",
        vec![],
    )?;
    let word = |text: &str| &words[text];
    let default_colour = words["default"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        default_colour,
        rgb("#d6dce2"),
        "{part}: the log's own colour"
    );
    let expect = |text: &str, classes: &str, colour: &str, background: Option<&str>| {
        let found = word(text);
        assert_eq!(found["classes"], classes, "{part}: {text}: {found}");
        assert_eq!(
            found["inline"], false,
            "{part}: {text} has a style attribute"
        );
        assert_eq!(found["color"], colour, "{part}: {text}: {found}");
        assert_ne!(found["color"], default_colour.as_str(), "{part}: {text}");
        if let Some(background) = background {
            assert_eq!(found["background"], background, "{part}: {text}: {found}");
        }
    };
    let fg = |index: u8| {
        rule_value(css, &format!("ansi-fg-{index}"), "color")
            .map(|hex| rgb(&hex))
            .unwrap_or_else(|| panic!("no rule for ansi-fg-{index}"))
    };
    // The basic red is the stylesheet's shade; 208 is xterm's orange, which truecolour
    // (250, 130, 5) is drawn as too; (0, 95, 135) is xterm's 24 exactly.
    expect("basic-red", "ansi-fg-1", &rgb("#f47067"), None);
    expect("xterm-208", "ansi-fg-208", &rgb("#ff8700"), None);
    expect("true-orange", "ansi-fg-208", &rgb("#ff8700"), None);
    let teal_text = rule_value(css, "ansi-bg-24", "color").expect("a rule for ansi-bg-24");
    expect(
        "true-teal-bg",
        "ansi-bg-24",
        &rgb(&teal_text),
        Some(&rgb("#005f87")),
    );
    // Navy on the dark log is lifted to a readable blue.
    let navy = fg(17);
    assert_ne!(navy, rgb("#00005f"));
    expect("bold-navy", "ansi-fg-17 ansi-bold", &navy, None);
    assert_eq!(word("bold-navy")["weight"], "700", "{part}");
    Ok(())
}

/// Checks that the page does not scroll sideways at 390 px (the log may scroll in its box).
fn assert_fits_a_phone(browser: &Browser, page: &str) -> anyhow::Result<()> {
    let overflow = browser.execute(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        vec![],
    )?;
    if overflow.as_i64().is_some_and(|px| px <= 0) {
        return Ok(());
    }
    // The elements that stick out of the page (not merely out of a box that scrolls them), to
    // say what to fix.
    let culprits = browser.execute(
        "const width = document.documentElement.clientWidth;\
         const clipped = (e) => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {\
             if (getComputedStyle(a).overflowX !== 'visible') return true; } return false; };\
         return Array.from(document.querySelectorAll('body *'))\
           .filter((e) => e.getBoundingClientRect().right > width + 1 && !clipped(e))\
           .filter((e) => !Array.from(e.children).some((c) => c.getBoundingClientRect().right > width + 1))\
           .slice(0, 5)\
           .map((e) => e.outerHTML.slice(0, 200));",
        vec![],
    )?;
    anyhow::bail!(
        "{page} scrolls sideways by {overflow} px at 390 px wide; sticking out: {culprits:#}"
    )
}

#[test]
fn colours_phone_widths_focus_order_and_labels_on_the_build_and_repository_pages()
-> anyhow::Result<()> {
    let fx = Fixture::new("dashboard-colours");
    fx.repo.commit("A colourful build", &colourful_app(&fx));
    let slipway = fx.start_slipway(vec![Rule::branch("main", "latest")]);
    let id = fx.push_main(&slipway);
    slipway.wait_for_success(&id);
    let css = slipway
        .request(reqwest::Method::GET, "/assets/slipway.css")
        .send()?
        .text()?;

    let browser = Browser::start()?;
    sign_in(&browser, &slipway, Slipway::ADMIN, Slipway::ADMIN_PASSWORD)?;

    // The part of the log that the server renders.
    browser.goto(&slipway.url(&format!("/builds/{id}")))?;
    browser.wait_for_text("#log", "bold-navy", WAIT_TIMEOUT)?;
    assert_eq!(
        browser.find("#log")?.attribute("data-state")?.as_deref(),
        Some("ended"),
        "a finished build's page renders its log itself"
    );
    assert_log_colours(&browser, &css, "server-rendered")?;
    browser.execute("document.getElementById('log').scrollIntoView();", vec![])?;
    browser.screenshot("build-colours")?;
    browser.execute("window.scrollTo(0, 0);", vec![])?;

    // Every form control on the build page has an accessible name.
    let controls = browser.execute(
        "const named = (c) => (c.labels && c.labels.length > 0)\
           || (c.getAttribute('aria-label') || '').trim() !== ''\
           || (c.getAttribute('aria-labelledby') || '').split(/\\s+/)\
                .some((id) => id && document.getElementById(id)\
                  && document.getElementById(id).textContent.trim() !== '')\
           || (c.tagName === 'BUTTON' && c.textContent.trim() !== '');\
         const all = Array.from(document.querySelectorAll('input, select, textarea, button'))\
           .filter((c) => c.type !== 'hidden');\
         return { count: all.length, unnamed: all.filter((c) => !named(c)).map((c) => c.outerHTML) };",
        vec![],
    )?;
    assert!(
        controls["count"].as_i64().is_some_and(|n| n >= 3),
        "the follow toggle, retry and sign out at least: {controls}"
    );
    assert_eq!(controls["unnamed"], serde_json::json!([]), "{controls}");

    // Tab from the top: the skip link first, then the header's links and the main navigation
    // in order, then the page's content; the skip link's Enter moves the focus to it.
    // The page was just opened, so nothing has had the focus yet and Tab starts at the top.
    let mut expected = vec![browser.find("a.skip-link")?, browser.find("a.brand")?];
    expected.extend(browser.find_all(
        "nav[aria-label='Main'] a[href], nav[aria-label='Main'] button, nav[aria-label='Main'] input:not([type=hidden])",
    )?);
    assert!(
        expected.len() >= 4,
        "a skip link, the brand and two navigation controls"
    );
    for (step, element) in expected.iter().enumerate() {
        browser.press_keys(Browser::TAB)?;
        let focused = browser.execute(
            "return document.activeElement === arguments[0] || document.activeElement.outerHTML;",
            vec![element.to_arg()],
        )?;
        assert_eq!(focused, true, "Tab {}: the focus is on {focused}", step + 1);
    }
    browser.press_keys(Browser::TAB)?;
    let in_main = browser.execute(
        "return document.getElementById('main').contains(document.activeElement);",
        vec![],
    )?;
    assert_eq!(
        in_main, true,
        "after the navigation comes the page's content"
    );
    // A fresh page starts the focus at the top again (blurring would only move the starting
    // point to where the focus was).
    browser.refresh()?;
    browser.wait_for_text("#log", "bold-navy", WAIT_TIMEOUT)?;
    browser.press_keys(Browser::TAB)?;
    let on_skip_link = browser.execute(
        "return document.activeElement.classList.contains('skip-link');",
        vec![],
    )?;
    assert_eq!(on_skip_link, true);
    browser.press_keys(Browser::ENTER)?;
    browser.wait_until(
        "document.activeElement === document.getElementById('main')",
        WAIT_TIMEOUT,
    )?;

    // The part of the log that the script streams and draws.
    browser.goto(&slipway.url(&format!("/builds/{id}?full=1")))?;
    browser.wait_until(
        "document.getElementById('log').dataset.state === 'ended'",
        WAIT_TIMEOUT,
    )?;
    browser.wait_for_text("#log", "bold-navy", WAIT_TIMEOUT)?;
    assert_log_colours(&browser, &css, "streamed")?;

    // Readable on a phone: neither page scrolls sideways.
    browser.set_viewport_size(390, 844)?;
    browser.goto(&slipway.url(&format!("/builds/{id}")))?;
    browser.wait_for_text("#log", "bold-navy", WAIT_TIMEOUT)?;
    assert_fits_a_phone(&browser, "the build page")?;
    browser.screenshot("build-phone")?;
    browser.goto(&slipway.url(&format!("/repos/{}", fx.name())))?;
    browser.wait_for("svg.duration-chart", WAIT_TIMEOUT)?;
    assert_fits_a_phone(&browser, "the repository page")?;
    browser.screenshot("repository-phone")?;
    Ok(())
}
