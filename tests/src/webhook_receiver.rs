//! The receiving end of Slipway's outgoing webhooks: a [`FakeForge`] whose requests are read as
//! deliveries, with their signature checked against the receiver's own secret.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use crate::fake_forge::{FakeAnswer, FakeForge, RecordedRequest, describe};

/// The headers every delivery carries.
const SIGNATURE_HEADER: &str = "x-slipway-signature-256";
const EVENT_HEADER: &str = "x-slipway-event";
const DELIVERY_HEADER: &str = "x-slipway-delivery";
const TIMESTAMP_HEADER: &str = "x-slipway-timestamp";

/// How often [`WebhookReceiver::wait_for`] looks at the log again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One delivery as the receiver saw it. A header that was not sent reads as an empty string;
/// [`ReceivedHook::signature_valid`] is false for a missing or malformed signature.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedHook {
    /// `X-Slipway-Event`, such as `build_succeeded` or `image_pushed`.
    pub event: String,
    /// `X-Slipway-Delivery`.
    pub delivery_id: String,
    /// `X-Slipway-Timestamp` (Unix seconds, as sent).
    pub timestamp: String,
    /// Whether `X-Slipway-Signature-256` is exactly `sha256=` followed by the lower-case hex
    /// HMAC-SHA256 of the raw body under the receiver's secret.
    pub signature_valid: bool,
    /// The body parsed as JSON, or `Value::Null` if it is not JSON (see `raw`).
    pub body: Value,
    /// The body as sent.
    pub raw: String,
    /// Everything else: path, method, headers, the status the receiver answered, and when.
    pub request: RecordedRequest,
}

impl ReceivedHook {
    fn from_request(secret: &[u8], request: RecordedRequest) -> Self {
        let header = |name: &str| request.header(name).unwrap_or_default().to_owned();
        Self {
            event: header(EVENT_HEADER),
            delivery_id: header(DELIVERY_HEADER),
            timestamp: header(TIMESTAMP_HEADER),
            signature_valid: signature_valid(
                secret,
                request.header(SIGNATURE_HEADER),
                &request.body_bytes,
            ),
            body: serde_json::from_slice(&request.body_bytes).unwrap_or(Value::Null),
            raw: request.body.clone(),
            request,
        }
    }
}

/// An HTTP endpoint on `127.0.0.1:<free port>` that accepts deliveries on any path, answers
/// `200 {}` (or `500` while [`WebhookReceiver::fail_next`] says so) and checks each signature
/// with `secret`. [`WebhookReceiver::stop`] and [`WebhookReceiver::restart`] take it down and
/// bring it back on the same URL.
#[derive(Debug)]
pub struct WebhookReceiver {
    server: FakeForge,
    secret: String,
}

impl WebhookReceiver {
    pub fn start(secret: &str) -> Self {
        Self {
            server: FakeForge::start_with_default(FakeAnswer::status(200)),
            secret: secret.to_owned(),
        }
    }

    /// The URL of `path` on this receiver, to configure as a hook's target; a leading `/` is
    /// added if missing. Every path is accepted, so tests can tell hooks apart by path.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Every delivery so far, oldest first, including those answered with a failure.
    pub fn deliveries(&self) -> Vec<ReceivedHook> {
        self.server
            .requests()
            .into_iter()
            .map(|request| ReceivedHook::from_request(self.secret.as_bytes(), request))
            .collect()
    }

    /// Answers `500` to the next `n` deliveries (on any path), then `200` again.
    pub fn fail_next(&self, n: usize) {
        self.server.answer_next("/", &vec![500; n]);
    }

    /// Waits until at least `count` deliveries of `event` have arrived and returns all of
    /// them, oldest first. Panics after `timeout` with every delivery received.
    #[track_caller]
    pub fn wait_for(&self, event: &str, count: usize, timeout: Duration) -> Vec<ReceivedHook> {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<ReceivedHook> = self
                .deliveries()
                .into_iter()
                .filter(|hook| hook.event == event)
                .collect();
            if matching.len() >= count {
                return matching;
            }
            if Instant::now() >= deadline {
                let all = self.server.requests();
                let events: Vec<String> = all
                    .iter()
                    .map(|request| request.header(EVENT_HEADER).unwrap_or("(none)").to_owned())
                    .collect();
                panic!(
                    "the webhook receiver at {} got {} of {count} {event:?} deliveries within \
                     {timeout:?}; events received: {events:?}\n{}",
                    self.server.base_url(),
                    matching.len(),
                    describe(&all)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The server underneath, for anything else [`FakeForge`] offers (programmed answers with
    /// bodies or delays, raw requests).
    pub fn server(&self) -> &FakeForge {
        &self.server
    }

    /// Takes the receiver down: connections to it are refused until [`WebhookReceiver::restart`].
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Brings the receiver back on the same port, with its deliveries so far.
    pub fn restart(&mut self) {
        self.server.restart();
    }
}

/// Checks `header` against the documented form `sha256=<64 lower-case hex digits>` and the
/// HMAC itself; the comparison of the MAC is constant-time, as a real receiver's should be.
fn signature_valid(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(digits) = header.and_then(|value| value.strip_prefix("sha256=")) else {
        return false;
    };
    let well_formed = digits.len() == 64
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let Ok(expected) = hex::decode(digits) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    well_formed && mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_the_documented_signature_of_the_same_body_is_valid() {
        let body = br#"{"event":"build_succeeded"}"#;
        let good = sign(b"s3cret", body);
        assert!(signature_valid(b"s3cret", Some(&good), body));
        assert!(!signature_valid(b"other", Some(&good), body));
        assert!(!signature_valid(
            b"s3cret",
            Some(&good),
            br#"{"event":"build_failed"}"#
        ));
        assert!(!signature_valid(b"s3cret", None, body));
        assert!(!signature_valid(
            b"s3cret",
            Some(&good["sha256=".len()..]),
            body
        ));
        let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
        assert!(!signature_valid(b"s3cret", Some(&upper), body));
        assert!(!signature_valid(b"s3cret", Some("sha256=zz"), body));
    }
}
