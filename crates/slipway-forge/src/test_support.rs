//! What every forge's tests share: building requests, reading the answers, and the property
//! tests' generators and checks.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::Value;
use slipway_core::{CommitId, GitRef, PushEvent, Secret};

use crate::{Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent};

/// A request's headers from name/value pairs.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

/// Sets (or replaces) one header.
pub(crate) fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).expect("header value"));
}

/// The push events of a parse that must have produced some.
pub(crate) fn pushes(parsed: Result<WebhookEvent, ParseError>) -> Vec<PushEvent> {
    match parsed {
        Ok(WebhookEvent::Push(events)) => events,
        other => panic!("expected a push, got {other:?}"),
    }
}

/// Verifies a delivery as `forge` does for a repository with no opt-outs.
pub(crate) fn verify_with(
    forge: &dyn Forge,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    forge.verify(&Secret::new(secret), VerifyPolicy::default(), headers, body)
}

/// The push events of a delivery that must verify with `scheme` and parse as a push.
pub(crate) fn signed_pushes(
    forge: &dyn Forge,
    headers: &HeaderMap,
    body: &str,
    scheme: &'static str,
    secret: &str,
) -> Vec<PushEvent> {
    assert_eq!(
        verify_with(forge, secret, headers, body.as_bytes()),
        Ok(Verified::Signed { scheme })
    );
    pushes(forge.parse(headers, body.as_bytes()))
}

/// The reason of a parse that must have been ignored.
pub(crate) fn ignored(parsed: Result<WebhookEvent, ParseError>) -> String {
    match parsed {
        Ok(WebhookEvent::Ignored(reason)) => reason,
        other => panic!("expected an ignored event, got {other:?}"),
    }
}

pub(crate) fn id(hex: &str) -> CommitId {
    hex.parse().expect("commit id")
}

pub(crate) fn git_ref(full: &str) -> GitRef {
    GitRef::parse(full).expect("branch or tag")
}

/// Milliseconds for an RFC 3339 time, to compare against what a parser read.
pub(crate) fn millis(rfc3339: &str) -> i64 {
    crate::parse_timestamp_millis(&Value::from(rfc3339)).expect("timestamp")
}

/// `sha256=` and the HMAC, as Bitbucket (and GitHub) write it.
pub(crate) fn prefixed_sha256(secret: &str, signed: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::hmac_sha256_hex(secret.as_bytes(), signed)
    )
}

/// Runs everything a request meets on its way through the server, under every policy. The
/// types already say each outcome is an `Ok` or a structured error; what this adds is that
/// nothing panics, and that whatever parses obeys the invariants below.
pub(crate) fn exercise(forge: &dyn Forge, headers: &HeaderMap, body: &[u8]) {
    let _ = forge.recognizes(headers);
    let _ = forge.delivery_id(headers);
    let _ = forge.event_name(headers);
    let _ = crate::check_provider(forge.provider(), headers);
    let _ = crate::detect(headers);
    for allow_unsigned in [false, true] {
        for allow_legacy_sha1 in [false, true] {
            let policy = VerifyPolicy {
                allow_unsigned,
                allow_legacy_sha1,
            };
            let _ = forge.verify(&Secret::new("k"), policy, headers, body);
            let _ = forge.verify(&Secret::new(""), policy, headers, body);
        }
    }
    if let Ok(event) = forge.parse(headers, body) {
        check_invariants(&event);
    }
}

/// What every parsed event must satisfy: a push has at least one ref update, to a branch or
/// tag, and "no commit" is `None`, never an all-zero id.
pub(crate) fn check_invariants(event: &WebhookEvent) {
    if let WebhookEvent::Push(events) = event {
        assert!(!events.is_empty(), "a push with no ref updates");
        for event in events {
            assert_eq!(
                GitRef::parse(&event.git_ref.full()).as_ref(),
                Some(&event.git_ref)
            );
            assert!(!event.before.as_ref().is_some_and(CommitId::is_zero));
            assert!(!event.after.as_ref().is_some_and(CommitId::is_zero));
        }
    }
}

/// Arbitrary header maps over `names` (a forge's own headers plus the ones it must not be
/// confused by): each name absent, or carrying arbitrary bytes that HTTP allows in a value.
pub(crate) fn arbitrary_headers(names: &'static [&'static str]) -> BoxedStrategy<HeaderMap> {
    let value = prop_oneof![
        Just(None),
        "[ -~]{0,90}".prop_map(Some),
        proptest::collection::vec(any::<u8>(), 0..90)
            .prop_map(|bytes| Some(String::from_utf8_lossy(&bytes).into_owned())),
    ];
    proptest::collection::vec(value, names.len())
        .prop_map(move |values| {
            let mut map = HeaderMap::new();
            for (name, value) in names.iter().zip(values) {
                if let Some(value) = value
                    && let Ok(value) = HeaderValue::from_bytes(value.as_bytes())
                {
                    map.insert(*name, value);
                }
            }
            map
        })
        .boxed()
}

/// Arbitrary bodies, up to 4 KiB.
pub(crate) fn arbitrary_body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096)
}

/// Strategies for JSON that has a forge's structure but odd contents.
pub(crate) mod weird {
    use super::*;

    fn string(pattern: &'static str) -> BoxedStrategy<Value> {
        pattern.prop_map(Value::from).boxed()
    }

    /// A field that is now and then null, and rarely of the wrong type: rarely enough that a
    /// payload of fifty such fields still parses about half the time, so that the tests reach
    /// past deserialisation into the parsers' own logic.
    pub(crate) fn or_odd(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        prop_oneof![
            300 => inner,
            15 => Just(Value::Null),
            2 => any::<i64>().prop_map(Value::from),
            1 => Just(Value::Bool(true)),
        ]
        .boxed()
    }

    /// Commit ids: well-formed SHA-1 and SHA-256, their all-zero forms, upper case, and hex (or
    /// not) of random lengths.
    pub(crate) fn hash() -> BoxedStrategy<Value> {
        or_odd(
            prop_oneof![
                8 => string("[0-9a-f]{40}"),
                3 => string("[0-9A-F]{64}"),
                3 => Just(Value::from("0".repeat(40))),
                2 => Just(Value::from("0".repeat(64))),
                1 => string("[0-9a-f]{0,70}"),
                1 => string("[0-9a-z]{39,41}"),
                1 => Just(Value::from("")),
            ]
            .boxed(),
        )
    }

    /// Ref names without the `refs/...` prefix: ordinary ones, ones git refuses, and anything.
    pub(crate) fn ref_name() -> BoxedStrategy<Value> {
        or_odd(
            prop_oneof![
                6 => string("[a-z][a-z0-9_-]{0,12}(/[a-z0-9][a-z0-9._-]{0,8}[a-z0-9])?"),
                2 => string("[a-z][a-z0-9._/-]{0,20}"),
                2 => string("(main|v1\\.0|feature/x|a\\.\\.b|x\\.lock|/lead|trail/|with space)"),
                1 => string(".{0,30}"),
                1 => Just(Value::from("")),
            ]
            .boxed(),
        )
    }

    /// Full refs: branches and tags (valid or not), other namespaces, and anything.
    pub(crate) fn full_ref() -> BoxedStrategy<Value> {
        or_odd(
            prop_oneof![
                8 => ("(refs/heads/|refs/tags/)", ref_name()).prop_map(|(prefix, name)| {
                    match name {
                        Value::String(name) => Value::from(format!("{prefix}{name}")),
                        other => other,
                    }
                }),
                1 => string("refs/(pull|merge-requests|notes)/[0-9a-z/]{0,12}"),
                1 => string(".{0,40}"),
            ]
            .boxed(),
        )
    }

    /// Free text (messages, names), including control characters and the empty string.
    pub(crate) fn text() -> BoxedStrategy<Value> {
        or_odd(string("(?s).{0,40}"))
    }

    /// Timestamps in every form forges send, and malformed ones.
    pub(crate) fn timestamp() -> BoxedStrategy<Value> {
        or_odd(
            prop_oneof![
                string("20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-][01][0-9]:?[0-5][0-9])"),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                string(".{0,70}"),
            ]
            .boxed(),
        )
    }

    /// One of `words`, or something else.
    pub(crate) fn one_of(words: &'static [&'static str]) -> BoxedStrategy<Value> {
        or_odd(
            prop_oneof![
                4 => proptest::sample::select(words).prop_map(Value::from),
                1 => string(".{0,10}"),
            ]
            .boxed(),
        )
    }

    /// A list of 0 to `max` items, or null.
    pub(crate) fn list(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
        or_odd(
            proptest::collection::vec(item, 0..=max)
                .prop_map(Value::from)
                .boxed(),
        )
    }
}
