//! Secrets Slipway hands out (trigger and API tokens, session cookies, CSRF tokens), their
//! stored form, and the token buckets that limit how often they may be tried.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A new random token: 256 bits, URL-safe, after a prefix that makes a leaked token easy to
/// recognise (and to search for) as Slipway's and as what kind it is.
pub fn new_token(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a token. Tokens carry 256 random bits, so a fast hash is enough: nobody
/// can guess their way back from it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A name people give things Slipway shows in URLs and logs (users, triggers): 1 to 64
/// letters, digits, '.', '_' or '-', so it can neither break a path nor forge a log line.
pub fn check_plain_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Token buckets per key (a trigger, a client address, a user name): `burst` requests at
/// once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full ones are forgotten, so that a flood of distinct keys (addresses,
/// made-up user names) cannot grow memory without bound.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request's allowance; `Err(seconds)` says when the next one is allowed.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (burst, per_second) = (self.burst, self.per_second);
            // A bucket that has refilled completely holds no memory of anything.
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_and_then_refused_per_key() {
        let limiter = RateLimiter::new(10, 10);
        for _ in 0..10 {
            assert!(limiter.take("a").is_ok());
        }
        let wait = limiter.take("a").expect_err("the burst is spent");
        assert!(wait >= 1, "a refusal says when to come back");
        assert!(limiter.take("b").is_ok(), "limits are per key");
    }

    #[test]
    fn tokens_are_prefixed_random_and_hash_to_hex() {
        let one = new_token("slw_").expect("random");
        let two = new_token("slw_").expect("random");
        assert!(one.starts_with("slw_"));
        assert_ne!(one, two);
        assert_eq!(one.len(), 4 + 43, "32 bytes in unpadded base64url");
        assert_eq!(hash_token(&one).len(), 64);
        assert_ne!(hash_token(&one), hash_token(&two));
    }
}
