//! Webhooks from forges: verify a delivery over its raw bytes, then parse it into Slipway's
//! one event shape.
//!
//! **Invariant:** [`Forge::verify`] runs before [`Forge::parse`] sees a byte of an untrusted
//! body; the server calls them in that order and nowhere else. Nothing here allocates in
//! proportion to a header an attacker controls, and no input makes anything here panic (the
//! property tests feed every verifier and parser arbitrary bytes and headers).

mod bitbucket;
mod bitbucket_server;
mod gitea;
mod github;
mod gitlab;
pub mod sign;
mod signature;
#[cfg(test)]
mod test_support;
mod timestamp;

use http::HeaderMap;
use slipway_core::{GitRef, Provider, PushEvent, Secret};

pub use bitbucket::Bitbucket;
pub use bitbucket_server::BitbucketServer;
pub use gitea::Gitea;
pub use github::Github;
pub use gitlab::Gitlab;
pub use signature::{hmac_sha1_hex, hmac_sha256_hex, verify_hmac_sha256};
pub use timestamp::parse_timestamp_millis;

/// What a verified delivery asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The forge checking that the hook works.
    Ping,
    /// One or more ref updates (some forges batch several into one delivery); each is planned
    /// on its own.
    Push(Vec<PushEvent>),
    /// An event Slipway does not act on, with the reason recorded for the deliveries log.
    Ignored(String),
}

/// A repository's choices about verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Accept deliveries that carry no signature at all (a wrong signature is still refused).
    /// Off by default; the API shows a warning for repositories that turn it on.
    pub allow_unsigned: bool,
    /// GitHub only: accept the legacy SHA-1 `X-Hub-Signature` when no SHA-256 one is present.
    pub allow_legacy_sha1: bool,
}

/// How a delivery passed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Signed (or token-authenticated) with the configured secret, checked by `scheme`.
    Signed { scheme: &'static str },
    /// Carried no signature, and the repository allows that.
    Unsigned,
}

impl Verified {
    /// Words for the deliveries log.
    pub fn describe(self) -> String {
        match self {
            Verified::Signed { scheme } => format!("verified ({scheme})"),
            Verified::Unsigned => {
                "unsigned, accepted because the repository allows unsigned webhooks".to_owned()
            }
        }
    }
}

/// Why a delivery was not accepted as coming from the repository's forge: 401, or 400 for a
/// request from another forge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature: the delivery carries no {header} header (or an empty one)")]
    MissingSignature { header: &'static str },
    #[error("malformed signature: the {header} header is not of the form {expected}")]
    MalformedSignature {
        header: &'static str,
        expected: &'static str,
    },
    #[error(
        "signature mismatch: the {header} header does not match the body and the configured secret"
    )]
    SignatureMismatch { header: &'static str },
    #[error("token mismatch: the {header} header does not match the configured secret")]
    TokenMismatch { header: &'static str },
    #[error("{}", wrong_provider_message(*.expected, *.found))]
    WrongProvider {
        expected: Provider,
        found: Option<Provider>,
    },
}

fn wrong_provider_message(expected: Provider, found: Option<Provider>) -> String {
    match found {
        Some(found) => format!(
            "wrong provider: this repository expects {expected} webhooks, but the request is a {found} delivery"
        ),
        None => format!(
            "wrong provider: this repository expects {expected} webhooks, but the request carries no {expected} headers"
        ),
    }
}

impl VerifyError {
    /// The short result for the deliveries log.
    pub fn verification_result(&self) -> &'static str {
        match self {
            VerifyError::MissingSignature { .. } => "missing signature",
            VerifyError::MalformedSignature { .. } => "malformed signature",
            VerifyError::SignatureMismatch { .. } => "signature mismatch",
            VerifyError::TokenMismatch { .. } => "token mismatch",
            VerifyError::WrongProvider { .. } => "wrong provider",
        }
    }
}

/// Why a verified delivery could not be understood (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// One forge's webhook dialect.
pub trait Forge: Send + Sync {
    fn provider(&self) -> Provider;

    /// The largest body this forge sends; larger requests are refused with 413.
    fn max_body_bytes(&self) -> usize;

    /// Whether the request carries this forge's identifying headers.
    fn recognizes(&self, headers: &HeaderMap) -> bool;

    /// The forge's own id for this delivery, stable across redeliveries, if it sends one.
    fn delivery_id(&self, headers: &HeaderMap) -> Option<String>;

    /// The forge's name for the event, for the deliveries log.
    fn event_name(&self, headers: &HeaderMap) -> Option<String>;

    /// Checks the delivery's signature or token over the raw body, in constant time.
    fn verify(
        &self,
        secret: &Secret,
        policy: VerifyPolicy,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, VerifyError>;

    /// Parses a verified delivery.
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError>;
}

/// The implementation for a provider.
pub fn forge_for(provider: Provider) -> &'static dyn Forge {
    match provider {
        Provider::Github => &Github,
        Provider::Bitbucket => &Bitbucket,
        Provider::BitbucketServer => &BitbucketServer,
        Provider::Gitlab => &Gitlab,
        Provider::Gitea => &Gitea,
    }
}

/// Which forge a request comes from, judged by its headers. Gitea also sends GitHub's headers
/// for compatibility, so the more specific forges are asked first.
pub fn detect(headers: &HeaderMap) -> Option<Provider> {
    const ORDER: [Provider; 5] = [
        Provider::Gitea,
        Provider::Gitlab,
        Provider::BitbucketServer,
        Provider::Bitbucket,
        Provider::Github,
    ];
    ORDER
        .into_iter()
        .find(|&provider| forge_for(provider).recognizes(headers))
}

/// Refuses a request that does not come from `expected`'s forge, naming the one it seems to
/// come from.
pub fn check_provider(expected: Provider, headers: &HeaderMap) -> Result<(), VerifyError> {
    if forge_for(expected).recognizes(headers) {
        Ok(())
    } else {
        Err(VerifyError::WrongProvider {
            expected,
            found: detect(headers),
        })
    }
}

/// The repository a verified payload is about, as the forge names it (`owner/name`, a GitLab
/// `group/subgroup/project`, a Bitbucket Data Center `PROJECT/slug`), if it says. Lets a
/// repository that sets `forge_repository` ignore pushes of other repositories, which an
/// organisation-wide hook or a GitLab system hook would otherwise deliver to it.
pub fn payload_repository(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let json = if is_form(headers) {
        form_payload(body).ok()?
    } else {
        body.to_vec()
    };
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match provider {
        Provider::Github | Provider::Bitbucket | Provider::Gitea => text("/repository/full_name"),
        Provider::Gitlab => text("/project/path_with_namespace"),
        Provider::BitbucketServer => Some(format!(
            "{}/{}",
            text("/repository/project/key")?,
            text("/repository/slug")?
        )),
    }
}

/// The delivery key for a forge that sends no delivery id: a hash of the verified body, so
/// the same body redelivered is recognised.
pub fn body_fingerprint(body: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

/// The request headers that say what a delivery is (event, delivery id, content type), kept
/// with a verified body so it can be parsed again for a redelivery. Signature and token
/// headers are deliberately absent: they are secrets' derivatives and useless once verified.
pub const REPLAYABLE_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-event-key",
    "x-request-uuid",
    "x-hook-uuid",
    "x-request-id",
    "x-gitlab-event",
    "x-gitlab-event-uuid",
    "x-gitlab-webhook-uuid",
    "idempotency-key",
    "x-gitea-event",
    "x-gitea-event-type",
    "x-gitea-delivery",
    "x-forgejo-event",
    "x-forgejo-event-type",
    "x-forgejo-delivery",
    "x-gogs-event",
];

/// The [`REPLAYABLE_HEADERS`] of a request, as name/value pairs.
pub fn replayable_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    REPLAYABLE_HEADERS
        .iter()
        .filter_map(|name| {
            header(headers, name).map(|value| ((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

/// A header's value as text, if present and valid UTF-8, trimmed.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A header's value, if present and not empty.
pub(crate) fn non_empty_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    header(headers, name).filter(|v| !v.is_empty())
}

/// The first of `names` that is present and not empty, for forges that send one value under
/// several names (Gitea and Forgejo) or fall back from one header to another (GitLab).
pub(crate) fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| non_empty_header(headers, name))
}

/// A full ref as a branch or tag, or the reason it is not built (pull-request heads, notes,
/// names git would refuse).
pub(crate) fn branch_or_tag(full: &str) -> Result<GitRef, String> {
    GitRef::parse(full).ok_or_else(|| format!("ref {full:?} is neither a branch nor a tag"))
}

/// The answer for an event a forge sent that Slipway does not act on.
pub(crate) fn unhandled(forge: &str, event: &str) -> WebhookEvent {
    WebhookEvent::Ignored(format!("{forge} event {event:?} is not handled"))
}

/// The answer for a delivery that batches several ref changes (both Bitbucket products): the
/// changes that are to branches or tags, each planned on its own, or, when none is, why
/// nothing is built. `skipped` holds the reason for each change left out.
pub(crate) fn batched_push(
    forge: &str,
    events: Vec<PushEvent>,
    skipped: Vec<String>,
) -> WebhookEvent {
    /// Reasons beyond this many are counted, not listed: the deliveries log stays readable
    /// however many refs one push touched.
    const LISTED: usize = 5;
    if !events.is_empty() {
        return WebhookEvent::Push(events);
    }
    if skipped.is_empty() {
        return WebhookEvent::Ignored(format!("the {forge} push carries no ref changes"));
    }
    let mut reasons = skipped[..skipped.len().min(LISTED)].join("; ");
    if skipped.len() > LISTED {
        reasons.push_str(&format!("; and {} more", skipped.len() - LISTED));
    }
    WebhookEvent::Ignored(format!(
        "no change in the {forge} push is to a branch or tag: {reasons}"
    ))
}

/// The `ParseError` for a delivery whose event header is missing or empty.
pub(crate) fn no_event_header(header: &str) -> ParseError {
    ParseError(format!("the {header} header is missing or empty"))
}

/// Takes the `payload` field out of an `application/x-www-form-urlencoded` body, as forges send
/// when a hook is configured for form deliveries.
pub(crate) fn form_payload(body: &[u8]) -> Result<Vec<u8>, ParseError> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or_else(|| ParseError("form-encoded delivery has no payload field".to_owned()))
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// Parses a JSON payload into `T`, turning serde's complaint into a [`ParseError`] that says
/// which forge's event was malformed.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &[u8],
) -> Result<T, ParseError> {
    serde_json::from_slice(json).map_err(|e| {
        ParseError(format!(
            "{what} payload is not valid JSON of the expected shape: {e}"
        ))
    })
}

/// A commit id field that may be absent, empty or all zeros ("no commit").
pub(crate) fn optional_commit(
    field: &str,
    value: Option<&str>,
) -> Result<Option<slipway_core::CommitId>, ParseError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => {
            let id: slipway_core::CommitId = text
                .parse()
                .map_err(|e| ParseError(format!("payload field {field}: {e}")))?;
            Ok((!id.is_zero()).then_some(id))
        }
    }
}
