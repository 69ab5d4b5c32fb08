//! Issue 6's browser acceptance: the dashboard in headless Chromium against a real
//! `slipway serve`, real git server, Docker engine and registry. A user signs in, a signed
//! webhook makes a build appear on the overview, its page shows log lines arriving live,
//! cancel and retry work from the page, and a read-only user sees no buttons and gets 403 from
//! the API. Screenshots of the main pages are written as test artifacts.

use std::time::Duration;

use slipway_e2e::{Browser, Fixture, RepoFile, Rule, Slipway, WAIT_TIMEOUT, ZERO_ID};

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
    let commit = fx
        .repo
        .commit("A slow, chatty build", &ticking_app(&fx, 40));
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
