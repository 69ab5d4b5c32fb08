//! Webhooks from forges: verify a delivery over its raw bytes, then parse it into Slipway's
//! one event shape.
//!
//! **Invariant:** [`Forge::verify`] runs before [`Forge::parse`] sees a byte of an untrusted
//! body; the server's extractor enforces the order, and nothing here allocates in proportion
//! to a header an attacker controls.

mod github;
mod signature;

use http::HeaderMap;
use slipway_core::{Provider, PushEvent, Secret};

pub use github::Github;
pub use signature::{hmac_sha256_hex, verify_hmac_sha256};

/// What a verified delivery asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The forge checking that the hook works.
    Ping,
    /// One or more ref updates (some forges batch several into one delivery).
    Push(Vec<PushEvent>),
    /// An event Slipway does not act on, with the reason recorded for the deliveries log.
    Ignored(String),
}

/// Why a delivery was not verified. Each maps to a 401 (or 400 for a provider mismatch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the delivery carries no {header} signature header")]
    MissingSignature { header: &'static str },
    #[error("the {header} header is not of the form {expected}")]
    MalformedSignature {
        header: &'static str,
        expected: &'static str,
    },
    #[error(
        "signature mismatch: the {header} header does not match the body and the configured secret"
    )]
    SignatureMismatch { header: &'static str },
    #[error(
        "this repository expects {expected} webhooks, but the request carries no {expected} headers"
    )]
    WrongProvider { expected: Provider },
}

/// Why a verified delivery could not be understood (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// One forge's webhook dialect.
pub trait Forge: Send + Sync {
    fn provider(&self) -> Provider;

    /// The largest body this forge sends; larger requests are refused with 413 before reading.
    fn max_body_bytes(&self) -> usize;

    /// The forge's own id for this delivery, stable across redeliveries, if it sends one.
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String>;

    /// The forge's name for the event, for the deliveries log.
    fn event_name(&self, headers: &HeaderMap) -> Option<String>;

    /// Checks the delivery's signature over the raw body, in constant time.
    fn verify(&self, secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError>;

    /// Parses a verified delivery.
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError>;
}

/// The implementation for a provider.
pub fn forge_for(provider: Provider) -> &'static dyn Forge {
    match provider {
        Provider::Github => &Github,
    }
}

/// The delivery key for a forge that sends no delivery id: a hash of the verified body, so
/// the same body redelivered is recognised.
pub fn body_fingerprint(body: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

/// A header's value as text, if present and valid UTF-8.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Takes the `payload` field out of an `application/x-www-form-urlencoded` body, as forges send
/// when a hook is configured for form deliveries.
fn form_payload(body: &[u8]) -> Result<Vec<u8>, ParseError> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or_else(|| ParseError("form-encoded delivery has no payload field".to_owned()))
}

fn is_form(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}
