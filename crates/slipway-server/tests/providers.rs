//! Every forge through the real router: a correctly signed push builds, and every way of getting
//! it wrong is refused with the right status and builds nothing.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use slipway_core::{BuildRule, Provider};
use slipway_forge::sign::{ExampleEvent, signature_header, signed_headers};

/// Each forge's realistic branch-push payload, from the forge crate's fixtures.
fn push_fixture(provider: Provider) -> &'static str {
    match provider {
        Provider::Github => GITHUB_PUSH,
        Provider::Bitbucket => {
            include_str!("../../slipway-forge/tests/fixtures/bitbucket/push.json")
        }
        Provider::BitbucketServer => {
            include_str!("../../slipway-forge/tests/fixtures/bitbucket_server/push.json")
        }
        Provider::Gitlab => include_str!("../../slipway-forge/tests/fixtures/gitlab/push.json"),
        Provider::Gitea => include_str!("../../slipway-forge/tests/fixtures/gitea/push.json"),
    }
}

const GITHUB_PUSH: &str = r#"{"ref": "refs/heads/main", "before": "1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5",
  "after": "9f2c3c0a1b1e4a7a8c6d5e4f3a2b1c0d9e8f7a6b", "created": false, "deleted": false, "forced": false,
  "head_commit": {"id": "9f2c3c0a1b1e4a7a8c6d5e4f3a2b1c0d9e8f7a6b", "message": "Add feature"},
  "pusher": {"name": "dev"}}"#;

fn request(
    path: &str,
    provider: Provider,
    delivery: &str,
    body: &str,
    secret: &str,
) -> Request<Body> {
    let mut builder = Request::post(path);
    for (name, value) in signed_headers(
        provider,
        ExampleEvent::BranchPush,
        delivery,
        secret,
        body.as_bytes(),
    ) {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

/// A rule that builds every branch, so each fixture's branch builds whatever its name.
fn any_branch() -> BuildRule {
    serde_json::from_value(
        serde_json::json!({"source_type": "branch", "source": "/.*/", "tags": "latest"}),
    )
    .expect("rule")
}

#[tokio::test]
async fn every_forge_accepts_its_own_signed_push_and_refuses_everything_else() {
    let specs = Provider::ALL
        .iter()
        .map(|p| {
            repository(
                &format!("forges/{}", p.as_str()),
                p.as_str(),
                vec![any_branch()],
            )
        })
        .collect();
    let h = harness_with(specs).await;
    for provider in Provider::ALL {
        let name = format!("forges/{}", provider.as_str());
        let path = format!("/hooks/{name}");
        let body = push_fixture(provider);

        let (status, answer) = send(&h, request(&path, provider, "ok-1", body, SECRET)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{provider}: {answer}");
        assert_eq!(
            answer["builds"].as_array().map(Vec::len),
            Some(1),
            "{provider}: {answer}"
        );
        let (status, again) = send(&h, request(&path, provider, "ok-1", body, SECRET)).await;
        assert_eq!(
            (status, &again),
            (StatusCode::ACCEPTED, &answer),
            "{provider}: a duplicate gets the first answer"
        );

        let (status, _) = send(
            &h,
            request(&path, provider, "bad-1", body, "not the secret"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{provider}: wrong signature"
        );

        let mut missing = request(&path, provider, "bad-2", body, SECRET);
        missing.headers_mut().remove(signature_header(provider));
        assert_eq!(
            send(&h, missing).await.0,
            StatusCode::UNAUTHORIZED,
            "{provider}: missing signature"
        );

        let mut empty = request(&path, provider, "bad-3", body, SECRET);
        empty
            .headers_mut()
            .insert(signature_header(provider), "".parse().expect("header"));
        assert_eq!(
            send(&h, empty).await.0,
            StatusCode::UNAUTHORIZED,
            "{provider}: empty signature header"
        );

        let other = Provider::ALL
            .into_iter()
            .find(|p| *p != provider && (*p == Provider::Github || provider == Provider::Github))
            .expect("another forge");
        let foreign = request(&path, other, "bad-4", body, SECRET);
        let (status, error) = send(&h, foreign).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{provider}: a {other} delivery: {error}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("expects {provider} webhooks"))),
            "{provider}: {error}"
        );

        let (status, error) =
            send(&h, request(&path, provider, "bad-5", "{\"not\": ", SECRET)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{provider}: malformed body: {error}"
        );

        let huge = "x".repeat(25 * 1024 * 1024 + 1);
        assert_eq!(
            send(&h, request(&path, provider, "bad-6", &huge, SECRET))
                .await
                .0,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{provider}"
        );

        assert_eq!(
            builds_of(&h, &name).await,
            1,
            "{provider}: only the genuine delivery built"
        );
        let (_, log) = get_json(&h, &format!("/api/repositories/{name}/deliveries")).await;
        let results: Vec<&str> = log["deliveries"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|d| d["verification"].as_str())
            .collect();
        for expected in ["signature mismatch", "missing signature", "wrong provider"] {
            assert!(
                results.iter().any(|r| *r == expected
                    || (provider == Provider::Gitlab
                        && expected == "signature mismatch"
                        && *r == "token mismatch")),
                "{provider}: the log records {expected:?}: {results:?}"
            );
        }
    }
}
