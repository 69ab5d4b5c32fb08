//! Telling the world about builds: commit statuses on the forge a repository lives on, and signed
//! outgoing webhooks (Docker Hub's `image_pushed` shape plus Slipway's own build events).
//!
//! Three pure modules, each unit-tested without a network, and the loop that uses them:
//!
//! - [`status`] builds the one HTTP request each forge's commit-status API expects.
//! - [`payload`] builds outgoing webhook bodies, signs them and lists their headers.
//! - [`ssrf`] decides whether a webhook target URL, and each address its host resolves to, may be
//!   contacted at all.
//! - [`deliver`] is the `Notifier`: it turns build transitions into notifications and sends them,
//!   with leases, retries and an attempt history in the store.
//!
//! **Invariants:**
//!
//! - `status`, `payload` and `ssrf` do no I/O: every function there is a decision over its
//!   arguments, so the sender (which claims notifications from the store and talks HTTP) stays a
//!   thin loop around them.
//! - Nothing waits on a forge or a receiver: a build never depends on a notification.
//! - A token never appears in `Debug` output: tokens are held as [`slipway_core::Secret`], and
//!   [`HttpRequestSpec`]'s `Debug` hides the headers that carry them, so a request that ends up in a
//!   log line or an error message does not leak the forge credential.
//! - Every part put into a URL path is percent-encoded ([`encode_path_segment`]), so a repository
//!   path, a commit id or a GitLab project path can never add, remove or reorder path segments.

pub mod deliver;
pub mod payload;
pub mod ssrf;
pub mod status;

use std::fmt;

/// The `User-Agent` of every request Slipway sends: GitHub refuses API requests without one, and
/// receivers can recognise Slipway's deliveries by it.
pub const USER_AGENT: &str = concat!("Slipway/", env!("CARGO_PKG_VERSION"));

/// One HTTP request, fully decided but not sent: the sender hands it to its HTTP client as is.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequestSpec {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The JSON body, exactly the bytes to send (a webhook's signature covers these bytes).
    pub body: String,
}

impl HttpRequestSpec {
    /// The value of the first header named `name`, compared case-insensitively as HTTP does.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Header names whose values are credentials. They are compared case-insensitively.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "private-token"];

impl fmt::Debug for HttpRequestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A credential header keeps its name (so a reader can see that one was sent) but not its
        // value; the query string is dropped because target URLs sometimes carry tokens there.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let hidden = CREDENTIAL_HEADERS
                    .iter()
                    .any(|credential| name.eq_ignore_ascii_case(credential));
                (name.as_str(), if hidden { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("HttpRequestSpec")
            .field("method", &self.method)
            .field("url", &without_query(&self.url))
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// `url` without its query string and fragment, for Debug output.
pub(crate) fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Percent-encodes `segment` so it stays exactly one URL path segment: every byte except the
/// unreserved characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) is written as `%XX`. Encoding this
/// much is always safe, because servers decode every `%XX`; encoding less would let a `/`, `?`,
/// `#` or `..` in a repository path change which resource the request reaches.
pub fn encode_path_segment(segment: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    // A segment that is exactly `.` or `..` is a relative-path step to URL parsers even though
    // every byte is unreserved; encoding its dots keeps it an ordinary name.
    if encoded == "." || encoded == ".." {
        return encoded.replace('.', "%2E");
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_but_unreserved_characters() {
        assert_eq!(encode_path_segment("owner"), "owner");
        assert_eq!(encode_path_segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(
            encode_path_segment("group/sub/project"),
            "group%2Fsub%2Fproject"
        );
        assert_eq!(encode_path_segment("a b?c#d%e"), "a%20b%3Fc%23d%25e");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
        assert_eq!(encode_path_segment(""), "");
        assert_eq!(encode_path_segment(".."), "%2E%2E");
        assert_eq!(encode_path_segment("."), "%2E");
        assert_eq!(encode_path_segment("..."), "...");
    }

    #[test]
    fn debug_hides_credential_headers_and_queries() {
        let request = HttpRequestSpec {
            method: "POST",
            url: "https://example.com/hook?token=query-secret".to_owned(),
            headers: vec![
                (
                    "Authorization".to_owned(),
                    "Bearer header-secret".to_owned(),
                ),
                ("PRIVATE-TOKEN".to_owned(), "gitlab-secret".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
            ],
            body: "{}".to_owned(),
        };
        let debug = format!("{request:?}");
        for secret in ["query-secret", "header-secret", "gitlab-secret"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(debug.contains("Authorization"));
        assert!(debug.contains("application/json"));
        assert!(debug.contains("https://example.com/hook"));
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = HttpRequestSpec {
            method: "POST",
            url: String::new(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: String::new(),
        };
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("accept"), None);
    }
}
