//! Gitea and Forgejo webhooks (one format).
//!
//! Headers: `X-Gitea-Event` or `X-Forgejo-Event` names the event (`-Type` variants carry the
//! detailed name) and `X-Gitea-Delivery` or `X-Forgejo-Delivery` the delivery; Gitea also sends
//! GitHub's and Gogs' headers for compatibility, so it must be recognised before GitHub.
//! Signature: `X-Gitea-Signature` or `X-Forgejo-Signature`, the bare lower-case hex of an
//! HMAC-SHA256 (no `sha256=` prefix; an empty header means the hook has no secret). Events:
//! `push`, including the "Test Delivery" button (there is no ping) and branch or tag deletions,
//! reported with an all-zero `after`; `create` and `delete` duplicate pushes and are ignored.
//! Quirk: in form mode (`payload=<urlencoded JSON>`) Gitea signs the decoded JSON, not the
//! body it sends, so verification decodes the form first.

use http::HeaderMap;
use serde::Deserialize;
use slipway_core::{CommitId, Provider, PushEvent, Secret};

use crate::signature::{Algorithm, SignatureScheme, first_signature, unsigned};
use crate::{
    Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent, branch_or_tag,
    first_header, form_payload, is_form, no_event_header, optional_commit, parse_json,
    parse_timestamp_millis, unhandled,
};

/// Gitea documents no payload limit; it lists at most a few commits per push
/// (`[ui] FEED_MAX_COMMIT_NUM`, 5 by default), so 25 MiB (GitHub's cap) leaves ample room.
const MAX_BODY: usize = 25 * 1024 * 1024;

const NAME: &str = "Gitea";

const GITEA_SIGNATURE: SignatureScheme = SignatureScheme {
    header: "x-gitea-signature",
    prefix: "",
    algorithm: Algorithm::Sha256,
    expected: "<64 hex digits>",
};

const FORGEJO_SIGNATURE: SignatureScheme = SignatureScheme {
    header: "x-forgejo-signature",
    prefix: "",
    algorithm: Algorithm::Sha256,
    expected: "<64 hex digits>",
};

const EVENT_HEADERS: [&str; 4] = [
    "x-gitea-event",
    "x-forgejo-event",
    "x-gitea-event-type",
    "x-forgejo-event-type",
];

#[derive(Debug, Clone, Copy)]
pub struct Gitea;

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
    head_commit: Option<Commit>,
    commits: Option<Vec<Commit>>,
    pusher: Option<User>,
}

#[derive(Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    #[serde(default)]
    timestamp: serde_json::Value,
}

#[derive(Deserialize)]
struct User {
    login: Option<String>,
    username: Option<String>,
}

impl Forge for Gitea {
    fn provider(&self) -> Provider {
        Provider::Gitea
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY
    }

    fn recognizes(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("x-gitea-event") || headers.contains_key("x-forgejo-event")
    }

    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        first_header(headers, &["x-gitea-delivery", "x-forgejo-delivery"]).map(str::to_owned)
    }

    fn event_name(&self, headers: &HeaderMap) -> Option<String> {
        first_header(headers, &EVENT_HEADERS).map(str::to_owned)
    }

    fn verify(
        &self,
        secret: &Secret,
        policy: VerifyPolicy,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        let Some((scheme, value)) = first_signature(&[GITEA_SIGNATURE, FORGEJO_SIGNATURE], headers)
        else {
            return unsigned(policy, "X-Gitea-Signature");
        };
        let secret = secret.expose().as_bytes();
        if !is_form(headers) {
            return scheme.check(secret, body, value);
        }
        // Gitea signs the JSON it puts in the form, so that is what must match. The body is
        // already bounded by MAX_BODY, and so is its decoding. A form with no payload field
        // cannot be what Gitea signed.
        match form_payload(body) {
            Ok(json) => scheme.check(secret, &json, value),
            Err(_) => Err(VerifyError::SignatureMismatch {
                header: scheme.header,
            }),
        }
    }

    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError> {
        match first_header(headers, &EVENT_HEADERS) {
            None => Err(no_event_header("X-Gitea-Event")),
            Some("push") => {
                let json = if is_form(headers) {
                    form_payload(body)?
                } else {
                    body.to_vec()
                };
                parse_push(&json)
            }
            // A new ref is also reported as a push, and a deleted one as a push to zeros.
            Some(event @ ("create" | "delete")) => Ok(WebhookEvent::Ignored(format!(
                "Gitea {event:?} events are ignored: the same change arrives as a push event"
            ))),
            Some(other) => Ok(unhandled(NAME, other)),
        }
    }
}

fn parse_push(json: &[u8]) -> Result<WebhookEvent, ParseError> {
    let payload: PushPayload = parse_json("Gitea push", json)?;
    let git_ref = match branch_or_tag(&payload.git_ref) {
        Ok(git_ref) => git_ref,
        Err(reason) => return Ok(WebhookEvent::Ignored(reason)),
    };
    // No created/deleted flags: an all-zero id (40 digits, or 64 in a SHA-256 repository) on
    // either side says it, and reads as `None`.
    let before = optional_commit("before", payload.before.as_deref())?;
    // For an annotated tag this is the tag object (head_commit is its commit); the worker
    // peels it.
    let after = optional_commit("after", payload.after.as_deref())?;
    let head = after.as_ref().and_then(|after| {
        head_commit(
            payload.head_commit.as_ref(),
            payload.commits.as_deref().unwrap_or_default(),
            after,
        )
    });
    Ok(WebhookEvent::Push(vec![PushEvent {
        git_ref,
        before,
        after,
        head_message: head.and_then(|commit| commit.message.clone()),
        head_timestamp: head.and_then(|commit| parse_timestamp_millis(&commit.timestamp)),
        pusher: payload.pusher.and_then(|user| user.login.or(user.username)),
        // Gitea does not say whether a push was forced.
        forced: false,
    }]))
}

/// The pushed commit's details: `head_commit`, else the listed commit whose id is `after`.
/// (Gitea lists commits newest first, unlike GitHub, so position says nothing.)
fn head_commit<'a>(
    head: Option<&'a Commit>,
    commits: &'a [Commit],
    after: &CommitId,
) -> Option<&'a Commit> {
    head.or_else(|| {
        commits.iter().find(|commit| {
            commit
                .id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(after.as_str()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        exercise, git_ref, headers, id, ignored, millis, pushes, set, signed_pushes, verify_with,
    };
    use crate::{check_provider, detect, hmac_sha256_hex};

    const SECRET: &str = "gitea-webhook-secret";
    const PUSH: &str = include_str!("../tests/fixtures/gitea/push.json");
    const TAG: &str = include_str!("../tests/fixtures/gitea/tag.json");
    const DELETE: &str = include_str!("../tests/fixtures/gitea/delete.json");
    const SHA256_BRANCH: &str = include_str!("../tests/fixtures/gitea/sha256_branch.json");
    const FIXTURES: [&str; 4] = [PUSH, TAG, DELETE, SHA256_BRANCH];
    const PUSHER: Option<&str> = Some("lena");
    const DELIVERY: &str = "6d0e4b2a-8f1c-4a3e-9b7d-2c5f8a1e0d34";

    /// Every header Gitea sends, GitHub's and Gogs' included, signed as Gitea signs: bare hex
    /// over `signed` (the JSON, also in form mode).
    fn delivery(event: &str, signed: &str, secret: &str) -> HeaderMap {
        let signature = hmac_sha256_hex(secret.as_bytes(), signed.as_bytes());
        let prefixed = format!("sha256={signature}");
        headers(&[
            ("x-gitea-event", event),
            ("x-gitea-event-type", event),
            ("x-gitea-delivery", DELIVERY),
            ("x-gitea-signature", &signature),
            ("x-gogs-event", event),
            ("x-gogs-event-type", event),
            ("x-gogs-delivery", DELIVERY),
            ("x-gogs-signature", &signature),
            ("x-github-event", event),
            ("x-github-event-type", event),
            ("x-github-delivery", DELIVERY),
            ("x-hub-signature-256", &prefixed),
            ("user-agent", "Go-http-client/1.1"),
            ("content-type", "application/json"),
        ])
    }

    /// What Forgejo sends: its own headers beside Gitea's.
    fn forgejo_delivery(event: &str, signed: &str, secret: &str) -> HeaderMap {
        let signature = hmac_sha256_hex(secret.as_bytes(), signed.as_bytes());
        let mut map = delivery(event, signed, secret);
        set(&mut map, "x-forgejo-event", event);
        set(&mut map, "x-forgejo-event-type", event);
        set(&mut map, "x-forgejo-delivery", DELIVERY);
        set(&mut map, "x-forgejo-signature", &signature);
        map
    }

    fn verify(headers: &HeaderMap, body: &str) -> Result<Verified, VerifyError> {
        verify_with(&Gitea, SECRET, headers, body.as_bytes())
    }

    /// Verifies a signed fixture and returns its push events.
    fn verified_pushes(body: &str) -> Vec<PushEvent> {
        signed_pushes(
            &Gitea,
            &delivery("push", body, SECRET),
            body,
            "x-gitea-signature",
            SECRET,
        )
    }

    fn branch_push() -> PushEvent {
        PushEvent {
            git_ref: git_ref("refs/heads/main"),
            before: Some(id("28e1879d029cb852e4844d9c718537df08844e03")),
            after: Some(id("bffeb74224043ba2feb48d137756c8a9331c449a")),
            head_message: Some("Retry registry pushes on 502\n".to_owned()),
            head_timestamp: Some(millis("2026-02-20T11:47:31+01:00")),
            pusher: PUSHER.map(str::to_owned),
            forced: false,
        }
    }

    #[test]
    fn branch_push_in_json_mode() {
        assert_eq!(verified_pushes(PUSH), vec![branch_push()]);
        let headers = delivery("push", PUSH, SECRET);
        assert_eq!(Gitea.delivery_id(&headers).as_deref(), Some(DELIVERY));
        assert_eq!(Gitea.event_name(&headers).as_deref(), Some("push"));
    }

    /// Form mode: the body is `payload=<urlencoded JSON>`, the signature covers the JSON.
    #[test]
    fn form_mode_is_signed_over_the_decoded_payload() {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", PUSH)
            .finish();
        let mut headers = delivery("push", PUSH, SECRET);
        set(
            &mut headers,
            "content-type",
            "application/x-www-form-urlencoded",
        );
        assert_eq!(
            verify(&headers, &body),
            Ok(Verified::Signed {
                scheme: "x-gitea-signature"
            })
        );
        assert_eq!(
            pushes(Gitea.parse(&headers, body.as_bytes())),
            vec![branch_push()]
        );
        // A signature over the raw form body is not how Gitea signs: refused.
        let mut raw = delivery("push", &body, SECRET);
        set(
            &mut raw,
            "content-type",
            "application/x-www-form-urlencoded",
        );
        assert_eq!(
            verify(&raw, &body),
            Err(VerifyError::SignatureMismatch {
                header: "x-gitea-signature"
            })
        );
        // A form without the payload field cannot be what Gitea signed.
        assert_eq!(
            verify(&headers, "other=1"),
            Err(VerifyError::SignatureMismatch {
                header: "x-gitea-signature"
            })
        );
        assert!(Gitea.parse(&headers, b"other=1").is_err());
        // Tampering with the JSON inside the form is caught.
        let tampered: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &PUSH.replace("main", "prod"))
            .finish();
        assert!(verify(&headers, &tampered).is_err());
    }

    /// The tag's `after` is the annotated tag object; head_commit is the commit it tags.
    #[test]
    fn annotated_tag() {
        assert_eq!(
            verified_pushes(TAG),
            vec![PushEvent {
                git_ref: git_ref("refs/tags/v0.9.0"),
                before: None,
                after: Some(id("5c2d9e7a3b1f4e8d6a0c2b4e6f8a1c3d5e7f9b02")),
                head_message: Some("Retry registry pushes on 502\n".to_owned()),
                head_timestamp: Some(millis("2026-02-20T11:47:31+01:00")),
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    #[test]
    fn deletion_is_a_push_to_zeros() {
        assert_eq!(
            verified_pushes(DELETE),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/wip/cache-layers"),
                before: Some(id("8e3a1c5f7b9d2e4a6c8f0b1d3e5a7c9f2b4d6e81")),
                after: None,
                head_message: None,
                head_timestamp: None,
                pusher: PUSHER.map(str::to_owned),
                forced: false,
            }]
        );
    }

    /// A new branch in a SHA-256 repository: 64-digit ids, and 64 zeros for "no commit".
    #[test]
    fn sha256_repository_new_branch() {
        assert_eq!(
            verified_pushes(SHA256_BRANCH),
            vec![PushEvent {
                git_ref: git_ref("refs/heads/feature/sha256"),
                before: None,
                after: Some(id(
                    "3f9a7c1e5b2d8f4a6c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
                )),
                head_message: Some("Support SHA-256 object ids\n".to_owned()),
                head_timestamp: Some(millis("2026-03-06T08:15:00Z")),
                pusher: Some("tomasz".to_owned()),
                forced: false,
            }]
        );
    }

    #[test]
    fn forgejo_headers() {
        let mut headers = forgejo_delivery("push", PUSH, SECRET);
        for gitea_only in [
            "x-gitea-event",
            "x-gitea-event-type",
            "x-gitea-delivery",
            "x-gitea-signature",
        ] {
            headers.remove(gitea_only);
        }
        assert_eq!(detect(&headers), Some(Provider::Gitea));
        assert_eq!(
            verify(&headers, PUSH),
            Ok(Verified::Signed {
                scheme: "x-forgejo-signature"
            })
        );
        assert_eq!(Gitea.delivery_id(&headers).as_deref(), Some(DELIVERY));
        assert_eq!(
            pushes(Gitea.parse(&headers, PUSH.as_bytes())),
            vec![branch_push()]
        );
        let both = forgejo_delivery("push", PUSH, SECRET);
        assert!(verify(&both, PUSH).is_ok());
    }

    #[test]
    fn other_events() {
        for event in ["create", "delete"] {
            let headers = delivery(event, "{}", SECRET);
            assert!(ignored(Gitea.parse(&headers, b"{}")).contains("push event"));
        }
        for event in ["pull_request", "issues", "release"] {
            let headers = delivery(event, "{}", SECRET);
            assert_eq!(
                ignored(Gitea.parse(&headers, b"{}")),
                format!("Gitea event {event:?} is not handled")
            );
        }
        let mut headers = delivery("", "{}", SECRET);
        assert!(Gitea.parse(&headers, b"{}").is_err());
        for name in EVENT_HEADERS {
            headers.remove(name);
        }
        assert!(Gitea.parse(&headers, b"{}").is_err());
        let pull = PUSH.replace("refs/heads/main", "refs/pull/3/head");
        let headers = delivery("push", &pull, SECRET);
        assert!(ignored(Gitea.parse(&headers, pull.as_bytes())).contains("refs/pull/3/head"));
    }

    #[test]
    fn rejections() {
        let secret = Secret::new(SECRET);
        let allow = VerifyPolicy {
            allow_unsigned: true,
            ..VerifyPolicy::default()
        };
        let wrong = delivery("push", PUSH, "not-the-secret");
        assert_eq!(
            verify(&wrong, PUSH),
            Err(VerifyError::SignatureMismatch {
                header: "x-gitea-signature"
            })
        );
        assert!(
            Gitea
                .verify(&secret, allow, &wrong, PUSH.as_bytes())
                .is_err()
        );
        let tampered = PUSH.replace("refs/heads/main", "refs/heads/prod");
        assert!(verify(&delivery("push", PUSH, SECRET), &tampered).is_err());
        // Absent, or empty as Gitea sends it for a hook without a secret: unsigned. Its GitHub
        // headers are not consulted.
        for unsigned in [None, Some("")] {
            let mut headers = delivery("push", PUSH, SECRET);
            if let Some(value) = unsigned {
                set(&mut headers, "x-gitea-signature", value);
            } else {
                headers.remove("x-gitea-signature");
            }
            assert_eq!(
                verify(&headers, PUSH),
                Err(VerifyError::MissingSignature {
                    header: "X-Gitea-Signature"
                })
            );
            assert_eq!(
                Gitea.verify(&secret, allow, &headers, PUSH.as_bytes()),
                Ok(Verified::Unsigned)
            );
        }
        // The bare scheme has no prefix: GitHub's `sha256=` form is malformed here.
        let prefixed = format!(
            "sha256={}",
            hmac_sha256_hex(SECRET.as_bytes(), PUSH.as_bytes())
        );
        for malformed in [prefixed.as_str(), "sha256=", "zz", "0123abcd"] {
            let mut headers = delivery("push", PUSH, SECRET);
            set(&mut headers, "x-gitea-signature", malformed);
            assert!(
                matches!(
                    verify(&headers, PUSH),
                    Err(VerifyError::MalformedSignature { .. })
                ),
                "{malformed}"
            );
        }
        // Upper-case hex is still the same HMAC.
        let mut upper = delivery("push", PUSH, SECRET);
        let signature = hmac_sha256_hex(SECRET.as_bytes(), PUSH.as_bytes()).to_uppercase();
        set(&mut upper, "x-gitea-signature", &signature);
        assert!(verify(&upper, PUSH).is_ok());
        // Signed correctly, but not JSON.
        let garbage = "ref=refs/heads/main";
        let headers = delivery("push", garbage, SECRET);
        assert!(verify(&headers, garbage).is_ok());
        assert!(Gitea.parse(&headers, garbage.as_bytes()).is_err());
        let bad_after = r#"{"ref": "refs/heads/main", "before": "", "after": "bffeb742"}"#;
        assert!(Gitea.parse(&headers, bad_after.as_bytes()).is_err());
    }

    #[test]
    fn wrong_provider_and_detection() {
        let github = headers(&[("x-github-event", "push"), ("x-github-delivery", DELIVERY)]);
        assert_eq!(
            check_provider(Provider::Gitea, &github),
            Err(VerifyError::WrongProvider {
                expected: Provider::Gitea,
                found: Some(Provider::Github)
            })
        );
        assert_eq!(
            check_provider(Provider::Gitea, &HeaderMap::new()),
            Err(VerifyError::WrongProvider {
                expected: Provider::Gitea,
                found: None
            })
        );
        // Gitea's requests carry X-GitHub-Event too, and are still Gitea's.
        for body in FIXTURES {
            let headers = delivery("push", body, SECRET);
            assert!(headers.contains_key("x-github-event"));
            assert_eq!(detect(&headers), Some(Provider::Gitea));
            assert_eq!(check_provider(Provider::Gitea, &headers), Ok(()));
        }
    }

    mod properties {
        use super::*;
        use crate::test_support::{arbitrary_body, arbitrary_headers, weird};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        const HEADERS: &[&str] = &[
            "x-gitea-event",
            "x-forgejo-event",
            "x-gitea-signature",
            "x-forgejo-signature",
            "x-gitea-delivery",
            "x-github-event",
            "content-type",
        ];

        fn commit() -> BoxedStrategy<Value> {
            (weird::hash(), weird::text(), weird::timestamp())
                .prop_map(|(id, message, timestamp)| {
                    json!({"id": id, "message": message, "url": "u", "author": {"name": "n"}, "timestamp": timestamp, "added": [], "removed": [], "modified": []})
                })
                .boxed()
        }

        fn payload() -> impl Strategy<Value = Value> {
            (
                weird::full_ref(),
                weird::hash(),
                weird::hash(),
                weird::or_odd(commit()),
                weird::list(commit(), 4),
                (weird::text(), weird::text()),
            )
                .prop_map(|(git_ref, before, after, head, commits, (login, username))| {
                    json!({
                        "ref": git_ref, "before": before, "after": after,
                        "compare_url": "", "commits": commits, "total_commits": 1,
                        "head_commit": head,
                        "repository": {"full_name": "acme/slipway", "object_format_name": "sha1"},
                        "pusher": {"login": login, "username": username}, "sender": null
                    })
                })
        }

        proptest! {
            #[test]
            fn arbitrary_requests_never_panic(headers in arbitrary_headers(HEADERS), body in arbitrary_body(), form in any::<bool>()) {
                exercise(&Gitea, &headers, &body);
                let mut push = headers.clone();
                set(&mut push, "x-gitea-event", "push");
                if form {
                    set(&mut push, "content-type", "application/x-www-form-urlencoded");
                }
                exercise(&Gitea, &push, &body);
            }

            #[test]
            fn weird_push_payloads_never_panic(payload in payload(), form in any::<bool>()) {
                let json = payload.to_string();
                let mut headers = delivery("push", &json, SECRET);
                let body = if form {
                    set(&mut headers, "content-type", "application/x-www-form-urlencoded");
                    form_urlencoded::Serializer::new(String::new()).append_pair("payload", &json).finish()
                } else {
                    json
                };
                prop_assert!(verify(&headers, &body).is_ok());
                exercise(&Gitea, &headers, body.as_bytes());
            }
        }
    }
}
