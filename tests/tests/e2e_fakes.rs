//! Checks of the fakes that stand in for third-party services (forges' status APIs and
//! webhook receivers): if these fail, no verdict of a test that uses them can be trusted.
//! They need no rig: only loopback HTTP.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slipway_e2e::{FakeAnswer, FakeForge, WebhookReceiver, hmac_sha256_hex};

/// Long enough for a loaded machine, short enough to fail fast.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client like the one Slipway uses: it keeps connections alive and reuses them.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("build an HTTP client")
}

fn post(client: &reqwest::blocking::Client, url: &str, body: &str) -> (u16, String) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .text()
        .unwrap_or_else(|e| panic!("read the answer to POST {url}: {e}"));
    (status, text)
}

#[test]
fn keep_alive_posts_get_the_programmed_answers_in_order() {
    let forge = FakeForge::start();
    forge.answer_next("/repos/acme/web/statuses", &[500, 500]);
    forge.answer_next_with(
        "/api/v4",
        &[FakeAnswer::status(422).with_body(r#"{"message":"no such commit"}"#)],
    );
    let http = client();
    let url = forge.url("/repos/acme/web/statuses/0123abcd");
    let statuses: Vec<u16> = (0..4).map(|_| post(&http, &url, "{}").0).collect();
    assert_eq!(statuses, [500, 500, 201, 201]);

    // The other prefix kept its own queue, with its body.
    let gitlab = forge.url("/api/v4/projects/acme%2Fweb/statuses/0123abcd");
    assert_eq!(
        post(&http, &gitlab, "{}"),
        (422, r#"{"message":"no such commit"}"#.to_owned())
    );
    assert_eq!(post(&http, &gitlab, "{}"), (201, "{}".to_owned()));

    // The log says what each request was answered.
    let answered: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(answered, [500, 500, 201, 201, 422, 201]);
}

/// Reads one HTTP/1.1 response with a `Content-Length` from `reader`: its status and body.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("read the status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("a bad Content-Length: {line:?}"));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn one_connection_carries_several_requests() {
    // reqwest hides whether it reused a connection, so this speaks HTTP/1.1 itself: two
    // requests, one after the other, on a single socket.
    let forge = FakeForge::start();
    forge.answer_next("/", &[503]);
    let stream = TcpStream::connect(("127.0.0.1", forge.port())).expect("connect to the fake");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set a read timeout");
    let mut writer = stream.try_clone().expect("clone the socket");
    let mut reader = BufReader::new(stream);
    for (body, expected) in [("first", 503), ("second", 201)] {
        write!(
            writer,
            "POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send a request");
        assert_eq!(read_response(&mut reader), (expected, "{}".to_owned()));
    }
    let bodies: Vec<String> = forge.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["first", "second"]);
}

#[test]
fn requests_are_recorded_with_method_path_headers_and_body() {
    let forge = FakeForge::start();
    let http = client();
    let before = Instant::now();
    let response = http
        .post(forge.url("/repos/acme/web/statuses/abc?per_page=1"))
        .header("Authorization", "Bearer t0ken")
        .header("X-Mixed-Case", "Value Kept")
        .body(r#"{"state":"pending"}"#)
        .send()
        .expect("POST to the fake");
    assert_eq!(response.status().as_u16(), 201);
    http.put(forge.url("/other"))
        .body("plain")
        .send()
        .expect("PUT to the fake");

    let requests = forge.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/repos/acme/web/statuses/abc?per_page=1");
    assert_eq!(first.path_only(), "/repos/acme/web/statuses/abc");
    assert_eq!(first.body, r#"{"state":"pending"}"#);
    assert_eq!(first.json()["state"], "pending");
    assert_eq!(first.header("authorization"), Some("Bearer t0ken"));
    assert!(
        first
            .headers
            .contains(&("x-mixed-case".to_owned(), "Value Kept".to_owned())),
        "names are lower-cased, values kept: {:?}",
        first.headers
    );
    assert!(first.received_at >= before && requests[1].received_at >= first.received_at);
    assert_eq!(requests[1].method, "PUT");

    assert_eq!(forge.requests_to("/repos/acme").len(), 1);
    assert_eq!(forge.requests_to("/other")[0].body, "plain");
    assert_eq!(forge.wait_for_requests("/other", 1, TIMEOUT).len(), 1);
    forge.clear_requests();
    assert!(forge.requests().is_empty());
}

#[test]
#[should_panic(expected = "received 0 of 1 requests to \"/missing\"")]
fn waiting_for_requests_that_never_come_fails_with_what_arrived() {
    let forge = FakeForge::start();
    post(&client(), &forge.url("/somewhere/else"), "{}");
    forge.wait_for_requests("/missing", 1, Duration::from_millis(200));
}

#[test]
fn a_default_answer_and_a_slow_answer() {
    let forge = FakeForge::start_with_default(FakeAnswer::status(204).with_body(""));
    forge.answer_next_with(
        "/slow",
        &[FakeAnswer::status(200).with_delay(Duration::from_secs(2))],
    );
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("build an HTTP client");
    let error = impatient
        .post(forge.url("/slow"))
        .send()
        .expect_err("the answer comes after the client's timeout");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(
        post(&client(), &forge.url("/fast"), "{}"),
        (204, String::new())
    );
}

#[test]
fn a_stopped_forge_refuses_connections_until_it_restarts() {
    let mut forge = FakeForge::start();
    let http = client();
    let url = forge.url("/repos/acme/web/statuses/abc");
    // This leaves an idle keep-alive connection in the client's pool.
    assert_eq!(post(&http, &url, "{}").0, 201);
    let port = forge.port();

    forge.stop();
    assert!(!forge.is_running());
    let error = http
        .post(&url)
        .body("{}")
        .send()
        .expect_err("a stopped forge answers nothing");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    forge.restart();
    assert_eq!(forge.port(), port, "the forge is back on the same port");
    assert_eq!(post(&http, &url, "{}").0, 201);
    assert_eq!(
        forge.requests().len(),
        2,
        "the log spans both runs: {:#?}",
        forge.requests()
    );
}

#[test]
fn the_receiver_checks_signatures_and_can_fail() {
    let receiver = WebhookReceiver::start("receiver-secret");
    let http = client();
    let deliver = |path: &str, event: &str, body: &str, signature: &str| {
        http.post(receiver.url(path))
            .header("Content-Type", "application/json")
            .header("X-Slipway-Event", event)
            .header("X-Slipway-Delivery", "d-1")
            .header("X-Slipway-Timestamp", "1700000000")
            .header("X-Slipway-Signature-256", signature)
            .body(body.to_owned())
            .send()
            .expect("deliver to the receiver")
            .status()
            .as_u16()
    };
    let body = r#"{"event":"build_succeeded","build":{"id":"b1"}}"#;
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex("receiver-secret", body.as_bytes())
    );
    let tampered = body.replace("b1", "b2");
    let wrong_key = format!("sha256={}", hmac_sha256_hex("other", body.as_bytes()));

    receiver.fail_next(2);
    assert_eq!(deliver("/a", "build_succeeded", body, &signature), 500);
    assert_eq!(deliver("/a", "build_succeeded", &tampered, &signature), 500);
    assert_eq!(deliver("/b", "build_succeeded", body, &wrong_key), 200);
    assert_eq!(deliver("/b", "image_pushed", "not json", "sha256=00"), 200);

    let hooks = receiver.wait_for("build_succeeded", 3, TIMEOUT);
    let valid: Vec<bool> = hooks.iter().map(|hook| hook.signature_valid).collect();
    assert_eq!(valid, [true, false, false]);
    let first = &hooks[0];
    assert_eq!(first.delivery_id, "d-1");
    assert_eq!(first.timestamp, "1700000000");
    assert_eq!(first.body["build"]["id"], "b1");
    assert_eq!(first.raw, body);
    assert_eq!(first.request.path, "/a");
    assert_eq!(first.request.status, 500);
    assert_eq!(hooks[2].request.status, 200);

    let all = receiver.deliveries();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event, "image_pushed");
    assert_eq!(all[3].body, serde_json::Value::Null);
    assert!(!all[3].signature_valid);
}

#[test]
#[should_panic(expected = "got 0 of 1 \"build_failed\" deliveries")]
fn waiting_for_deliveries_that_never_come_fails_with_the_events_seen() {
    let receiver = WebhookReceiver::start("s");
    post(&client(), &receiver.url("hook"), "{}");
    receiver.wait_for("build_failed", 1, Duration::from_millis(200));
}
