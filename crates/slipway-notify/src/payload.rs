//! Outgoing webhooks: the bodies Slipway sends, their signature and their headers.
//!
//! `image_pushed` uses Docker Hub's webhook shape, so receivers written for Docker Hub work
//! unchanged, and adds a `slipway` object with what Docker Hub does not say (digest, commit, ref,
//! build). One delivery is sent per pushed tag, as Docker Hub does. The build events
//! (`build_queued`, `build_started`, `build_succeeded`, `build_failed`, `build_cancelled`) share
//! one shape:
//!
//! ```json
//! {"event": "build_succeeded", "delivery_id": "…", "timestamp": 1700000000,
//!  "build": {"id", "repository", "ref", "commit", "image", "tags", "status", "error", "digest",
//!            "trigger", "queued_at", "started_at", "finished_at", "url"}}
//! ```
//!
//! Every delivery is signed: `X-Slipway-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! The delivery id and the timestamp (Unix seconds) are sent as headers and inside the signed
//! body, so a receiver can reject a replayed delivery (an id seen before, or a stale timestamp)
//! without trusting unsigned headers.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use slipway_core::{BuildId, BuildStatus, ImageName, Secret};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::{HttpRequestSpec, USER_AGENT};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Slipway-Signature-256";
/// The header carrying the delivery id (a UUID, also `delivery_id` in the body).
pub const DELIVERY_HEADER: &str = "X-Slipway-Delivery";
/// The header carrying the send time in Unix seconds (also `timestamp` in the body).
pub const TIMESTAMP_HEADER: &str = "X-Slipway-Timestamp";
/// The header carrying the event name.
pub const EVENT_HEADER: &str = "X-Slipway-Event";

/// What an outgoing webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookEvent {
    BuildQueued,
    BuildStarted,
    BuildSucceeded,
    BuildFailed,
    BuildCancelled,
    ImagePushed,
}

impl HookEvent {
    pub const ALL: [HookEvent; 6] = [
        HookEvent::BuildQueued,
        HookEvent::BuildStarted,
        HookEvent::BuildSucceeded,
        HookEvent::BuildFailed,
        HookEvent::BuildCancelled,
        HookEvent::ImagePushed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::BuildQueued => "build_queued",
            HookEvent::BuildStarted => "build_started",
            HookEvent::BuildSucceeded => "build_succeeded",
            HookEvent::BuildFailed => "build_failed",
            HookEvent::BuildCancelled => "build_cancelled",
            HookEvent::ImagePushed => "image_pushed",
        }
    }

    /// The build event a build entering `status` fires. A skipped build fires none: it neither
    /// built nor failed, and no subscriber asked to hear about it.
    pub fn for_build_status(status: BuildStatus) -> Option<HookEvent> {
        match status {
            BuildStatus::Queued => Some(HookEvent::BuildQueued),
            BuildStatus::Running => Some(HookEvent::BuildStarted),
            BuildStatus::Succeeded => Some(HookEvent::BuildSucceeded),
            BuildStatus::Failed => Some(HookEvent::BuildFailed),
            BuildStatus::Cancelled => Some(HookEvent::BuildCancelled),
            BuildStatus::Skipped => None,
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HookEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event {s:?} (known: {})", known.join(", "))
            })
    }
}

/// One delivery's identity: which event, its id and when it is sent. A redelivery may reuse the
/// id (so a receiver can tell it is the same event) but should get a fresh timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub event: HookEvent,
    pub id: Uuid,
    pub timestamp: OffsetDateTime,
}

impl Delivery {
    /// A new delivery of `event` with a random id, sent at `now`.
    pub fn new(event: HookEvent, now: OffsetDateTime) -> Self {
        Self {
            event,
            id: Uuid::new_v4(),
            timestamp: now,
        }
    }

    /// The timestamp as sent: whole Unix seconds.
    pub fn unix_timestamp(&self) -> i64 {
        self.timestamp.unix_timestamp()
    }
}

/// What a webhook says about a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub id: BuildId,
    /// Slipway's repository name, `owner/name`.
    pub repository: String,
    /// The full ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    pub commit: String,
    /// The image without a tag, as configured: `registry.example.com/acme/web` or `acme/web`.
    pub image: String,
    pub tags: Vec<String>,
    pub status: BuildStatus,
    pub error: Option<String>,
    /// The pushed manifest's digest, once there is one.
    pub digest: Option<String>,
    /// What queued the build: `push`, `manual`, …
    pub trigger: String,
    pub queued_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// The build's page on the dashboard.
    pub url: String,
}

/// `time` as RFC 3339 in UTC, or null in the impossible case that it cannot be written (a year
/// outside 0–9999).
fn rfc3339(time: OffsetDateTime) -> Value {
    time.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

fn optional_rfc3339(time: Option<OffsetDateTime>) -> Value {
    time.map_or(Value::Null, rfc3339)
}

/// The body of a build event (`build_queued` … `build_cancelled`).
pub fn build_event_body(delivery: &Delivery, build: &BuildInfo) -> String {
    json!({
        "event": delivery.event.as_str(),
        "delivery_id": delivery.id.to_string(),
        "timestamp": delivery.unix_timestamp(),
        "build": {
            "id": build.id.to_string(),
            "repository": build.repository,
            "ref": build.git_ref,
            "commit": build.commit,
            "image": build.image,
            "tags": build.tags,
            "status": build.status.as_str(),
            "error": build.error,
            "digest": build.digest,
            "trigger": build.trigger,
            "queued_at": rfc3339(build.queued_at),
            "started_at": optional_rfc3339(build.started_at),
            "finished_at": optional_rfc3339(build.finished_at),
            "url": build.url,
        },
    })
    .to_string()
}

/// How Docker Hub would name the image repository: `repo_name` is the path in the registry
/// (`namespace/name`), `namespace` everything before the last component, `name` the last
/// component, `repo_url` a page for it.
struct DockerHubRepository {
    repo_name: String,
    namespace: String,
    name: String,
    repo_url: String,
}

fn docker_hub_repository(image: &str) -> DockerHubRepository {
    // A name that does not parse (it was validated when configured, so this should not happen)
    // is still described rather than dropped: as a path on an unknown registry.
    let (registry, path) = match ImageName::from_str(image) {
        Ok(name) => (name.registry().to_owned(), name.path().to_owned()),
        Err(_) => (String::new(), image.to_owned()),
    };
    // Docker Hub puts single-component names (official images) in the `library` namespace.
    let repo_name = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let (namespace, name) = match repo_name.rsplit_once('/') {
        Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
        None => (String::new(), repo_name.clone()),
    };
    let repo_url = match registry.as_str() {
        "docker.io" => format!("https://hub.docker.com/r/{repo_name}"),
        "" => String::new(),
        other => format!("https://{other}/{repo_name}"),
    };
    DockerHubRepository {
        repo_name,
        namespace,
        name,
        repo_url,
    }
}

/// The body of an `image_pushed` delivery for one pushed `tag` of `build`, pushed at
/// `pushed_at`. Docker Hub's fields come first; Slipway's are under `slipway`.
///
/// Docker Hub's `callback_url` lets a receiver report back; Slipway takes no such reports and
/// sends the build page there, which is at least a URL about this push. `date_created` is
/// meant to be when the image repository was created, which Slipway does not track; the push
/// time stands in for it.
pub fn image_pushed_body(
    delivery: &Delivery,
    build: &BuildInfo,
    tag: &str,
    pushed_at: OffsetDateTime,
) -> String {
    let repository = docker_hub_repository(&build.image);
    let pushed = pushed_at.unix_timestamp();
    json!({
        "callback_url": build.url,
        "push_data": {
            "pushed_at": pushed,
            "pusher": "slipway",
            "tag": tag,
        },
        "repository": {
            "comment_count": 0,
            "date_created": pushed,
            "description": "",
            "dockerfile": "",
            "full_description": "",
            "is_official": false,
            "is_private": true,
            "is_trusted": true,
            "name": repository.name,
            // Docker Hub's owner is the account the namespace belongs to.
            "namespace": repository.namespace,
            "owner": repository.namespace,
            "repo_name": repository.repo_name,
            "repo_url": repository.repo_url,
            "star_count": 0,
            "status": "Active",
        },
        "slipway": {
            "event": delivery.event.as_str(),
            "delivery_id": delivery.id.to_string(),
            "timestamp": delivery.unix_timestamp(),
            "digest": build.digest,
            "commit": build.commit,
            "ref": build.git_ref,
            "build_id": build.id.to_string(),
            "build_url": build.url,
            "image": build.image,
            "tag": tag,
            "tags": build.tags,
            "repository": build.repository,
        },
    })
    .to_string()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`: the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is a valid signature of `body` under `secret`, compared in constant time:
/// what a receiver does (the tests' receiver uses this; the README shows the same in a few lines
/// of another language).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    // Refusing other lengths first keeps decoding bounded.
    if hex_digest.len() != 64 {
        return false;
    }
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The headers of a delivery whose body has `signature` (from [`sign`]).
pub fn webhook_headers(delivery: &Delivery, signature: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("User-Agent".to_owned(), USER_AGENT.to_owned()),
        (EVENT_HEADER.to_owned(), delivery.event.as_str().to_owned()),
        (DELIVERY_HEADER.to_owned(), delivery.id.to_string()),
        (
            TIMESTAMP_HEADER.to_owned(),
            delivery.unix_timestamp().to_string(),
        ),
        (SIGNATURE_HEADER.to_owned(), signature.to_owned()),
    ]
}

/// The signed request delivering `body` (from [`build_event_body`] or [`image_pushed_body`]
/// for the same `delivery`) to `url`. The URL must have passed
/// [`crate::ssrf::check_target_url`]; this function does not check it again.
pub fn webhook_request(
    url: &str,
    secret: &Secret,
    delivery: &Delivery,
    body: String,
) -> HttpRequestSpec {
    let signature = sign(secret.expose().as_bytes(), body.as_bytes());
    HttpRequestSpec {
        method: "POST",
        url: url.to_owned(),
        headers: webhook_headers(delivery, &signature),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;
    use time::macros::datetime;

    fn build() -> BuildInfo {
        BuildInfo {
            id: BuildId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
            repository: "acme/web".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            image: "registry.example.com:5000/acme/web".to_owned(),
            tags: vec!["latest".to_owned(), "main-0123456".to_owned()],
            status: BuildStatus::Succeeded,
            error: None,
            digest: Some(
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    .to_owned(),
            ),
            trigger: "push".to_owned(),
            queued_at: datetime!(2024-05-01 12:00:00 UTC),
            started_at: Some(datetime!(2024-05-01 12:00:05 UTC)),
            finished_at: Some(datetime!(2024-05-01 12:03:00 +02:00)),
            url: "https://slipway.example.com/builds/0190".to_owned(),
        }
    }

    fn delivery(event: HookEvent) -> Delivery {
        Delivery {
            event,
            id: Uuid::from_u128(0x1234),
            timestamp: datetime!(2024-05-01 12:03:01 UTC),
        }
    }

    fn parse(body: &str) -> Value {
        serde_json::from_str(body).expect("the body is JSON")
    }

    fn keys(value: &Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn events_round_trip_and_follow_build_statuses() {
        for event in HookEvent::ALL {
            assert_eq!(event.as_str().parse::<HookEvent>(), Ok(event));
            assert_eq!(event.to_string(), event.as_str());
        }
        assert!("push".parse::<HookEvent>().is_err());
        assert_eq!(
            HookEvent::for_build_status(BuildStatus::Queued),
            Some(HookEvent::BuildQueued)
        );
        assert_eq!(
            HookEvent::for_build_status(BuildStatus::Running),
            Some(HookEvent::BuildStarted)
        );
        assert_eq!(
            HookEvent::for_build_status(BuildStatus::Succeeded),
            Some(HookEvent::BuildSucceeded)
        );
        assert_eq!(
            HookEvent::for_build_status(BuildStatus::Failed),
            Some(HookEvent::BuildFailed)
        );
        assert_eq!(
            HookEvent::for_build_status(BuildStatus::Cancelled),
            Some(HookEvent::BuildCancelled)
        );
        assert_eq!(HookEvent::for_build_status(BuildStatus::Skipped), None);
    }

    #[test]
    fn build_event_shape() {
        let body = parse(&build_event_body(
            &delivery(HookEvent::BuildSucceeded),
            &build(),
        ));
        assert_eq!(keys(&body), ["build", "delivery_id", "event", "timestamp"]);
        assert_eq!(body["event"], "build_succeeded");
        assert_eq!(body["delivery_id"], Uuid::from_u128(0x1234).to_string());
        assert_eq!(
            body["timestamp"],
            datetime!(2024-05-01 12:03:01 UTC).unix_timestamp()
        );
        let b = &body["build"];
        assert_eq!(
            keys(b),
            [
                "commit",
                "digest",
                "error",
                "finished_at",
                "id",
                "image",
                "queued_at",
                "ref",
                "repository",
                "started_at",
                "status",
                "tags",
                "trigger",
                "url"
            ]
        );
        assert_eq!(b["id"], "01900000-0000-7000-8000-000000000001");
        assert_eq!(b["repository"], "acme/web");
        assert_eq!(b["ref"], "refs/heads/main");
        assert_eq!(b["commit"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(b["image"], "registry.example.com:5000/acme/web");
        assert_eq!(b["tags"], json!(["latest", "main-0123456"]));
        assert_eq!(b["status"], "succeeded");
        assert_eq!(b["error"], Value::Null);
        assert!(
            b["digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert_eq!(b["trigger"], "push");
        assert_eq!(b["queued_at"], "2024-05-01T12:00:00Z");
        assert_eq!(b["started_at"], "2024-05-01T12:00:05Z");
        // Times are always sent in UTC.
        assert_eq!(b["finished_at"], "2024-05-01T10:03:00Z");
        assert_eq!(b["url"], "https://slipway.example.com/builds/0190");
    }

    #[test]
    fn a_queued_build_has_nulls_where_nothing_happened_yet() {
        let mut queued = build();
        queued.status = BuildStatus::Queued;
        queued.started_at = None;
        queued.finished_at = None;
        queued.digest = None;
        let body = parse(&build_event_body(
            &delivery(HookEvent::BuildQueued),
            &queued,
        ));
        assert_eq!(body["event"], "build_queued");
        assert_eq!(body["build"]["status"], "queued");
        assert_eq!(body["build"]["started_at"], Value::Null);
        assert_eq!(body["build"]["finished_at"], Value::Null);
        assert_eq!(body["build"]["digest"], Value::Null);

        let mut failed = build();
        failed.status = BuildStatus::Failed;
        failed.error = Some("step 3/5 failed".to_owned());
        let body = parse(&build_event_body(
            &delivery(HookEvent::BuildFailed),
            &failed,
        ));
        assert_eq!(body["build"]["error"], "step 3/5 failed");
        assert_eq!(body["build"]["status"], "failed");
    }

    #[test]
    fn image_pushed_has_docker_hubs_shape() {
        let pushed_at = datetime!(2024-05-01 12:02:59 UTC);
        let body = parse(&image_pushed_body(
            &delivery(HookEvent::ImagePushed),
            &build(),
            "latest",
            pushed_at,
        ));
        assert_eq!(
            keys(&body),
            ["callback_url", "push_data", "repository", "slipway"]
        );
        assert!(body["callback_url"].is_string());

        let push = &body["push_data"];
        assert_eq!(keys(push), ["pushed_at", "pusher", "tag"]);
        assert_eq!(push["pushed_at"].as_i64(), Some(pushed_at.unix_timestamp()));
        assert_eq!(push["pusher"], "slipway");
        assert_eq!(push["tag"], "latest");

        let repo = &body["repository"];
        // Every field Docker Hub sends, with Docker Hub's types.
        let strings = [
            "description",
            "dockerfile",
            "full_description",
            "name",
            "namespace",
            "owner",
            "repo_name",
            "repo_url",
            "status",
        ];
        let integers = ["comment_count", "date_created", "star_count"];
        let booleans = ["is_official", "is_private", "is_trusted"];
        let mut expected: Vec<&str> = strings
            .iter()
            .chain(&integers)
            .chain(&booleans)
            .copied()
            .collect();
        expected.sort_unstable();
        assert_eq!(keys(repo), expected);
        for field in strings {
            assert!(repo[field].is_string(), "{field}");
        }
        for field in integers {
            assert!(repo[field].is_i64(), "{field}");
        }
        for field in booleans {
            assert!(repo[field].is_boolean(), "{field}");
        }
        assert_eq!(repo["repo_name"], "acme/web");
        assert_eq!(repo["name"], "web");
        assert_eq!(repo["namespace"], "acme");
        assert_eq!(repo["owner"], "acme");
        assert_eq!(
            repo["repo_url"],
            "https://registry.example.com:5000/acme/web"
        );
        assert_eq!(repo["is_private"], true);
        assert_eq!(repo["is_official"], false);
        assert_eq!(repo["is_trusted"], true);
        assert_eq!(repo["status"], "Active");
        assert_eq!(repo["comment_count"], 0);
        assert_eq!(repo["star_count"], 0);

        let s = &body["slipway"];
        assert_eq!(s["event"], "image_pushed");
        assert_eq!(s["delivery_id"], Uuid::from_u128(0x1234).to_string());
        assert!(s["timestamp"].is_i64());
        assert!(
            s["digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert_eq!(s["commit"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(s["ref"], "refs/heads/main");
        assert_eq!(s["build_id"], "01900000-0000-7000-8000-000000000001");
        assert_eq!(s["build_url"], "https://slipway.example.com/builds/0190");
        assert_eq!(s["image"], "registry.example.com:5000/acme/web");
        assert_eq!(s["tag"], "latest");
        assert_eq!(s["tags"], json!(["latest", "main-0123456"]));
    }

    #[test]
    fn docker_hub_names() {
        let hub = docker_hub_repository("acme/web");
        assert_eq!(hub.repo_name, "acme/web");
        assert_eq!(hub.repo_url, "https://hub.docker.com/r/acme/web");
        let official = docker_hub_repository("nginx");
        assert_eq!(official.repo_name, "library/nginx");
        assert_eq!(
            (official.namespace.as_str(), official.name.as_str()),
            ("library", "nginx")
        );
        let nested = docker_hub_repository("ghcr.io/org/team/app");
        assert_eq!(nested.repo_name, "org/team/app");
        assert_eq!(
            (nested.namespace.as_str(), nested.name.as_str()),
            ("org/team", "app")
        );
        assert_eq!(nested.repo_url, "https://ghcr.io/org/team/app");
        let flat = docker_hub_repository("localhost:5000/app");
        assert_eq!((flat.namespace.as_str(), flat.name.as_str()), ("", "app"));
        // An invalid name is described, not dropped, and does not panic.
        let odd = docker_hub_repository("Not Valid/X");
        assert_eq!(odd.repo_name, "Not Valid/X");
        assert_eq!(odd.repo_url, "");
    }

    /// HMAC-SHA256 written out from its definition (RFC 2104), sharing no code with `sign`.
    fn independent_hmac(key: &[u8], message: &[u8]) -> String {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let inner_key: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let outer_key: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::digest([inner_key.as_slice(), message].concat());
        let outer = Sha256::digest([outer_key.as_slice(), inner.as_slice()].concat());
        hex::encode(outer)
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        let body = build_event_body(&delivery(HookEvent::BuildSucceeded), &build());
        for secret in [&b"s3cret"[..], b"", &[7u8; 100]] {
            assert_eq!(
                sign(secret, body.as_bytes()),
                format!("sha256={}", independent_hmac(secret, body.as_bytes()))
            );
        }
    }

    #[test]
    fn signature_matches_known_vectors() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The example in GitHub's webhook documentation, which receivers often test against.
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn verification() {
        let body = b"{\"event\":\"build_queued\"}";
        let header = sign(b"key", body);
        assert!(verify(b"key", body, &header));
        assert!(verify(b"key", body, &format!(" {header} ")));
        assert!(!verify(b"other", body, &header));
        assert!(!verify(b"key", b"{\"event\":\"build_failed\"}", &header));
        assert!(!verify(b"key", body, header.trim_start_matches("sha256=")));
        assert!(!verify(b"key", body, "sha256=zz"));
        assert!(!verify(b"key", body, &format!("sha256={}", "g".repeat(64))));
        assert!(!verify(b"key", body, ""));
    }

    #[test]
    fn webhook_request_headers_and_signature() {
        let d = delivery(HookEvent::ImagePushed);
        let body = image_pushed_body(&d, &build(), "latest", d.timestamp);
        let secret = Secret::new("hook-secret-value");
        let request = webhook_request("https://hooks.example.com/in", &secret, &d, body.clone());
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "https://hooks.example.com/in");
        assert_eq!(request.body, body);
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        assert_eq!(request.header("User-Agent"), Some(USER_AGENT));
        assert_eq!(request.header(EVENT_HEADER), Some("image_pushed"));
        let id = d.id.to_string();
        assert_eq!(request.header(DELIVERY_HEADER), Some(id.as_str()));
        let timestamp = d.unix_timestamp().to_string();
        assert_eq!(request.header(TIMESTAMP_HEADER), Some(timestamp.as_str()));
        let signature = request.header(SIGNATURE_HEADER).unwrap_or_default();
        assert!(verify(b"hook-secret-value", body.as_bytes(), signature));
        assert_eq!(
            signature,
            format!(
                "sha256={}",
                independent_hmac(b"hook-secret-value", body.as_bytes())
            )
        );
        // The signed body repeats the delivery id and timestamp, so neither header can be
        // swapped without breaking the signature.
        let parsed = parse(&request.body);
        assert_eq!(parsed["slipway"]["delivery_id"], id.as_str());
        assert_eq!(parsed["slipway"]["timestamp"], d.unix_timestamp());

        let debug = format!("{request:?} {secret:?} {d:?}");
        assert!(!debug.contains("hook-secret-value"), "{debug}");
    }

    #[test]
    fn new_deliveries_get_fresh_ids() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let a = Delivery::new(HookEvent::BuildQueued, now);
        let b = Delivery::new(HookEvent::BuildQueued, now);
        assert_ne!(a.id, b.id);
        assert_eq!(a.unix_timestamp(), 0);
    }
}
