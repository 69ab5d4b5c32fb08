//! Bitbucket Data Center (formerly Server) webhooks.
//!
//! Headers: `X-Event-Key` names the event and `X-Request-Id` the delivery; the absence of
//! Cloud's `X-Request-UUID`/`X-Hook-UUID` tells the two products apart. Signature:
//! `X-Hub-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw body. Events: `diagnostics:ping`
//! (the "Test connection" button) and `repo:refs_changed`, which batches every ref one push
//! changed into `changes[]`; each change becomes its own push event. Quirk: timestamps come in
//! two forms, ISO 8601 with a colon-less offset (`2017-09-19T09:58:11+1000`) for the event's
//! `date` and epoch milliseconds for commits, which only newer versions include at all.

use http::HeaderMap;
use serde::Deserialize;
use slipway_core::{CommitId, Provider, PushEvent, Secret};

use crate::signature::{HUB_SIGNATURE_SHA256, verify_raw_body};
use crate::{
    Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent, batched_push,
    branch_or_tag, header, no_event_header, non_empty_header, optional_commit, parse_json,
    parse_timestamp_millis, unhandled,
};

/// Data Center documents no payload limit; its push payloads carry a few commits at most, so
/// 25 MiB (GitHub's cap) leaves ample room for any real delivery.
const MAX_BODY: usize = 25 * 1024 * 1024;

const NAME: &str = "Bitbucket Data Center";

#[derive(Debug, Clone, Copy)]
pub struct BitbucketServer;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefsChanged {
    /// When the push happened: the head timestamp when no commit details came with it.
    #[serde(default)]
    date: serde_json::Value,
    actor: Option<Actor>,
    changes: Option<Vec<Change>>,
    /// Newer versions: the most recent commits pushed, and the commit the push moved to.
    commits: Option<Vec<Commit>>,
    to_commit: Option<Commit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    #[serde(rename = "ref")]
    git_ref: Option<Ref>,
    ref_id: Option<String>,
    from_hash: Option<String>,
    to_hash: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Ref {
    /// The full ref, `refs/heads/main`.
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    #[serde(default)]
    author_timestamp: serde_json::Value,
    #[serde(default)]
    committer_timestamp: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Actor {
    display_name: Option<String>,
    name: Option<String>,
}

impl Forge for BitbucketServer {
    fn provider(&self) -> Provider {
        Provider::BitbucketServer
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY
    }

    fn recognizes(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("x-event-key")
            && headers.contains_key("x-request-id")
            && !headers.contains_key("x-request-uuid")
            && !headers.contains_key("x-hook-uuid")
    }

    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        non_empty_header(headers, "x-request-id").map(str::to_owned)
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
            Some("diagnostics:ping") => Ok(WebhookEvent::Ping),
            Some("repo:refs_changed") => parse_refs_changed(body),
            Some(other) => Ok(unhandled(NAME, other)),
        }
    }
}

fn parse_refs_changed(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let payload: RefsChanged = parse_json("Bitbucket Data Center repo:refs_changed", body)?;
    let pusher = payload
        .actor
        .as_ref()
        .and_then(|actor| actor.display_name.clone().or_else(|| actor.name.clone()));
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for change in payload.changes.as_deref().unwrap_or_default() {
        match change_event(change, &payload, pusher.as_deref())? {
            Ok(event) => events.push(event),
            Err(reason) => skipped.push(reason),
        }
    }
    Ok(batched_push(NAME, events, skipped))
}

/// One change as a push event, or why it is not built (the outer error is a malformed
/// payload; the inner one a change that is not to a branch or tag).
fn change_event(
    change: &Change,
    payload: &RefsChanged,
    pusher: Option<&str>,
) -> Result<Result<PushEvent, String>, ParseError> {
    let full = change
        .git_ref
        .as_ref()
        .and_then(|git_ref| git_ref.id.as_deref())
        .or(change.ref_id.as_deref());
    let Some(full) = full else {
        return Ok(Err("a change with no ref".to_owned()));
    };
    let git_ref = match branch_or_tag(full) {
        Ok(git_ref) => git_ref,
        Err(reason) => return Ok(Err(reason)),
    };
    let from = optional_commit("changes[].fromHash", change.from_hash.as_deref())?;
    let to = optional_commit("changes[].toHash", change.to_hash.as_deref())?;
    // The all-zero hash on the missing side already reads as `None`; the type is what says
    // which side is missing, so it decides.
    let (before, after) = match change.kind.as_deref() {
        Some("DELETE") => (from, None),
        Some(kind @ ("ADD" | "UPDATE")) => {
            let Some(to) = to else {
                return Err(ParseError(format!(
                    "the {kind} of {full} carries no toHash"
                )));
            };
            (if kind == "ADD" { None } else { from }, Some(to))
        }
        other => {
            return Ok(Err(format!(
                "the change to {full} is of type {:?}, not ADD, UPDATE or DELETE",
                other.unwrap_or_default()
            )));
        }
    };
    let head = after.as_ref().and_then(|after| head_commit(payload, after));
    let head_timestamp = after.as_ref().and_then(|_| {
        head.and_then(|commit| {
            parse_timestamp_millis(&commit.committer_timestamp)
                .or_else(|| parse_timestamp_millis(&commit.author_timestamp))
        })
        .or_else(|| parse_timestamp_millis(&payload.date))
    });
    Ok(Ok(PushEvent {
        git_ref,
        before,
        after,
        head_message: head.and_then(|commit| commit.message.clone()),
        head_timestamp,
        pusher: pusher.map(str::to_owned),
        // Data Center does not say whether an update was a force push.
        forced: false,
    }))
}

/// The details of commit `id`, if the payload carries them (newer versions do, under
/// `commits[]` and `toCommit`).
fn head_commit<'a>(payload: &'a RefsChanged, id: &CommitId) -> Option<&'a Commit> {
    payload
        .commits
        .iter()
        .flatten()
        .chain(&payload.to_commit)
        .find(|commit| {
            commit
                .id
                .as_deref()
                .is_some_and(|commit_id| commit_id.eq_ignore_ascii_case(id.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        exercise, git_ref, headers, id, ignored, millis, prefixed_sha256, pushes, set,
        signed_pushes, verify_with,
    };
    use crate::{check_provider, detect};

    const SECRET: &str = "bitbucket-dc-secret";
    const PUSH: &str = include_str!("../tests/fixtures/bitbucket_server/push.json");
    const TAG: &str = include_str!("../tests/fixtures/bitbucket_server/tag.json");
    const DELETE: &str = include_str!("../tests/fixtures/bitbucket_server/delete.json");
    const MULTI: &str = include_str!("../tests/fixtures/bitbucket_server/multi.json");
    const PING: &str = include_str!("../tests/fixtures/bitbucket_server/ping.json");
    const PUSHER: Option<&str> = Some("Jonas Lindqvist");

    /// The headers Data Center sends, signed as it signs.
    fn delivery(event: &str, body: &str, secret: &str) -> HeaderMap {
        headers(&[
            ("x-event-key", event),
            ("x-request-id", "0c5e4b1a-93d2-4f7e-8a61-b2c7d9e0f3a4"),
            (
                "user-agent",
                "Atlassian HttpClient 4.2.0 / Bitbucket-8.19.1 (8019001) / Default",
            ),
            ("content-type", "application/json; charset=utf-8"),
            ("x-hub-signature", &prefixed_sha256(secret, body.as_bytes())),
        ])
    }

    fn verify(headers: &HeaderMap, body: &str) -> Result<Verified, VerifyError> {
        verify_with(&BitbucketServer, SECRET, headers, body.as_bytes())
    }

    /// Verifies a signed fixture and returns its push events.
    fn verified_pushes(body: &str) -> Vec<PushEvent> {
        signed_pushes(
            &BitbucketServer,
            &delivery("repo:refs_changed", body, SECRET),
            body,
            "x-hub-signature",
            SECRET,
        )
    }

    /// A newer version's push: commit details come along, with epoch-millisecond times.
    #[test]
    fn branch_push_with_commit_details() {
        assert_eq!(
            verified_pushes(PUSH),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/main"),
                before: Some(id("5e1a9c3b7d2f4e6a8b0c1d3e5f7a9b2c4d6e8f01")),
                after: Some(id("9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70")),
                head_message: Some("Pin the base image by digest".to_owned()),
                head_timestamp: Some(1_772_533_817_000),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
        let headers = delivery("repo:refs_changed", PUSH, SECRET);
        assert_eq!(
            BitbucketServer.delivery_id(&headers).as_deref(),
            Some("0c5e4b1a-93d2-4f7e-8a61-b2c7d9e0f3a4")
        );
        assert_eq!(
            BitbucketServer.event_name(&headers).as_deref(),
            Some("repo:refs_changed")
        );
    }

    /// An older version's payload has no commits: the head timestamp is the push's `date`,
    /// whose offset has no colon.
    #[test]
    fn tag_added() {
        assert_eq!(
            verified_pushes(TAG),
            vec![PushEvent {
                git_ref: git_ref("refs/tags/v3.1.0"),
                before: None,
                after: Some(id("4a8c2e6f0b3d7a1e5c9f2b6d0a4e8c1f5b9d3a72")),
                head_message: None,
                head_timestamp: Some(millis("2026-03-04T10:12:45+10:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn deletion() {
        assert_eq!(
            verified_pushes(DELETE),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/bugfix/PLAT-1182-timeout"),
                before: Some(id("7f3e9b1d5a2c8e4f6b0d1a3c5e7f9b2d4a6c8e13")),
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
        let date = Some(millis("2026-03-05T16:40:02+01:00"));
        assert_eq!(
            verified_pushes(MULTI),
            vec![
                PushEvent {
                    git_ref: git_ref("refs/heads/main"),
                    before: Some(id("9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70")),
                    after: Some(id("2c7e1a5f9b3d6e0a4c8f2b5d9e1a7c3f6b0d4e88")),
                    head_message: None,
                    head_timestamp: date,
                    pusher: PUSHER.map(str::to_owned),
                    forced: false,
                },
                PushEvent {
                    git_ref: git_ref("refs/heads/release/3.1"),
                    before: None,
                    after: Some(id("2c7e1a5f9b3d6e0a4c8f2b5d9e1a7c3f6b0d4e88")),
                    head_message: None,
                    head_timestamp: date,
                    pusher: PUSHER.map(str::to_owned),
                    forced: false,
                },
                PushEvent {
                    git_ref: git_ref("refs/tags/v3.1.0-rc1"),
                    before: Some(id("4a8c2e6f0b3d7a1e5c9f2b6d0a4e8c1f5b9d3a72")),
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
    fn ping_and_other_events() {
        let headers = delivery("diagnostics:ping", PING, SECRET);
        assert!(verify(&headers, PING).is_ok());
        assert_eq!(
            BitbucketServer.parse(&headers, PING.as_bytes()),
            Ok(WebhookEvent::Ping)
        );
        for event in ["pr:opened", "repo:modified", "mirror:repo_synchronized"] {
            let headers = delivery(event, "{}", SECRET);
            assert_eq!(
                ignored(BitbucketServer.parse(&headers, b"{}")),
                format!("Bitbucket Data Center event {event:?} is not handled")
            );
        }
        let mut headers = delivery("", "{}", SECRET);
        assert!(BitbucketServer.parse(&headers, b"{}").is_err());
        headers.remove("x-event-key");
        assert!(BitbucketServer.parse(&headers, b"{}").is_err());
    }

    #[test]
    fn odd_changes() {
        let headers = delivery("repo:refs_changed", "", SECRET);
        let body = |changes: serde_json::Value| {
            serde_json::json!({"eventKey": "repo:refs_changed", "changes": changes}).to_string()
        };
        // `refId` stands in when `ref` is missing.
        let ref_id = body(
            serde_json::json!([{"refId": "refs/heads/main", "fromHash": "0".repeat(40), "toHash": "9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70", "type": "ADD"}]),
        );
        let events = pushes(BitbucketServer.parse(&headers, ref_id.as_bytes()));
        assert_eq!(events[0].git_ref, git_ref("refs/heads/main"));
        assert_eq!(events[0].pusher, None);
        let notes = body(serde_json::json!([
            {"ref": {"id": "refs/notes/commits", "displayId": "commits", "type": "NOTES"}, "fromHash": "0".repeat(40), "toHash": "9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70", "type": "ADD"},
            {"ref": {"id": "refs/heads/main"}, "fromHash": "0".repeat(40), "toHash": "9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70", "type": "MERGE"}
        ]));
        let reason = ignored(BitbucketServer.parse(&headers, notes.as_bytes()));
        assert!(
            reason.contains("refs/notes/commits") && reason.contains("MERGE"),
            "{reason}"
        );
        let no_target = body(
            serde_json::json!([{"ref": {"id": "refs/heads/main"}, "fromHash": "9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70", "toHash": "0".repeat(40), "type": "UPDATE"}]),
        );
        assert!(
            BitbucketServer
                .parse(&headers, no_target.as_bytes())
                .is_err()
        );
        assert!(ignored(BitbucketServer.parse(&headers, b"{}")).contains("no ref changes"));
    }

    #[test]
    fn rejections() {
        let secret = Secret::new(SECRET);
        let wrong = delivery("repo:refs_changed", PUSH, "not-the-secret");
        assert_eq!(
            verify(&wrong, PUSH),
            Err(VerifyError::SignatureMismatch {
                header: "x-hub-signature"
            })
        );
        let tampered = PUSH.replace("refs/heads/main", "refs/heads/prod");
        let signed = delivery("repo:refs_changed", PUSH, SECRET);
        assert!(matches!(
            verify(&signed, &tampered),
            Err(VerifyError::SignatureMismatch { .. })
        ));
        let allow = VerifyPolicy {
            allow_unsigned: true,
            ..VerifyPolicy::default()
        };
        for unsigned in [None, Some(""), Some("sha256=")] {
            let mut headers = delivery("repo:refs_changed", PUSH, SECRET);
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
            assert_eq!(
                BitbucketServer.verify(&secret, allow, &headers, PUSH.as_bytes()),
                Ok(Verified::Unsigned)
            );
        }
        for malformed in ["sha256=not-hex", "sha256=abcd", "md5=00"] {
            let mut headers = delivery("repo:refs_changed", PUSH, SECRET);
            set(&mut headers, "x-hub-signature", malformed);
            assert!(matches!(
                verify(&headers, PUSH),
                Err(VerifyError::MalformedSignature { .. })
            ));
        }
        assert!(
            BitbucketServer
                .verify(&secret, allow, &wrong, PUSH.as_bytes())
                .is_err()
        );
        let garbage = "changes=refs/heads/main";
        let headers = delivery("repo:refs_changed", garbage, SECRET);
        assert!(verify(&headers, garbage).is_ok());
        assert!(BitbucketServer.parse(&headers, garbage.as_bytes()).is_err());
        let bad_hash = r#"{"changes": [{"ref": {"id": "refs/heads/main"}, "fromHash": "abc", "toHash": "9d4b7e2a1c6f3e8d5b0a7c4e1f9d2b6a3c8e5f70", "type": "UPDATE"}]}"#;
        assert!(
            BitbucketServer
                .parse(&headers, bad_hash.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn wrong_provider_and_detection() {
        let github = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        assert_eq!(
            check_provider(Provider::BitbucketServer, &github),
            Err(VerifyError::WrongProvider {
                expected: Provider::BitbucketServer,
                found: Some(Provider::Github)
            })
        );
        assert_eq!(
            check_provider(Provider::BitbucketServer, &HeaderMap::new()),
            Err(VerifyError::WrongProvider {
                expected: Provider::BitbucketServer,
                found: None
            })
        );
        for body in [PUSH, TAG, DELETE, MULTI] {
            let headers = delivery("repo:refs_changed", body, SECRET);
            assert_eq!(detect(&headers), Some(Provider::BitbucketServer));
            assert_eq!(check_provider(Provider::BitbucketServer, &headers), Ok(()));
        }
        let ping = delivery("diagnostics:ping", PING, SECRET);
        assert_eq!(detect(&ping), Some(Provider::BitbucketServer));
        // A Cloud delivery sent to a Data Center repository names Cloud.
        let mut cloud = delivery("repo:push", "{}", SECRET);
        set(
            &mut cloud,
            "x-request-uuid",
            "5b4f2f2e-7c1d-4e0a-9a55-2f8d3c1b7e60",
        );
        assert_eq!(
            check_provider(Provider::BitbucketServer, &cloud),
            Err(VerifyError::WrongProvider {
                expected: Provider::BitbucketServer,
                found: Some(Provider::Bitbucket)
            })
        );
    }

    mod properties {
        use super::*;
        use crate::test_support::{arbitrary_body, arbitrary_headers, weird};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        const HEADERS: &[&str] = &[
            "x-event-key",
            "x-request-id",
            "x-request-uuid",
            "x-hub-signature",
            "content-type",
        ];

        fn commit() -> BoxedStrategy<Value> {
            (weird::hash(), weird::text(), weird::timestamp(), weird::timestamp())
                .prop_map(|(id, message, authored, committed)| {
                    json!({"id": id, "displayId": "9d4b7e2a1c6", "message": message, "authorTimestamp": authored, "committerTimestamp": committed, "parents": []})
                })
                .boxed()
        }

        fn payload() -> impl Strategy<Value = Value> {
            let change = (
                weird::or_odd(
                    (weird::full_ref(), weird::one_of(&["BRANCH", "TAG"]))
                        .prop_map(|(id, kind)| json!({"id": id, "displayId": "x", "type": kind}))
                        .boxed(),
                ),
                weird::full_ref(),
                weird::hash(),
                weird::hash(),
                weird::one_of(&["ADD", "UPDATE", "DELETE"]),
            )
                .prop_map(|(git_ref, ref_id, from, to, kind)| {
                    json!({"ref": git_ref, "refId": ref_id, "fromHash": from, "toHash": to, "type": kind})
                })
                .boxed();
            (
                weird::list(change, 4),
                weird::list(commit(), 3),
                weird::or_odd(commit()),
                weird::timestamp(),
                weird::text(),
            )
                .prop_map(|(changes, commits, to_commit, date, name)| {
                    json!({
                        "eventKey": "repo:refs_changed",
                        "date": date,
                        "actor": {"name": name, "displayName": name},
                        "repository": {"slug": "slipway-demo", "project": {"key": "PLAT"}},
                        "changes": changes,
                        "commits": commits,
                        "toCommit": to_commit
                    })
                })
        }

        proptest! {
            #[test]
            fn arbitrary_requests_never_panic(headers in arbitrary_headers(HEADERS), body in arbitrary_body()) {
                exercise(&BitbucketServer, &headers, &body);
                let mut push = headers.clone();
                set(&mut push, "x-event-key", "repo:refs_changed");
                exercise(&BitbucketServer, &push, &body);
            }

            #[test]
            fn weird_refs_changed_payloads_never_panic(payload in payload()) {
                let body = payload.to_string();
                let headers = delivery("repo:refs_changed", &body, SECRET);
                prop_assert!(verify(&headers, &body).is_ok());
                exercise(&BitbucketServer, &headers, body.as_bytes());
            }
        }
    }
}
