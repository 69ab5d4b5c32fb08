//! The headers each forge sends with a delivery, signed as that forge signs: for tests, and for
//! anyone who wants to send Slipway a hand-made delivery (see the README's `curl` example).
//! Nothing in the server uses this; verification is written separately in each forge module.

use slipway_core::Provider;

use crate::hmac_sha256_hex;

/// Which delivery to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleEvent {
    BranchPush,
    TagPush,
    Ping,
}

/// The headers `provider` sends with `body` for `event`, signed with `secret`.
pub fn signed_headers(
    provider: Provider,
    event: ExampleEvent,
    delivery_id: &str,
    secret: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let hmac = hmac_sha256_hex(secret.as_bytes(), body);
    let json = ("content-type", "application/json".to_owned());
    match provider {
        Provider::Github => vec![
            json,
            (
                "x-github-event",
                if event == ExampleEvent::Ping {
                    "ping"
                } else {
                    "push"
                }
                .to_owned(),
            ),
            ("x-github-delivery", delivery_id.to_owned()),
            ("x-hub-signature-256", format!("sha256={hmac}")),
            ("user-agent", "GitHub-Hookshot/slipway-example".to_owned()),
        ],
        Provider::Bitbucket => vec![
            json,
            ("x-event-key", "repo:push".to_owned()),
            ("x-request-uuid", delivery_id.to_owned()),
            (
                "x-hook-uuid",
                "{3f7e9a4b-6c1d-4e2f-9a8b-7c6d5e4f3a2b}".to_owned(),
            ),
            ("x-hub-signature", format!("sha256={hmac}")),
            ("user-agent", "Bitbucket-Webhooks/2.0".to_owned()),
        ],
        Provider::BitbucketServer => vec![
            json,
            (
                "x-event-key",
                if event == ExampleEvent::Ping {
                    "diagnostics:ping"
                } else {
                    "repo:refs_changed"
                }
                .to_owned(),
            ),
            ("x-request-id", delivery_id.to_owned()),
            ("x-hub-signature", format!("sha256={hmac}")),
            ("user-agent", "Atlassian HttpClient".to_owned()),
        ],
        Provider::Gitlab => vec![
            json,
            (
                "x-gitlab-event",
                if event == ExampleEvent::TagPush {
                    "Tag Push Hook"
                } else {
                    "Push Hook"
                }
                .to_owned(),
            ),
            ("x-gitlab-token", secret.to_owned()),
            (
                "x-gitlab-webhook-uuid",
                "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c".to_owned(),
            ),
            ("idempotency-key", delivery_id.to_owned()),
            ("user-agent", "GitLab/17.5.0".to_owned()),
        ],
        // Gitea also sends GitHub's and Gogs's event headers, for compatibility.
        Provider::Gitea => vec![
            json,
            ("x-gitea-event", "push".to_owned()),
            ("x-gitea-event-type", "push".to_owned()),
            ("x-github-event", "push".to_owned()),
            ("x-gogs-event", "push".to_owned()),
            ("x-gitea-delivery", delivery_id.to_owned()),
            ("x-gitea-signature", hmac),
            ("user-agent", "Go-http-client/1.1".to_owned()),
        ],
    }
}

/// The header that carries the signature (or token) for `provider`.
pub fn signature_header(provider: Provider) -> &'static str {
    match provider {
        Provider::Github => "x-hub-signature-256",
        Provider::Bitbucket | Provider::BitbucketServer => "x-hub-signature",
        Provider::Gitlab => "x-gitlab-token",
        Provider::Gitea => "x-gitea-signature",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{VerifyPolicy, forge_for};
    use slipway_core::Secret;

    #[test]
    fn every_forge_verifies_what_signed_headers_makes() {
        for provider in Provider::ALL {
            let body = br#"{"ref": "refs/heads/main"}"#;
            let mut headers = http::HeaderMap::new();
            for (name, value) in
                signed_headers(provider, ExampleEvent::BranchPush, "d-1", "s3cret", body)
            {
                headers.insert(name, value.parse().expect("header"));
            }
            assert!(forge_for(provider).recognizes(&headers), "{provider}");
            assert_eq!(crate::detect(&headers), Some(provider));
            let verified = forge_for(provider).verify(
                &Secret::new("s3cret"),
                VerifyPolicy::default(),
                &headers,
                body,
            );
            assert!(verified.is_ok(), "{provider}: {verified:?}");
            assert!(headers.contains_key(signature_header(provider)));
        }
    }
}
