//! GitHub (and GitHub Enterprise) webhooks.

use http::HeaderMap;
use serde::Deserialize;
use slipway_core::{Provider, PushEvent, Secret};

use crate::signature::{Algorithm, SignatureScheme, unsigned};
use crate::{
    Forge, ParseError, Verified, VerifyError, VerifyPolicy, WebhookEvent, branch_or_tag,
    form_payload, header, is_form, no_event_header, non_empty_header, optional_commit, parse_json,
    unhandled,
};

const SHA256: SignatureScheme = SignatureScheme {
    header: "x-hub-signature-256",
    prefix: "sha256=",
    algorithm: Algorithm::Sha256,
    expected: "sha256=<64 hex digits>",
};

/// The legacy header, accepted only when a repository opts in.
const SHA1: SignatureScheme = SignatureScheme {
    header: "x-hub-signature",
    prefix: "sha1=",
    algorithm: Algorithm::Sha1,
    expected: "sha1=<40 hex digits>",
};

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
const MAX_BODY: usize = 25 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Github;

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    head_commit: Option<HeadCommit>,
    pusher: Option<Pusher>,
}

#[derive(Deserialize)]
struct HeadCommit {
    message: Option<String>,
    #[serde(default)]
    timestamp: serde_json::Value,
}

#[derive(Deserialize)]
struct Pusher {
    name: Option<String>,
}

impl Forge for Github {
    fn provider(&self) -> Provider {
        Provider::Github
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY
    }

    fn recognizes(&self, headers: &HeaderMap) -> bool {
        // Gitea, Forgejo and Gogs also send X-GitHub-Event for compatibility; their own event
        // header says they are not GitHub.
        headers.contains_key("x-github-event")
            && !["x-gitea-event", "x-forgejo-event", "x-gogs-event"]
                .iter()
                .any(|h| headers.contains_key(*h))
    }

    fn delivery_id(&self, headers: &HeaderMap) -> Option<String> {
        let delivery = non_empty_header(headers, "x-github-delivery")?;
        // Delivery GUIDs are unique per hook; the hook id keeps two hooks on one repository
        // (say, an organisation hook and a repository hook) apart.
        Some(match non_empty_header(headers, "x-github-hook-id") {
            Some(hook) => format!("{hook}:{delivery}"),
            None => delivery.to_owned(),
        })
    }

    fn event_name(&self, headers: &HeaderMap) -> Option<String> {
        header(headers, "x-github-event").map(str::to_owned)
    }

    fn verify(
        &self,
        secret: &Secret,
        policy: VerifyPolicy,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        let secret = secret.expose().as_bytes();
        if let Some(value) = SHA256.signature(headers) {
            return SHA256.check(secret, body, value);
        }
        if policy.allow_legacy_sha1
            && let Some(value) = SHA1.signature(headers)
        {
            return SHA1.check(secret, body, value);
        }
        if SHA1.signature(headers).is_some() {
            // Signed, but only with the legacy scheme this repository does not accept: that is
            // a signature Slipway will not check, never an unsigned delivery.
            return Err(VerifyError::MissingSignature {
                header: "X-Hub-Signature-256",
            });
        }
        unsigned(policy, "X-Hub-Signature-256")
    }

    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ParseError> {
        let event = header(headers, "x-github-event").unwrap_or_default();
        match event {
            "ping" => Ok(WebhookEvent::Ping),
            "push" => {
                let json = if is_form(headers) {
                    form_payload(body)?
                } else {
                    body.to_vec()
                };
                parse_push(&json)
            }
            "" => Err(no_event_header("X-GitHub-Event")),
            other => Ok(unhandled("GitHub", other)),
        }
    }
}

fn parse_push(json: &[u8]) -> Result<WebhookEvent, ParseError> {
    let payload: PushPayload = parse_json("GitHub push", json)?;
    let git_ref = match branch_or_tag(&payload.git_ref) {
        Ok(git_ref) => git_ref,
        Err(reason) => return Ok(WebhookEvent::Ignored(reason)),
    };
    let before = optional_commit("before", payload.before.as_deref())?;
    let after = optional_commit("after", payload.after.as_deref())?;
    let (head_message, head_timestamp) = match payload.head_commit {
        Some(commit) => (
            commit.message,
            crate::parse_timestamp_millis(&commit.timestamp),
        ),
        None => (None, None),
    };
    Ok(WebhookEvent::Push(vec![PushEvent {
        git_ref,
        before,
        // For an annotated tag GitHub sends the tag object's id; the worker peels it.
        after: if payload.deleted { None } else { after },
        head_message,
        head_timestamp,
        pusher: payload.pusher.and_then(|p| p.name),
        forced: payload.forced,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use slipway_core::CommitId;
    const SIGNATURE_256: &str = "x-hub-signature-256";

    const SECRET: &str = "s3cret";
    const AFTER: &str = "9f2c3c0a1b1e4a7a8c6d5e4f3a2b1c0d9e8f7a6b";
    const BEFORE: &str = "1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5";

    fn push_body(git_ref: &str, after: &str, deleted: bool) -> String {
        serde_json::json!({
            "ref": git_ref,
            "before": BEFORE,
            "after": after,
            "created": false,
            "deleted": deleted,
            "forced": false,
            "base_ref": null,
            "compare": "https://github.com/acme/web/compare/1e2d3c4b5a69...9f2c3c0a1b1e",
            "commits": [{"id": after, "message": "Add feature\n\nLonger text", "author": {"name": "Dev", "email": "dev@example.com"}}],
            "head_commit": if deleted { serde_json::Value::Null } else { serde_json::json!({"id": after, "message": "Add feature\n\nLonger text", "timestamp": "2026-11-23T10:00:00+01:00"}) },
            "repository": {"id": 1, "full_name": "acme/web", "clone_url": "https://evil.example/ignored.git"},
            "pusher": {"name": "dev", "email": "dev@example.com"},
            "sender": {"login": "dev"}
        })
        .to_string()
    }

    fn headers(event: &str, body: &[u8], secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-github-event",
            HeaderValue::from_str(event).expect("header"),
        );
        headers.insert(
            "x-github-delivery",
            HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        );
        headers.insert("x-github-hook-id", HeaderValue::from_static("42"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let signature = format!("sha256={}", crate::hmac_sha256_hex(secret.as_bytes(), body));
        headers.insert(
            SIGNATURE_256,
            HeaderValue::from_str(&signature).expect("header"),
        );
        headers
    }

    #[test]
    fn verifies_and_parses_a_branch_push() {
        let body = push_body("refs/heads/main", AFTER, false);
        let headers = headers("push", body.as_bytes(), SECRET);
        Github
            .verify(
                &Secret::new(SECRET),
                VerifyPolicy::default(),
                &headers,
                body.as_bytes(),
            )
            .expect("verifies");
        assert_eq!(
            Github.delivery_id(&headers).as_deref(),
            Some("42:72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        let WebhookEvent::Push(events) = Github.parse(&headers, body.as_bytes()).expect("parses")
        else {
            panic!("expected a push");
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].git_ref.full(), "refs/heads/main");
        assert_eq!(events[0].after.as_ref().map(CommitId::as_str), Some(AFTER));
        assert_eq!(
            events[0].head_message.as_deref(),
            Some("Add feature\n\nLonger text")
        );
    }

    #[test]
    fn deletion_has_no_after() {
        let body = push_body("refs/tags/v1.0.0", &"0".repeat(40), true);
        let headers = headers("push", body.as_bytes(), SECRET);
        let WebhookEvent::Push(events) = Github.parse(&headers, body.as_bytes()).expect("parses")
        else {
            panic!("expected a push");
        };
        assert_eq!(events[0].after, None);
    }

    #[test]
    fn form_deliveries_are_signed_over_the_raw_form_body() {
        let json = push_body("refs/heads/main", AFTER, false);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &json)
            .finish();
        let mut headers = headers("push", body.as_bytes(), SECRET);
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Github
            .verify(
                &Secret::new(SECRET),
                VerifyPolicy::default(),
                &headers,
                body.as_bytes(),
            )
            .expect("verifies");
        assert!(matches!(
            Github.parse(&headers, body.as_bytes()),
            Ok(WebhookEvent::Push(_))
        ));
    }

    #[test]
    fn rejections() {
        let body = push_body("refs/heads/main", AFTER, false);
        let secret = Secret::new(SECRET);
        let wrong = headers("push", body.as_bytes(), "other");
        assert!(matches!(
            Github.verify(&secret, VerifyPolicy::default(), &wrong, body.as_bytes()),
            Err(VerifyError::SignatureMismatch { .. })
        ));
        let mut missing = headers("push", body.as_bytes(), SECRET);
        missing.remove(SIGNATURE_256);
        assert!(matches!(
            Github.verify(&secret, VerifyPolicy::default(), &missing, body.as_bytes()),
            Err(VerifyError::MissingSignature { .. })
        ));
        let mut empty = headers("push", body.as_bytes(), SECRET);
        // A prefix-only header is no signature at all, not a malformed one.
        empty.insert(SIGNATURE_256, HeaderValue::from_static("sha256="));
        assert!(matches!(
            Github.verify(&secret, VerifyPolicy::default(), &empty, body.as_bytes()),
            Err(VerifyError::MissingSignature { .. })
        ));
        let mut garbage = headers("push", body.as_bytes(), SECRET);
        garbage.insert(SIGNATURE_256, HeaderValue::from_static("sha256=not-hex"));
        assert!(matches!(
            Github.verify(&secret, VerifyPolicy::default(), &garbage, body.as_bytes()),
            Err(VerifyError::MalformedSignature { .. })
        ));
        let mut not_github = headers("push", body.as_bytes(), SECRET);
        not_github.remove("x-github-event");
        assert!(!Github.recognizes(&not_github));
        assert_eq!(
            crate::check_provider(Provider::Github, &not_github),
            Err(VerifyError::WrongProvider {
                expected: Provider::Github,
                found: None
            })
        );
        let tampered = body.replace("main", "prod");
        let signed = headers("push", body.as_bytes(), SECRET);
        assert!(
            Github
                .verify(
                    &secret,
                    VerifyPolicy::default(),
                    &signed,
                    tampered.as_bytes()
                )
                .is_err()
        );
    }

    #[test]
    fn legacy_sha1_only_when_allowed_and_unsigned_only_when_allowed() {
        let body = push_body("refs/heads/main", AFTER, false);
        let mut legacy = headers("push", body.as_bytes(), SECRET);
        legacy.remove(SIGNATURE_256);
        let sha1 = format!(
            "sha1={}",
            crate::hmac_sha1_hex(SECRET.as_bytes(), body.as_bytes())
        );
        legacy.insert(
            "x-hub-signature",
            HeaderValue::from_str(&sha1).expect("header"),
        );
        let secret = Secret::new(SECRET);
        assert!(matches!(
            Github.verify(&secret, VerifyPolicy::default(), &legacy, body.as_bytes()),
            Err(VerifyError::MissingSignature { .. })
        ));
        let opt_in = VerifyPolicy {
            allow_legacy_sha1: true,
            ..VerifyPolicy::default()
        };
        assert_eq!(
            Github.verify(&secret, opt_in, &legacy, body.as_bytes()),
            Ok(Verified::Signed {
                scheme: "x-hub-signature"
            })
        );
        let mut none = legacy.clone();
        none.remove("x-hub-signature");
        let unsigned_ok = VerifyPolicy {
            allow_unsigned: true,
            ..VerifyPolicy::default()
        };
        assert_eq!(
            Github.verify(&secret, unsigned_ok, &none, body.as_bytes()),
            Ok(Verified::Unsigned)
        );
        // A delivery signed only with SHA-1, where SHA-1 is not accepted, is not "unsigned".
        assert!(matches!(
            Github.verify(&secret, unsigned_ok, &legacy, body.as_bytes()),
            Err(VerifyError::MissingSignature { .. })
        ));
        // Allowing unsigned deliveries never lets a wrong signature through.
        let wrong = headers("push", body.as_bytes(), "other");
        assert!(
            Github
                .verify(&secret, unsigned_ok, &wrong, body.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn malformed_and_other_events() {
        let headers_push = headers("push", b"{", SECRET);
        assert!(Github.parse(&headers_push, b"{").is_err());
        let ping = headers("ping", b"{}", SECRET);
        assert_eq!(Github.parse(&ping, b"{}"), Ok(WebhookEvent::Ping));
        let issues = headers("issues", b"{}", SECRET);
        assert!(matches!(
            Github.parse(&issues, b"{}"),
            Ok(WebhookEvent::Ignored(_))
        ));
        let pr_ref =
            serde_json::json!({"ref": "refs/pull/1/head", "before": BEFORE, "after": AFTER})
                .to_string();
        let push = headers("push", pr_ref.as_bytes(), SECRET);
        assert!(matches!(
            Github.parse(&push, pr_ref.as_bytes()),
            Ok(WebhookEvent::Ignored(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048), sig in ".{0,80}", event in "[a-z_]{0,12}") {
                let mut headers = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_str(&event) { headers.insert("x-github-event", value); }
                if let Ok(value) = HeaderValue::from_str(&sig) { headers.insert(SIGNATURE_256, value); }
                let _ = Github.verify(&Secret::new("k"), VerifyPolicy::default(), &headers, &body);
                let _ = Github.verify(&Secret::new("k"), VerifyPolicy { allow_unsigned: true, allow_legacy_sha1: true }, &headers, &body);
                let _ = Github.parse(&headers, &body);
                let _ = Github.delivery_id(&headers);
            }
        }
    }
}
