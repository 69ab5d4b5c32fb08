//! Signature and token checks shared by the forges, all in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use slipway_core::Secret;

use crate::{Verified, VerifyError, VerifyPolicy};

/// Verifies `HMAC-SHA256(secret, body) == expected_hex` in constant time. Returns `None` when
/// `expected_hex` is not 64 hex digits, so callers can report a malformed header apart from a
/// mismatch.
pub fn verify_hmac_sha256(secret: &[u8], body: &[u8], expected_hex: &str) -> Option<bool> {
    // Refusing other lengths first keeps decoding bounded by a constant.
    if expected_hex.len() != 64 {
        return None;
    }
    let expected = hex::decode(expected_hex).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac.verify_slice(&expected).is_ok())
}

fn verify_hmac_sha1(secret: &[u8], body: &[u8], expected_hex: &str) -> Option<bool> {
    if expected_hex.len() != 40 {
        return None;
    }
    let expected = hex::decode(expected_hex).ok()?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac.verify_slice(&expected).is_ok())
}

/// `HMAC-SHA256(secret, body)` as lower-case hex: what a forge puts in its header.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `HMAC-SHA1(secret, body)` as lower-case hex (GitHub's legacy `X-Hub-Signature`).
pub fn hmac_sha1_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The HMAC algorithms forges sign with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Algorithm {
    Sha256,
    Sha1,
}

/// One signature header's scheme: its name, the prefix before the hex (`sha256=`, or none for
/// Gitea's bare hex) and the algorithm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignatureScheme {
    pub header: &'static str,
    pub prefix: &'static str,
    pub algorithm: Algorithm,
    /// How the header should look, for error messages.
    pub expected: &'static str,
}

impl SignatureScheme {
    /// The header's signature, or `None` when the header is absent, empty or only the prefix
    /// (`sha256=`), all of which mean "unsigned". A header that is not text at all is a
    /// malformed signature, never "unsigned": a repository that allows unsigned deliveries
    /// must not accept one that carries garbage where the signature goes.
    pub fn signature<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        const NOT_TEXT: &str = "\u{fffd}";
        let raw = headers.get(self.header)?;
        let Ok(value) = raw.to_str() else {
            return Some(NOT_TEXT);
        };
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let rest = value.strip_prefix(self.prefix).unwrap_or(value);
        (!rest.is_empty() && value != self.prefix).then_some(value)
    }

    /// Checks `value` (as found by [`SignatureScheme::signature`]) against `signed`.
    pub fn check(
        &self,
        secret: &[u8],
        signed: &[u8],
        value: &str,
    ) -> Result<Verified, VerifyError> {
        let malformed = VerifyError::MalformedSignature {
            header: self.header,
            expected: self.expected,
        };
        let hex = value.strip_prefix(self.prefix).ok_or(malformed.clone())?;
        let matched = match self.algorithm {
            Algorithm::Sha256 => verify_hmac_sha256(secret, signed, hex),
            Algorithm::Sha1 => verify_hmac_sha1(secret, signed, hex),
        };
        match matched {
            Some(true) => Ok(Verified::Signed {
                scheme: self.header,
            }),
            Some(false) => Err(VerifyError::SignatureMismatch {
                header: self.header,
            }),
            None => Err(malformed),
        }
    }
}

/// Bitbucket's header, the same in Cloud and Data Center: `X-Hub-Signature: sha256=<hex>`, an
/// HMAC-SHA256 of the raw body. (GitHub's legacy header has the same name with `sha1=`.)
pub(crate) const HUB_SIGNATURE_SHA256: SignatureScheme = SignatureScheme {
    header: "x-hub-signature",
    prefix: "sha256=",
    algorithm: Algorithm::Sha256,
    expected: "sha256=<64 hex digits>",
};

/// The first of `schemes` whose header carries a signature, with that signature.
pub(crate) fn first_signature<'s, 'h>(
    schemes: &'s [SignatureScheme],
    headers: &'h http::HeaderMap,
) -> Option<(&'s SignatureScheme, &'h str)> {
    schemes
        .iter()
        .find_map(|scheme| scheme.signature(headers).map(|value| (scheme, value)))
}

/// Verifies a delivery signed over its raw body by whichever of `schemes` it carries; one that
/// carries none is unsigned, reported as missing `missing`.
pub(crate) fn verify_raw_body(
    schemes: &[SignatureScheme],
    missing: &'static str,
    secret: &Secret,
    policy: VerifyPolicy,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    match first_signature(schemes, headers) {
        Some((scheme, value)) => scheme.check(secret.expose().as_bytes(), body, value),
        None => unsigned(policy, missing),
    }
}

/// The outcome for a delivery that carries none of the accepted signature headers.
pub(crate) fn unsigned(
    policy: VerifyPolicy,
    header: &'static str,
) -> Result<Verified, VerifyError> {
    if policy.allow_unsigned {
        Ok(Verified::Unsigned)
    } else {
        Err(VerifyError::MissingSignature { header })
    }
}

/// Compares a shared-secret token (GitLab's `X-Gitlab-Token`) in constant time. Both sides are
/// hashed first so that not even the secret's length leaks through timing. Bytes, not text: a
/// header value need not be ASCII, and a token with other characters must still compare.
pub(crate) fn tokens_match(secret: &[u8], presented: &[u8]) -> bool {
    let secret = Sha256::digest(secret);
    let presented = Sha256::digest(presented);
    secret.ct_eq(&presented).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published test vector for `X-Hub-Signature-256`.
    #[test]
    fn github_documented_vector() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(hmac_sha256_hex(secret, body), expected);
        assert_eq!(verify_hmac_sha256(secret, body, expected), Some(true));
        assert_eq!(verify_hmac_sha256(b"wrong", body, expected), Some(false));
        assert_eq!(verify_hmac_sha256(secret, body, "zz"), None);
        assert_eq!(verify_hmac_sha256(secret, body, &"g".repeat(64)), None);
    }

    #[test]
    fn sha1_round_trips() {
        let signature = hmac_sha1_hex(b"k", b"body");
        assert_eq!(signature.len(), 40);
        assert_eq!(verify_hmac_sha1(b"k", b"body", &signature), Some(true));
        assert_eq!(verify_hmac_sha1(b"x", b"body", &signature), Some(false));
    }

    #[test]
    fn empty_and_prefix_only_headers_are_no_signature() {
        let scheme = SignatureScheme {
            header: "x-sig",
            prefix: "sha256=",
            algorithm: Algorithm::Sha256,
            expected: "sha256=<hex>",
        };
        let mut headers = http::HeaderMap::new();
        assert_eq!(scheme.signature(&headers), None);
        headers.insert("x-sig", http::HeaderValue::from_static(""));
        assert_eq!(scheme.signature(&headers), None);
        headers.insert("x-sig", http::HeaderValue::from_static("sha256="));
        assert_eq!(scheme.signature(&headers), None);
        headers.insert("x-sig", http::HeaderValue::from_static("sha256=ab"));
        assert_eq!(scheme.signature(&headers), Some("sha256=ab"));
        let binary = http::HeaderValue::from_bytes(b"sha256=\xff\xfe").expect("opaque header");
        headers.insert("x-sig", binary);
        let found = scheme
            .signature(&headers)
            .expect("a non-text header is not 'unsigned'");
        assert!(matches!(
            scheme.check(b"k", b"body", found),
            Err(VerifyError::MalformedSignature { .. })
        ));
        headers.insert("x-sig", http::HeaderValue::from_static("sha256=ab"));
        let bare = SignatureScheme {
            header: "x-sig",
            prefix: "",
            algorithm: Algorithm::Sha256,
            expected: "<hex>",
        };
        assert_eq!(bare.signature(&headers), Some("sha256=ab"));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secret", b"secreT"));
        assert!(!tokens_match(b"secret", b""));
        assert!(tokens_match("pässwörd".as_bytes(), "pässwörd".as_bytes()));
    }
}
