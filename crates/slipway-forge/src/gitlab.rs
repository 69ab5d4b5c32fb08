//! GitLab (gitlab.com and self-managed) webhooks.
//!
//! Headers: `X-Gitlab-Event` names the event; the delivery is identified by `Idempotency-Key`
//! (kept across GitLab's retries), else `X-Gitlab-Webhook-UUID`, else `X-Gitlab-Event-UUID`.
//! Authentication: no signature, but a shared token, `X-Gitlab-Token`, compared with the secret
//! in constant time. Events: `Push Hook`, `Tag Push Hook`, and `System Hook` deliveries whose
//! `object_kind` is `push` or `tag_push` (the same payload). Quirk: for an annotated tag
//! `after` is the tag object, so the commit to build is `checkout_sha`; and `commits[]` holds
//! at most the 20 newest commits, however many `total_commits_count` says were pushed.

use http::HeaderMap;
use serde::Deserialize;
use slipway_core::{CommitId, Provider, PushEvent, Secret};

use crate::signature::{tokens_match, unsigned};
use crate::{
    Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent, branch_or_tag,
    first_header, header, no_event_header, non_empty_header, optional_commit, parse_json,
    parse_timestamp_millis, unhandled,
};

/// GitLab refuses to send payloads over 25 MB (its default webhook payload limit).
const MAX_BODY: usize = 25 * 1024 * 1024;

const NAME: &str = "GitLab";
const TOKEN: &str = "x-gitlab-token";

#[derive(Debug, Clone, Copy)]
pub struct Gitlab;

#[derive(Deserialize)]
struct PushPayload {
    object_kind: Option<String>,
    event_name: Option<String>,
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
    checkout_sha: Option<String>,
    user_username: Option<String>,
    user_name: Option<String>,
    commits: Option<Vec<Commit>>,
}

/// Just enough of a system hook to tell which kind it is.
#[derive(Deserialize)]
struct Kind {
    object_kind: Option<String>,
    event_name: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    #[serde(default)]
    timestamp: serde_json::Value,
}

impl Forge for Gitlab {
    fn provider(&self) -> Provider {
        Provider::Gitlab
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY
    }

    fn recognizes(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("x-gitlab-event")
    }

    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        first_header(
            headers,
            &[
                "idempotency-key",
                "x-gitlab-webhook-uuid",
                "x-gitlab-event-uuid",
            ],
        )
        .map(str::to_owned)
    }

    fn event_name(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, "x-gitlab-event").map(str::to_owned)
    }

    fn verify(
        &self,
        secret: &Secret,
        policy: VerifyPolicy,
        headers: &HeaderMap,
        _body: &[u8],
    ) -> Result<Verified, VerifyError> {
        // Raw bytes, not `header()`: a token need not be ASCII, and one that is not valid text
        // is a wrong token, not a missing one.
        let presented = headers
            .get(TOKEN)
            .map(|value| value.as_bytes().trim_ascii())
            .filter(|value| !value.is_empty());
        match presented {
            None => unsigned(policy, "X-Gitlab-Token"),
            Some(token) if tokens_match(secret.expose().as_bytes(), token) => {
                Ok(Verified::Signed { scheme: TOKEN })
            }
            Some(_) => Err(VerifyError::TokenMismatch {
                header: "X-Gitlab-Token",
            }),
        }
    }

    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError> {
        match non_empty_header(headers, "x-gitlab-event") {
            None => Err(no_event_header("X-Gitlab-Event")),
            Some("Push Hook") => parse_push("push", body),
            Some("Tag Push Hook") => parse_push("tag_push", body),
            Some("System Hook") => parse_system_hook(body),
            Some(other) => Ok(unhandled(NAME, other)),
        }
    }
}

/// A system hook: a push or tag push in the same shape as a project hook's, or something else.
fn parse_system_hook(body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let kind: Kind = parse_json("GitLab system hook", body)?;
    match kind.object_kind.or(kind.event_name).as_deref() {
        Some(kind @ ("push" | "tag_push")) => parse_push(kind, body),
        other => Ok(WebhookEvent::Ignored(format!(
            "GitLab system hook {:?} is not handled",
            other.unwrap_or_default()
        ))),
    }
}

/// A push or tag push payload, whose `object_kind` must be `expected`.
fn parse_push(expected: &str, body: &[u8]) -> Result<WebhookEvent, ParseError> {
    let payload: PushPayload = parse_json("GitLab push", body)?;
    let kind = payload
        .object_kind
        .as_deref()
        .or(payload.event_name.as_deref());
    if kind != Some(expected) {
        return Err(ParseError(format!(
            "the event header announces a {expected} but the payload's object_kind is {:?}",
            kind.unwrap_or_default()
        )));
    }
    let git_ref = match branch_or_tag(&payload.git_ref) {
        Ok(git_ref) => git_ref,
        Err(reason) => return Ok(WebhookEvent::Ignored(reason)),
    };
    let before = optional_commit("before", payload.before.as_deref())?;
    let pushed = optional_commit("after", payload.after.as_deref())?;
    let checkout = optional_commit("checkout_sha", payload.checkout_sha.as_deref())?;
    // A deleted ref has an all-zero `after` (and no checkout_sha). Otherwise the commit to
    // build is checkout_sha: for an annotated tag `after` is the tag object.
    let after = pushed.map(|pushed| checkout.unwrap_or(pushed));
    let head = after
        .as_ref()
        .and_then(|after| head_commit(payload.commits.as_deref().unwrap_or_default(), after));
    Ok(WebhookEvent::Push(vec![PushEvent {
        git_ref,
        before,
        after,
        head_message: head.and_then(|commit| commit.message.clone()),
        head_timestamp: head.and_then(|commit| parse_timestamp_millis(&commit.timestamp)),
        pusher: payload.user_username.or(payload.user_name),
        // GitLab does not say whether a push was forced.
        forced: false,
    }]))
}

/// The pushed commit's details: the commit whose id is `after`, else the last listed (GitLab
/// lists the newest 20, oldest first).
fn head_commit<'a>(commits: &'a [Commit], after: &CommitId) -> Option<&'a Commit> {
    commits
        .iter()
        .find(|commit| {
            commit
                .id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(after.as_str()))
        })
        .or(commits.last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        exercise, git_ref, headers, id, ignored, millis, pushes, set, signed_pushes, verify_with,
    };
    use crate::{check_provider, detect};

    const SECRET: &str = "gl-hook-token-5f2a";
    const PUSH: &str = include_str!("../tests/fixtures/gitlab/push.json");
    const TAG: &str = include_str!("../tests/fixtures/gitlab/tag.json");
    const DELETE: &str = include_str!("../tests/fixtures/gitlab/delete.json");
    const TRUNCATED: &str = include_str!("../tests/fixtures/gitlab/truncated.json");
    const PUSHER: Option<&str> = Some("akosgi");

    /// The headers GitLab sends, with the token as configured.
    fn delivery(event: &str, token: &str) -> HeaderMap {
        headers(&[
            ("x-gitlab-event", event),
            ("x-gitlab-token", token),
            ("x-gitlab-instance", "https://gitlab.example.org"),
            (
                "x-gitlab-webhook-uuid",
                "3b7c1f0e-52a4-4d8e-9e61-0f2a7b5c9d13",
            ),
            (
                "x-gitlab-event-uuid",
                "e0d9c8b7-a6f5-4e3d-8c2b-1a0f9e8d7c6b",
            ),
            ("idempotency-key", "8f14e45f-ceea-467a-9af0-2b6d3c1e7a90"),
            ("user-agent", "GitLab/17.9.2"),
            ("content-type", "application/json"),
        ])
    }

    fn verify(headers: &HeaderMap) -> Result<Verified, VerifyError> {
        verify_with(&Gitlab, SECRET, headers, b"")
    }

    fn verified_pushes(event: &str, body: &str) -> Vec<PushEvent> {
        signed_pushes(
            &Gitlab,
            &delivery(event, SECRET),
            body,
            "x-gitlab-token",
            SECRET,
        )
    }

    fn branch_push() -> PushEvent {
        PushEvent {
            git_ref: git_ref("refs/heads/main"),
            before: Some(id("95790bf891e76fee5e1747ab589903a6a1f80f22")),
            after: Some(id("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")),
            head_message: Some(
                "Build the image for arm64 too\n\nThe runners are arm64 now.\n".to_owned(),
            ),
            head_timestamp: Some(millis("2026-02-27T16:03:41+01:00")),
            pusher: PUSHER.map(str::to_owned),
            forced: false,
        }
    }

    #[test]
    fn push_hook() {
        assert_eq!(verified_pushes("Push Hook", PUSH), vec![branch_push()]);
        let headers = delivery("Push Hook", SECRET);
        assert_eq!(
            Gitlab.delivery_id(&headers).as_deref(),
            Some("8f14e45f-ceea-467a-9af0-2b6d3c1e7a90")
        );
        assert_eq!(Gitlab.event_name(&headers).as_deref(), Some("Push Hook"));
    }

    #[test]
    fn delivery_id_falls_back() {
        let mut headers = delivery("Push Hook", SECRET);
        headers.remove("idempotency-key");
        assert_eq!(
            Gitlab.delivery_id(&headers).as_deref(),
            Some("3b7c1f0e-52a4-4d8e-9e61-0f2a7b5c9d13")
        );
        headers.remove("x-gitlab-webhook-uuid");
        assert_eq!(
            Gitlab.delivery_id(&headers).as_deref(),
            Some("e0d9c8b7-a6f5-4e3d-8c2b-1a0f9e8d7c6b")
        );
        headers.remove("x-gitlab-event-uuid");
        assert_eq!(Gitlab.delivery_id(&headers), None);
    }

    /// The same payload through a system hook.
    #[test]
    fn system_hook_push() {
        assert_eq!(verified_pushes("System Hook", PUSH), vec![branch_push()]);
        let tag = verified_pushes("System Hook", TAG);
        assert_eq!(tag[0].git_ref, git_ref("refs/tags/v1.8.0"));
        let project_created = r#"{"event_name": "project_create", "name": "x"}"#;
        let headers = delivery("System Hook", SECRET);
        assert!(
            ignored(Gitlab.parse(&headers, project_created.as_bytes())).contains("project_create")
        );
        let mr = r#"{"object_kind": "merge_request"}"#;
        assert!(ignored(Gitlab.parse(&headers, mr.as_bytes())).contains("merge_request"));
    }

    /// `after` is the tag object; the commit to build is `checkout_sha`.
    #[test]
    fn annotated_tag_builds_the_checkout_sha() {
        assert_eq!(
            verified_pushes("Tag Push Hook", TAG),
            vec![PushEvent {
                git_ref: git_ref("refs/tags/v1.8.0"),
                before: None,
                after: Some(id("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")),
                head_message: Some(
                    "Build the image for arm64 too\n\nThe runners are arm64 now.\n".to_owned()
                ),
                head_timestamp: Some(millis("2026-02-27T16:03:41+01:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn deletion() {
        assert_eq!(
            verified_pushes("Push Hook", DELETE),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/feature/arm-runners"),
                before: Some(id("c3f1a9e7b5d2048e6a1c3e5f7b9d0a2c4e6f8b1d")),
                after: None,
                head_message: None,
                head_timestamp: None,
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    /// 25 commits pushed, 20 listed: the head is still found by id.
    #[test]
    fn truncated_commit_list() {
        let payload: serde_json::Value = serde_json::from_str(TRUNCATED).expect("json");
        assert_eq!(payload["total_commits_count"], 25);
        assert_eq!(payload["commits"].as_array().map(Vec::len), Some(20));
        assert_eq!(
            verified_pushes("Push Hook", TRUNCATED),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/develop"),
                before: Some(id("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d")),
                after: Some(id("f0e1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d")),
                head_message: Some("Step 25: wire the cache into the builder\n".to_owned()),
                head_timestamp: Some(millis("2026-03-01T12:25:00+00:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn head_commit_falls_back_to_the_last_listed() {
        let body = serde_json::json!({
            "object_kind": "push", "ref": "refs/heads/main",
            "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
            "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "checkout_sha": null, "user_name": "Ákos Gi",
            "commits": [{"id": "1111111111111111111111111111111111111111", "message": "older"}, {"id": "2222222222222222222222222222222222222222", "message": "newest listed"}]
        })
        .to_string();
        let events = pushes(Gitlab.parse(&delivery("Push Hook", SECRET), body.as_bytes()));
        assert_eq!(
            events[0].after,
            Some(id("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"))
        );
        assert_eq!(events[0].head_message.as_deref(), Some("newest listed"));
        assert_eq!(events[0].pusher.as_deref(), Some("Ákos Gi"));
    }

    #[test]
    fn header_and_object_kind_must_agree() {
        let headers = delivery("Push Hook", SECRET);
        assert!(Gitlab.parse(&headers, TAG.as_bytes()).is_err());
        let headers = delivery("Tag Push Hook", SECRET);
        assert!(Gitlab.parse(&headers, PUSH.as_bytes()).is_err());
    }

    #[test]
    fn other_events_are_ignored() {
        for event in [
            "Merge Request Hook",
            "Pipeline Hook",
            "Note Hook",
            "Job Hook",
        ] {
            let headers = delivery(event, SECRET);
            assert_eq!(
                ignored(Gitlab.parse(&headers, b"{}")),
                format!("GitLab event {event:?} is not handled")
            );
        }
        let mut headers = delivery("", SECRET);
        assert!(Gitlab.parse(&headers, b"{}").is_err());
        headers.remove("x-gitlab-event");
        assert!(Gitlab.parse(&headers, b"{}").is_err());
        let mr_ref = PUSH.replace("refs/heads/main", "refs/merge-requests/7/head");
        let headers = delivery("Push Hook", SECRET);
        assert!(ignored(Gitlab.parse(&headers, mr_ref.as_bytes())).contains("merge-requests"));
    }

    #[test]
    fn rejections() {
        let secret = Secret::new(SECRET);
        let allow = VerifyPolicy {
            allow_unsigned: true,
            ..VerifyPolicy::default()
        };
        let wrong = delivery("Push Hook", "gl-hook-token-5f2b");
        assert_eq!(
            verify(&wrong),
            Err(VerifyError::TokenMismatch {
                header: "X-Gitlab-Token"
            })
        );
        // Allowing unauthenticated deliveries never lets a wrong token through.
        assert!(Gitlab.verify(&secret, allow, &wrong, b"").is_err());
        let prefix = delivery("Push Hook", &SECRET[..SECRET.len() - 1]);
        assert!(verify(&prefix).is_err());
        let mut non_ascii = delivery("Push Hook", SECRET);
        non_ascii.insert(
            "x-gitlab-token",
            http::HeaderValue::from_bytes("gl-hook-tökën".as_bytes()).expect("obs-text"),
        );
        assert!(matches!(
            Gitlab.verify(&secret, allow, &non_ascii, b""),
            Err(VerifyError::TokenMismatch { .. })
        ));
        assert_eq!(
            Gitlab.verify(&Secret::new("gl-hook-tökën"), allow, &non_ascii, b""),
            Ok(Verified::Signed {
                scheme: "x-gitlab-token"
            })
        );
        for missing in [None, Some(""), Some("   ")] {
            let mut headers = delivery("Push Hook", SECRET);
            if let Some(value) = missing {
                set(&mut headers, "x-gitlab-token", value);
            } else {
                headers.remove("x-gitlab-token");
            }
            assert_eq!(
                verify(&headers),
                Err(VerifyError::MissingSignature {
                    header: "X-Gitlab-Token"
                })
            );
            assert_eq!(
                Gitlab.verify(&secret, allow, &headers, b""),
                Ok(Verified::Unsigned)
            );
        }
        // Authenticated, but not JSON.
        let headers = delivery("Push Hook", SECRET);
        assert!(verify(&headers).is_ok());
        assert!(Gitlab.parse(&headers, b"ref=refs/heads/main").is_err());
        assert!(
            Gitlab
                .parse(&headers, b"{\"object_kind\": \"push\"}")
                .is_err()
        );
        let system = delivery("System Hook", SECRET);
        assert!(Gitlab.parse(&system, b"[]").is_err());
    }

    #[test]
    fn wrong_provider_and_detection() {
        let github = headers(&[("x-github-event", "push")]);
        assert_eq!(
            check_provider(Provider::Gitlab, &github),
            Err(VerifyError::WrongProvider {
                expected: Provider::Gitlab,
                found: Some(Provider::Github)
            })
        );
        assert_eq!(
            check_provider(Provider::Gitlab, &headers(&[("user-agent", "curl/8.5.0")])),
            Err(VerifyError::WrongProvider {
                expected: Provider::Gitlab,
                found: None
            })
        );
        for event in ["Push Hook", "Tag Push Hook", "System Hook"] {
            let headers = delivery(event, SECRET);
            assert_eq!(detect(&headers), Some(Provider::Gitlab));
            assert_eq!(check_provider(Provider::Gitlab, &headers), Ok(()));
        }
    }

    mod properties {
        use super::*;
        use crate::test_support::{arbitrary_body, arbitrary_headers, weird};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        const HEADERS: &[&str] = &[
            "x-gitlab-event",
            "x-gitlab-token",
            "idempotency-key",
            "x-gitlab-webhook-uuid",
            "x-gitlab-event-uuid",
            "content-type",
        ];

        fn commit() -> BoxedStrategy<Value> {
            (weird::hash(), weird::text(), weird::timestamp())
                .prop_map(|(id, message, timestamp)| {
                    json!({"id": id, "message": message, "title": "t", "timestamp": timestamp, "author": {"name": "n", "email": "e"}})
                })
                .boxed()
        }

        /// A payload and the event header it comes with: mostly the hook matching its kind (or
        /// a system hook), sometimes a mismatched pair, with a kind that is now and then odd.
        fn payload() -> impl Strategy<Value = (Value, &'static str)> {
            let pairing = prop_oneof![
                4 => Just(("push", "Push Hook")),
                4 => Just(("tag_push", "Tag Push Hook")),
                2 => proptest::sample::select(&["push", "tag_push"][..]).prop_map(|kind| (kind, "System Hook")),
                1 => Just(("tag_push", "Push Hook")),
            ];
            (
                pairing,
                weird::or_odd(Just(Value::Null).boxed()),
                weird::full_ref(),
                (weird::hash(), weird::hash(), weird::hash()),
                (weird::text(), weird::text()),
                weird::list(commit(), 4),
                any::<u16>(),
            )
                .prop_map(
                    |(
                        (kind, event),
                        odd,
                        git_ref,
                        (before, after, checkout),
                        (username, name),
                        commits,
                        total,
                    )| {
                        // `odd` is null but for the rare case that replaces the kind.
                        let kind = if odd.is_null() {
                            Value::from(kind)
                        } else {
                            odd
                        };
                        let payload = json!({
                            "object_kind": kind, "event_name": kind, "ref": git_ref,
                            "before": before, "after": after, "checkout_sha": checkout,
                            "user_username": username, "user_name": name,
                            "project": {"path_with_namespace": "acme/slipway"},
                            "commits": commits, "total_commits_count": total
                        });
                        (payload, event)
                    },
                )
        }

        proptest! {
            #[test]
            fn arbitrary_requests_never_panic(headers in arbitrary_headers(HEADERS), body in arbitrary_body()) {
                exercise(&Gitlab, &headers, &body);
                for event in ["Push Hook", "Tag Push Hook", "System Hook"] {
                    let mut push = headers.clone();
                    set(&mut push, "x-gitlab-event", event);
                    exercise(&Gitlab, &push, &body);
                }
            }

            #[test]
            fn weird_push_payloads_never_panic((payload, event) in payload()) {
                let body = payload.to_string();
                let headers = delivery(event, SECRET);
                prop_assert!(verify(&headers).is_ok());
                exercise(&Gitlab, &headers, body.as_bytes());
            }
        }
    }
}
