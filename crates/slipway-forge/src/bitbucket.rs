//! Bitbucket Cloud webhooks.
//!
//! Headers: `X-Event-Key` names the event and `X-Request-UUID` the delivery (with `X-Hook-UUID`,
//! they tell Cloud apart from Data Center, which sends `X-Request-Id`). Signature:
//! `X-Hub-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw body. Events: `repo:push` only,
//! which batches every ref one push changed into `push.changes[]`; each change becomes its own
//! push event. Quirk: a deleted ref has `new: null` and is named by `old`, and changes name the
//! ref by type and short name (`branch`/`main`), not as a full ref.

use http::HeaderMap;
use serde::Deserialize;
use slipway_core::{Provider, PushEvent, Secret};

use crate::signature::{HUB_SIGNATURE_SHA256, verify_raw_body};
use crate::{
    Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent, batched_push,
    branch_or_tag, header, no_event_header, non_empty_header, optional_commit, parse_json,
    parse_timestamp_millis, unhandled,
};

/// Bitbucket Cloud does not deliver payloads over about 256 KB at all (they fail on its side,
/// per Atlassian's BCLOUD-22312), and lists at most five commits per change; 25 MiB, GitHub's
/// cap, is simply the ceiling every forge here shares, far above anything Cloud sends.
const MAX_BODY: usize = 25 * 1024 * 1024;

const NAME: &str = "Bitbucket";

#[derive(Debug, Clone, Copy)]
pub struct Bitbucket;

#[derive(Deserialize)]
struct PushPayload {
    push: Push,
    actor: Option<Actor>,
}

#[derive(Deserialize)]
struct Push {
    changes: Option<Vec<Change>>,
}

#[derive(Deserialize)]
struct Change {
    new: Option<RefState>,
    old: Option<RefState>,
    forced: Option<bool>,
}

/// One side of a change: a branch or tag as it was (`old`) or is now (`new`).
#[derive(Deserialize)]
struct RefState {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    target: Option<Target>,
}

/// The commit a ref points at (for an annotated tag too: Bitbucket peels it).
#[derive(Deserialize)]
struct Target {
    hash: Option<String>,
    message: Option<String>,
    #[serde(default)]
    date: serde_json::Value,
}

#[derive(Deserialize)]
struct Actor {
    display_name: Option<String>,
    nickname: Option<String>,
}

impl Forge for Bitbucket {
    fn provider(&self) -> Provider {
        Provider::Bitbucket
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY
    }

    fn recognizes(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("x-event-key")
            && (headers.contains_key("x-request-uuid") || headers.contains_key("x-hook-uuid"))
    }

    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        // The same across Bitbucket's retries of one delivery (X-Attempt-Number counts them).
        non_empty_header(headers, "x-request-uuid").map(str::to_owned)
    }

    fn event_name(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, "x-event-key").map(str::to_owned)
    }

    fn verify(
        &self,
        secret: &Secret,
        policy: VerifyPolicy,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        verify_raw_body(
            &[HUB_SIGNATURE_SHA256],
            "X-Hub-Signature",
            secret,
            policy,
            headers,
            body,
        )
    }

    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError> {
        match non_empty_header(headers, "x-event-key") {
            None => Err(no_event_header("X-Event-Key")),
            Some("repo:push") => parse_push(body),
            Some(other) => Ok(unhandled(NAME, other)),
        }
    }
}

fn parse_push(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let payload: PushPayload = parse_json("Bitbucket repo:push", body)?;
    let pusher = payload
        .actor
        .and_then(|actor| actor.display_name.or(actor.nickname));
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for change in payload.push.changes.unwrap_or_default() {
        match change_event(change, pusher.as_deref())? {
            Ok(event) => events.push(event),
            Err(reason) => skipped.push(reason),
        }
    }
    Ok(batched_push(NAME, events, skipped))
}

/// One change as a push event, or why it is not built (the outer error is a malformed
/// payload; the inner one a change that is not to a branch or tag).
fn change_event(
    change: Change,
    pusher: Option<&str>,
) -> Result<Result<PushEvent, String>, ParseError> {
    // A deleted ref is named only by its old side.
    let Some(named) = change.new.as_ref().or(change.old.as_ref()) else {
        return Ok(Err("a change with neither a new nor an old ref".to_owned()));
    };
    let Some(name) = named.name.as_deref() else {
        return Ok(Err("a change whose ref has no name".to_owned()));
    };
    let namespace = match named.kind.as_deref() {
        // `named_branch` is a Mercurial branch, from repositories Bitbucket converted to git.
        Some("branch" | "named_branch") => "refs/heads/",
        Some("tag") => "refs/tags/",
        Some("bookmark") => {
            return Ok(Err(format!("{name:?} is a Mercurial bookmark")));
        }
        other => {
            return Ok(Err(format!(
                "ref {name:?} is of type {:?}, neither a branch nor a tag",
                other.unwrap_or_default()
            )));
        }
    };
    let git_ref = match branch_or_tag(&format!("{namespace}{name}")) {
        Ok(git_ref) => git_ref,
        Err(reason) => return Ok(Err(reason)),
    };
    let before = optional_commit(
        "push.changes[].old.target.hash",
        change
            .old
            .as_ref()
            .and_then(|old| old.target.as_ref())
            .and_then(|target| target.hash.as_deref()),
    )?;
    // Only `new: null` means a deletion: a new side must point at a commit.
    let head = change.new.as_ref().map(|new| new.target.as_ref());
    let after = match head {
        None => None,
        Some(target) => Some(
            optional_commit(
                "push.changes[].new.target.hash",
                target.and_then(|target| target.hash.as_deref()),
            )?
            .ok_or_else(|| {
                ParseError(format!(
                    "the change to {} has a new side without a target commit",
                    git_ref.full()
                ))
            })?,
        ),
    };
    let head = head.flatten();
    Ok(Ok(PushEvent {
        git_ref,
        before,
        after,
        head_message: head.and_then(|target| target.message.clone()),
        head_timestamp: head.and_then(|target| parse_timestamp_millis(&target.date)),
        pusher: pusher.map(str::to_owned),
        forced: change.forced.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        exercise, git_ref, headers, id, ignored, millis, prefixed_sha256, pushes, set,
        signed_pushes, verify_with,
    };
    use crate::{check_provider, detect};

    const SECRET: &str = "bitbucket-cloud-secret";
    const PUSH: &str = include_str!("../tests/fixtures/bitbucket/push.json");
    const TAG: &str = include_str!("../tests/fixtures/bitbucket/tag.json");
    const DELETE: &str = include_str!("../tests/fixtures/bitbucket/delete.json");
    const MULTI: &str = include_str!("../tests/fixtures/bitbucket/multi.json");
    const FIXTURES: [&str; 4] = [PUSH, TAG, DELETE, MULTI];
    const PUSHER: Option<&str> = Some("Mira Okafor");

    /// The headers Bitbucket Cloud sends, signed as it signs.
    fn delivery(event: &str, body: &str, secret: &str) -> HeaderMap {
        headers(&[
            ("x-event-key", event),
            ("x-request-uuid", "5b4f2f2e-7c1d-4e0a-9a55-2f8d3c1b7e60"),
            ("x-hook-uuid", "{2d7c3c5e-0a7e-4a8f-b3c1-6f1e0d9a4b21}"),
            ("x-attempt-number", "1"),
            ("user-agent", "Bitbucket-Webhooks/2.0"),
            ("content-type", "application/json"),
            ("x-hub-signature", &prefixed_sha256(secret, body.as_bytes())),
        ])
    }

    fn verify(headers: &HeaderMap, body: &str) -> Result<Verified, VerifyError> {
        verify_with(&Bitbucket, SECRET, headers, body.as_bytes())
    }

    /// Verifies a signed fixture and returns its push events.
    fn verified_pushes(body: &str) -> Vec<PushEvent> {
        signed_pushes(
            &Bitbucket,
            &delivery("repo:push", body, SECRET),
            body,
            "x-hub-signature",
            SECRET,
        )
    }

    #[test]
    fn branch_push() {
        let events = verified_pushes(PUSH);
        assert_eq!(
            events,
            vec![PushEvent {
                git_ref: git_ref("refs/heads/main"),
                before: Some(id("3f1c8e2a9b7d4c6e0f5a1b2c3d4e5f6a7b8c9d0e")),
                after: Some(id("a7d4e91c02b35f68e1d9c47a2b6f830e5c1d7a94")),
                head_message: Some(
                    "Cache the registry token between builds\n\nAvoids one round trip per push.\n"
                        .to_owned()
                ),
                head_timestamp: Some(millis("2026-03-02T14:21:09+00:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
        let headers = delivery("repo:push", PUSH, SECRET);
        assert_eq!(
            Bitbucket.delivery_id(&headers).as_deref(),
            Some("5b4f2f2e-7c1d-4e0a-9a55-2f8d3c1b7e60")
        );
        assert_eq!(Bitbucket.event_name(&headers).as_deref(), Some("repo:push"));
    }

    #[test]
    fn annotated_tag_points_at_its_commit() {
        let events = verified_pushes(TAG);
        assert_eq!(
            events,
            vec![PushEvent {
                git_ref: git_ref("refs/tags/v2.4.0"),
                before: None,
                after: Some(id("a7d4e91c02b35f68e1d9c47a2b6f830e5c1d7a94")),
                head_message: Some(
                    "Cache the registry token between builds\n\nAvoids one round trip per push.\n"
                        .to_owned()
                ),
                head_timestamp: Some(millis("2026-03-02T14:21:09+00:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn deletion_is_named_by_its_old_side() {
        let events = verified_pushes(DELETE);
        assert_eq!(
            events,
            vec![PushEvent {
                git_ref: git_ref("refs/heads/feature/retry-uploads"),
                before: Some(id("c91e0b7f3a2d4e8f6b1a0c9d8e7f6a5b4c3d2e1f")),
                after: None,
                head_message: None,
                head_timestamp: None,
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn batched_changes_are_planned_one_by_one() {
        let events = verified_pushes(MULTI);
        assert_eq!(
            events,
            vec![
                PushEvent {
                    git_ref: git_ref("refs/heads/release/2.x"),
                    before: Some(id("e4b2a1c9d8f7e6a5b4c3d2e1f0a9b8c7d6e5f4a3")),
                    after: Some(id("0b9e8d7c6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c")),
                    head_message: Some("Rewrite the release notes generator\n".to_owned()),
                    head_timestamp: Some(millis("2026-03-03T09:05:44+00:00")),
                    pusher: PUSHER.map(str::to_owned),
                    forced: true,
                },
                PushEvent {
                    git_ref: git_ref("refs/tags/v2.4.1"),
                    before: None,
                    after: Some(id("0b9e8d7c6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c")),
                    head_message: Some("Rewrite the release notes generator\n".to_owned()),
                    head_timestamp: Some(millis("2026-03-03T09:05:44+00:00")),
                    pusher: PUSHER.map(str::to_owned),
                    forced: false,
                },
                PushEvent {
                    git_ref: git_ref("refs/heads/spike/old-cache"),
                    before: Some(id("d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49")),
                    after: None,
                    head_message: None,
                    head_timestamp: None,
                    pusher: PUSHER.map(str::to_owned),
                    forced: false,
                },
            ]
        );
    }

    #[test]
    fn mercurial_leftovers_and_unbuildable_refs() {
        let change = |kind: &str, name: &str| {
            serde_json::json!({
                "new": {"type": kind, "name": name, "target": {"type": "commit", "hash": "a7d4e91c02b35f68e1d9c47a2b6f830e5c1d7a94"}},
                "old": null, "forced": false, "created": true, "closed": false, "truncated": false, "commits": []
            })
        };
        let body = |changes: Vec<serde_json::Value>| {
            serde_json::json!({"push": {"changes": changes}, "actor": {"nickname": "mira"}})
                .to_string()
        };
        let headers = delivery("repo:push", "", SECRET);
        let named = body(vec![
            change("named_branch", "default"),
            change("bookmark", "tip"),
        ]);
        let events = pushes(Bitbucket.parse(&headers, named.as_bytes()));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].git_ref, git_ref("refs/heads/default"));
        assert_eq!(events[0].pusher.as_deref(), Some("mira"));
        let none = body(vec![change("bookmark", "tip"), change("branch", "a..b")]);
        let reason = ignored(Bitbucket.parse(&headers, none.as_bytes()));
        assert!(
            reason.contains("bookmark") && reason.contains("a..b"),
            "{reason}"
        );
        let empty = body(vec![]);
        assert!(ignored(Bitbucket.parse(&headers, empty.as_bytes())).contains("no ref changes"));
        let headless = serde_json::json!({"push": {"changes": [{"new": {"type": "branch", "name": "main", "target": null}, "old": null}]}}).to_string();
        assert!(Bitbucket.parse(&headers, headless.as_bytes()).is_err());
    }

    #[test]
    fn other_events_are_ignored() {
        for event in ["pullrequest:created", "repo:fork", "diagnostics:ping"] {
            let headers = delivery(event, "{}", SECRET);
            assert_eq!(
                ignored(Bitbucket.parse(&headers, b"{}")),
                format!("Bitbucket event {event:?} is not handled")
            );
        }
        let mut headers = delivery("", "{}", SECRET);
        assert!(Bitbucket.parse(&headers, b"{}").is_err());
        headers.remove("x-event-key");
        assert!(Bitbucket.parse(&headers, b"{}").is_err());
    }

    #[test]
    fn rejections() {
        let secret = Secret::new(SECRET);
        let policy = VerifyPolicy::default();
        let wrong = delivery("repo:push", PUSH, "not-the-secret");
        assert_eq!(
            verify(&wrong, PUSH),
            Err(VerifyError::SignatureMismatch {
                header: "x-hub-signature"
            })
        );
        let tampered = PUSH.replace("main", "prod");
        let signed = delivery("repo:push", PUSH, SECRET);
        assert_eq!(
            verify(&signed, &tampered),
            Err(VerifyError::SignatureMismatch {
                header: "x-hub-signature"
            })
        );
        for unsigned in [None, Some(""), Some("sha256=")] {
            let mut headers = delivery("repo:push", PUSH, SECRET);
            if let Some(value) = unsigned {
                set(&mut headers, "x-hub-signature", value);
            } else {
                headers.remove("x-hub-signature");
            }
            assert_eq!(
                verify(&headers, PUSH),
                Err(VerifyError::MissingSignature {
                    header: "X-Hub-Signature"
                }),
                "{unsigned:?}"
            );
            let allow = VerifyPolicy {
                allow_unsigned: true,
                ..policy
            };
            assert_eq!(
                Bitbucket.verify(&secret, allow, &headers, PUSH.as_bytes()),
                Ok(Verified::Unsigned)
            );
        }
        for malformed in [
            "sha256=zz",
            "sha1=0123",
            "a7d4e91c02b35f68e1d9c47a2b6f830e5c1d7a94",
        ] {
            let mut headers = delivery("repo:push", PUSH, SECRET);
            set(&mut headers, "x-hub-signature", malformed);
            assert!(
                matches!(
                    verify(&headers, PUSH),
                    Err(VerifyError::MalformedSignature { .. })
                ),
                "{malformed}"
            );
        }
        // Allowing unsigned deliveries never lets a wrong signature through.
        let allow = VerifyPolicy {
            allow_unsigned: true,
            ..policy
        };
        assert!(
            Bitbucket
                .verify(&secret, allow, &wrong, PUSH.as_bytes())
                .is_err()
        );
        // Signed correctly, but not JSON.
        let garbage = "<html>not json</html>";
        let headers = delivery("repo:push", garbage, SECRET);
        assert!(verify(&headers, garbage).is_ok());
        assert!(Bitbucket.parse(&headers, garbage.as_bytes()).is_err());
        assert!(Bitbucket.parse(&headers, b"{\"push\": {}}").is_ok());
        assert!(Bitbucket.parse(&headers, b"{\"actor\": {}}").is_err());
    }

    #[test]
    fn wrong_provider_and_detection() {
        let github = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-hub-signature-256", "sha256=00"),
        ]);
        assert_eq!(
            check_provider(Provider::Bitbucket, &github),
            Err(VerifyError::WrongProvider {
                expected: Provider::Bitbucket,
                found: Some(Provider::Github)
            })
        );
        let bare = headers(&[("content-type", "application/json")]);
        assert_eq!(
            check_provider(Provider::Bitbucket, &bare),
            Err(VerifyError::WrongProvider {
                expected: Provider::Bitbucket,
                found: None
            })
        );
        for body in FIXTURES {
            let headers = delivery("repo:push", body, SECRET);
            assert_eq!(detect(&headers), Some(Provider::Bitbucket));
            assert_eq!(check_provider(Provider::Bitbucket, &headers), Ok(()));
            assert!(check_provider(Provider::BitbucketServer, &headers).is_err());
        }
        // Either Cloud header alone is enough to tell it from Data Center.
        let mut hook_only = delivery("repo:push", PUSH, SECRET);
        hook_only.remove("x-request-uuid");
        assert_eq!(detect(&hook_only), Some(Provider::Bitbucket));
    }

    mod properties {
        use super::*;
        use crate::test_support::{arbitrary_body, arbitrary_headers, weird};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        const HEADERS: &[&str] = &[
            "x-event-key",
            "x-request-uuid",
            "x-hook-uuid",
            "x-request-id",
            "x-hub-signature",
            "content-type",
        ];

        fn ref_state() -> BoxedStrategy<Value> {
            (
                weird::one_of(&["branch", "tag", "named_branch", "bookmark"]),
                weird::ref_name(),
                weird::or_odd(
                    (weird::hash(), weird::text(), weird::timestamp())
                        .prop_map(|(hash, message, date)| {
                            json!({"type": "commit", "hash": hash, "message": message, "date": date})
                        })
                        .boxed(),
                ),
            )
                .prop_map(|(kind, name, target)| json!({"type": kind, "name": name, "target": target}))
                .boxed()
        }

        fn payload() -> impl Strategy<Value = Value> {
            let change = (
                weird::or_odd(ref_state()),
                weird::or_odd(ref_state()),
                weird::or_odd(any::<bool>().prop_map(Value::from).boxed()),
                weird::or_odd(any::<bool>().prop_map(Value::from).boxed()),
            )
                .prop_map(|(new, old, forced, truncated)| {
                    json!({"new": new, "old": old, "forced": forced, "truncated": truncated, "commits": []})
                })
                .boxed();
            (weird::list(change, 4), weird::text(), weird::text()).prop_map(
                |(changes, display_name, nickname)| {
                    json!({
                        "push": {"changes": changes},
                        "actor": {"display_name": display_name, "nickname": nickname},
                        "repository": {"full_name": "acme/slipway"}
                    })
                },
            )
        }

        proptest! {
            #[test]
            fn arbitrary_requests_never_panic(headers in arbitrary_headers(HEADERS), body in arbitrary_body()) {
                exercise(&Bitbucket, &headers, &body);
                let mut push = headers.clone();
                set(&mut push, "x-event-key", "repo:push");
                exercise(&Bitbucket, &push, &body);
            }

            #[test]
            fn weird_push_payloads_never_panic(payload in payload()) {
                let body = payload.to_string();
                let headers = delivery("repo:push", &body, SECRET);
                prop_assert!(verify(&headers, &body).is_ok());
                exercise(&Bitbucket, &headers, body.as_bytes());
            }
        }
    }
}
