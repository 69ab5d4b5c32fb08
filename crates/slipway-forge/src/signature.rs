//! HMAC helpers shared by the forges that sign deliveries.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Verifies `HMAC-SHA256(secret, body) == expected_hex` in constant time. Returns `None` when
/// `expected_hex` is not hex of the right length, so callers can report a malformed header
/// apart from a mismatch.
pub fn verify_hmac_sha256(secret: &[u8], body: &[u8], expected_hex: &str) -> Option<bool> {
    // A SHA-256 tag is 64 hex digits; refusing other lengths first keeps decoding bounded.
    if expected_hex.len() != 64 {
        return None;
    }
    let expected = hex::decode(expected_hex).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
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
}
