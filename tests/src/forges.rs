//! Webhook deliveries as Bitbucket Cloud, Bitbucket Data Center, GitLab, Gitea and Forgejo send
//! them. Each payload starts from the realistic capture the forge crate's own tests use
//! (`crates/slipway-forge/tests/fixtures/<forge>/push.json`) with the ref, the commit ids and
//! the repository replaced by the test's own; the headers come from
//! `slipway_forge::sign::signed_headers`, and every signature is checked against the harness's
//! own HMAC, computed as each forge documents it, before it is sent.

use serde_json::{Value, json};
use slipway_core::Provider;
use slipway_forge::sign::{ExampleEvent, signed_headers};

use crate::git_server::CommitInfo;
use crate::payload::{ZERO_ID, hmac_sha256_hex};

const BITBUCKET_PUSH: &str =
    include_str!("../../crates/slipway-forge/tests/fixtures/bitbucket/push.json");
const BITBUCKET_SERVER_PUSH: &str =
    include_str!("../../crates/slipway-forge/tests/fixtures/bitbucket_server/push.json");
/// What Bitbucket Data Center sends for "Test connection" (`diagnostics:ping`).
pub const BITBUCKET_SERVER_PING: &str =
    include_str!("../../crates/slipway-forge/tests/fixtures/bitbucket_server/ping.json");
const GITLAB_PUSH: &str =
    include_str!("../../crates/slipway-forge/tests/fixtures/gitlab/push.json");
const GITEA_PUSH: &str = include_str!("../../crates/slipway-forge/tests/fixtures/gitea/push.json");

/// A forge other than GitHub (whose deliveries are in [`crate::payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// Bitbucket Cloud.
    Bitbucket,
    /// Bitbucket Data Center (formerly Server).
    BitbucketServer,
    Gitlab,
    Gitea,
    /// Forgejo: Gitea's payloads, with its own `X-Forgejo-*` headers; configured with
    /// `provider = "forgejo"`.
    Forgejo,
}

/// One ref a push moved: from `before` ([`ZERO_ID`] when the push created it) to `after`,
/// whose commit is `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub head: CommitInfo,
}

impl Forge {
    /// The configuration's `provider` value.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucket-server",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
        }
    }

    /// The provider Slipway records for this forge's deliveries (Forgejo is Gitea's).
    pub fn provider(self) -> Provider {
        match self {
            Self::Bitbucket => Provider::Bitbucket,
            Self::BitbucketServer => Provider::BitbucketServer,
            Self::Gitlab => Provider::Gitlab,
            Self::Gitea | Self::Forgejo => Provider::Gitea,
        }
    }

    /// The push payload this forge sends for `updates` to `repository` (`owner/name`). Only
    /// Bitbucket Cloud batches several refs into one delivery; the others send one per ref.
    pub fn push_payload(self, repository: &str, updates: &[RefUpdate]) -> String {
        if self == Self::Bitbucket {
            return bitbucket_push_payload(repository, updates);
        }
        let [update] = updates else {
            panic!("{self:?} sends one delivery per ref, not {}", updates.len());
        };
        match self {
            Self::BitbucketServer => bitbucket_server_push_payload(repository, update),
            Self::Gitlab => gitlab_push_payload(repository, update),
            Self::Gitea | Self::Forgejo => gitea_push_payload(repository, update),
            Self::Bitbucket => unreachable!("handled above"),
        }
    }

    /// The headers this forge sends with `body`, signed by `slipway_forge::sign` and checked
    /// by [`assert_signed_as_documented`].
    pub fn signed_headers(
        self,
        event: ExampleEvent,
        delivery_id: &str,
        secret: &str,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let headers: Vec<(String, String)> =
            signed_headers(self.provider(), event, delivery_id, secret, body)
                .into_iter()
                .map(|(name, value)| {
                    let name = match (self, name.strip_prefix("x-gitea-")) {
                        // Forgejo names its headers after itself. (It sends Gitea's too, for
                        // compatibility; leaving them out shows that Slipway reads Forgejo's.)
                        (Self::Forgejo, Some(rest)) => format!("x-forgejo-{rest}"),
                        _ => name.to_owned(),
                    };
                    (name, value)
                })
                .collect();
        assert_signed_as_documented(self, event, &headers, delivery_id, secret, body);
        headers
    }
}

/// Fails the test unless `headers` carry the event, the delivery id and the signature (or
/// token) as `forge` documents them, with the signature computed here rather than by
/// Slipway's code:
///
/// - Bitbucket Cloud and Data Center: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`;
///   Cloud names the delivery in `X-Request-UUID` (and the hook in `X-Hook-UUID`), Data Center
///   in `X-Request-Id`.
/// - GitLab: the secret token itself in `X-Gitlab-Token`, the delivery in `Idempotency-Key`.
/// - Gitea: the bare hex HMAC-SHA256 in `X-Gitea-Signature`; Forgejo the same in
///   `X-Forgejo-Signature`.
pub fn assert_signed_as_documented(
    forge: Forge,
    event: ExampleEvent,
    headers: &[(String, String)],
    delivery_id: &str,
    secret: &str,
    body: &[u8],
) {
    let hmac = hmac_sha256_hex(secret, body);
    let push = event != ExampleEvent::Ping;
    let expected: Vec<(&str, String)> = match forge {
        Forge::Bitbucket => vec![
            ("x-event-key", "repo:push".to_owned()),
            ("x-request-uuid", delivery_id.to_owned()),
            ("x-hub-signature", format!("sha256={hmac}")),
        ],
        Forge::BitbucketServer => vec![
            (
                "x-event-key",
                if push {
                    "repo:refs_changed"
                } else {
                    "diagnostics:ping"
                }
                .to_owned(),
            ),
            ("x-request-id", delivery_id.to_owned()),
            ("x-hub-signature", format!("sha256={hmac}")),
        ],
        Forge::Gitlab => vec![
            ("x-gitlab-event", "Push Hook".to_owned()),
            ("idempotency-key", delivery_id.to_owned()),
            ("x-gitlab-token", secret.to_owned()),
        ],
        Forge::Gitea => vec![
            ("x-gitea-event", "push".to_owned()),
            ("x-gitea-delivery", delivery_id.to_owned()),
            ("x-gitea-signature", hmac),
        ],
        Forge::Forgejo => vec![
            ("x-forgejo-event", "push".to_owned()),
            ("x-forgejo-delivery", delivery_id.to_owned()),
            ("x-forgejo-signature", hmac),
        ],
    };
    for (name, value) in expected {
        let found: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            found,
            [value.as_str()],
            "{forge:?} sends {name}: {value} once; the headers were {headers:#?}"
        );
    }
    if forge == Forge::Bitbucket {
        assert!(
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("x-hook-uuid") && !v.is_empty()),
            "Bitbucket Cloud names its hook in X-Hook-UUID: {headers:#?}"
        );
    }
}

/// `refs/heads/main` → `("branch", "main")`, `refs/tags/v1` → `("tag", "v1")`.
fn kind_and_name(git_ref: &str) -> (&'static str, &str) {
    if let Some(name) = git_ref.strip_prefix("refs/heads/") {
        ("branch", name)
    } else if let Some(name) = git_ref.strip_prefix("refs/tags/") {
        ("tag", name)
    } else {
        panic!("{git_ref} is neither a branch nor a tag")
    }
}

/// A fixture's text with every occurrence of each `(from, to)` replaced, parsed as JSON.
fn substituted(text: &str, replacements: &[(&str, &str)]) -> Value {
    let text = replacements
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
    serde_json::from_str(&text).expect("the fixture is JSON")
}

/// A string field of a fixture, which the fixture is known to have.
fn fixture_str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("the fixture has no string {what}"))
}

/// `owner/name` split, for the payloads that name both.
fn owner_and_name(repository: &str) -> (&str, &str) {
    repository
        .split_once('/')
        .unwrap_or_else(|| panic!("{repository} is not owner/name"))
}

/// The commit message as git stores it, ending with a newline, as the forges send it.
fn raw_message(commit: &CommitInfo) -> String {
    format!("{}\n", commit.message)
}

/// Bitbucket Cloud's `repo:push`: one entry of `push.changes[]` per ref, each with the ref's
/// `new` and `old` sides (`old: null` for a new ref) and the commits it gained.
pub fn bitbucket_push_payload(repository: &str, updates: &[RefUpdate]) -> String {
    let (_, name) = owner_and_name(repository);
    let mut payload = substituted(
        BITBUCKET_PUSH,
        &[
            ("acme/slipway-demo", repository),
            ("\"slipway-demo\"", &format!("\"{name}\"")),
        ],
    );
    let template = payload["push"]["changes"][0].take();
    let changes: Vec<Value> = updates
        .iter()
        .map(|update| bitbucket_change(&template, update))
        .collect();
    payload["push"]["changes"] = Value::Array(changes);
    payload.to_string()
}

fn bitbucket_change(template: &Value, update: &RefUpdate) -> Value {
    let (kind, name) = kind_and_name(&update.git_ref);
    let old_hash = fixture_str(&template["old"]["target"]["hash"], "old hash");
    let new_hash = fixture_str(&template["new"]["target"]["hash"], "new hash");
    let old_name = fixture_str(&template["old"]["name"], "old name");
    let mut change = substituted(
        &template.to_string(),
        &[
            (old_hash, &update.before),
            (new_hash, &update.after),
            (&format!("/{old_name}\""), &format!("/{name}\"")),
        ],
    );
    let message = raw_message(&update.head);
    for side in ["old", "new"] {
        change[side]["name"] = json!(name);
        change[side]["type"] = json!(kind);
    }
    let target = &mut change["new"]["target"];
    target["message"] = json!(message);
    target["summary"]["raw"] = json!(message);
    target["summary"]["html"] = json!(format!(
        "<p>{}</p>",
        update.head.message.lines().next().unwrap_or_default()
    ));
    target["date"] = json!(update.head.timestamp);
    // The commits the ref gained: here only its head.
    let head = target.clone();
    change["commits"] = json!([head]);
    if update.before == ZERO_ID {
        change["old"] = Value::Null;
        change["created"] = json!(true);
        if let Some(links) = change["links"].as_object_mut() {
            links.remove("diff");
            links.remove("html");
        }
    }
    change
}

/// Bitbucket Data Center's `repo:refs_changed`: `changes[]` naming the full ref with
/// `fromHash`/`toHash`, and the head commit in `toCommit`.
pub fn bitbucket_server_push_payload(repository: &str, update: &RefUpdate) -> String {
    let template: Value = serde_json::from_str(BITBUCKET_SERVER_PUSH).expect("fixture JSON");
    let change = &template["changes"][0];
    let from = fixture_str(&change["fromHash"], "fromHash");
    let to = fixture_str(&change["toHash"], "toHash");
    let (owner, name) = owner_and_name(repository);
    let mut payload = substituted(
        BITBUCKET_SERVER_PUSH,
        &[
            (from, &update.before),
            (to, &update.after),
            (&from[..11], &update.before[..11]),
            (&to[..11], &update.after[..11]),
            ("slipway-demo", name),
            ("PLAT", &owner.to_uppercase()),
            ("/plat/", &format!("/{owner}/")),
        ],
    );
    let (kind, short) = kind_and_name(&update.git_ref);
    payload["changes"][0]["ref"] = json!({
        "id": update.git_ref,
        "displayId": short,
        "type": kind.to_uppercase(),
    });
    payload["changes"][0]["refId"] = json!(update.git_ref);
    payload["changes"][0]["type"] = json!(if update.before == ZERO_ID {
        "ADD"
    } else {
        "UPDATE"
    });
    let committed = unix_millis(&update.head.timestamp);
    for commit in ["/commits/0", "/toCommit"] {
        let commit = payload
            .pointer_mut(commit)
            .unwrap_or_else(|| panic!("the fixture has {commit}"));
        commit["message"] = json!(update.head.message);
        commit["authorTimestamp"] = json!(committed);
        commit["committerTimestamp"] = json!(committed);
    }
    payload.to_string()
}

/// GitLab's `Push Hook`: `before`/`after`/`checkout_sha` and the commits pushed.
pub fn gitlab_push_payload(repository: &str, update: &RefUpdate) -> String {
    let (owner, name) = owner_and_name(repository);
    let mut payload = substituted(
        GITLAB_PUSH,
        &[
            ("platform/slipway-demo", repository),
            ("\"slipway-demo\"", &format!("\"{name}\"")),
            ("\"platform\"", &format!("\"{owner}\"")),
        ],
    );
    let web_url = fixture_str(&payload["project"]["web_url"], "web_url").to_owned();
    let head = &update.head;
    let message = raw_message(head);
    let title = head.message.lines().next().unwrap_or_default();
    payload["ref"] = json!(update.git_ref);
    payload["before"] = json!(update.before);
    payload["after"] = json!(update.after);
    payload["checkout_sha"] = json!(head.id);
    payload["commits"] = json!([{
        "id": head.id,
        "message": message,
        "title": title,
        "timestamp": head.timestamp,
        "url": format!("{web_url}/-/commit/{}", head.id),
        "author": { "name": head.author_name, "email": head.author_email },
        "added": [],
        "modified": [],
        "removed": []
    }]);
    payload["total_commits_count"] = json!(1);
    payload.to_string()
}

/// Gitea's (and Forgejo's) `push`: GitHub-like, with `head_commit` and `commits[]`.
pub fn gitea_push_payload(repository: &str, update: &RefUpdate) -> String {
    let (owner, name) = owner_and_name(repository);
    let mut payload = substituted(
        GITEA_PUSH,
        &[
            ("platform/slipway-demo", repository),
            ("\"slipway-demo\"", &format!("\"{name}\"")),
            ("\"platform\"", &format!("\"{owner}\"")),
        ],
    );
    let html_url = fixture_str(&payload["repository"]["html_url"], "html_url").to_owned();
    let head = &update.head;
    let mut commit = payload["head_commit"].take();
    commit["id"] = json!(head.id);
    commit["message"] = json!(raw_message(head));
    commit["url"] = json!(format!("{html_url}/commit/{}", head.id));
    commit["timestamp"] = json!(head.timestamp);
    for person in ["author", "committer"] {
        commit[person]["name"] = json!(head.author_name);
        commit[person]["email"] = json!(head.author_email);
    }
    for list in ["added", "removed", "modified"] {
        commit[list] = json!([]);
    }
    payload["ref"] = json!(update.git_ref);
    payload["before"] = json!(update.before);
    payload["after"] = json!(update.after);
    payload["compare_url"] = json!(format!(
        "{html_url}/compare/{}...{}",
        update.before, update.after
    ));
    payload["commits"] = json!([commit.clone()]);
    payload["head_commit"] = commit;
    payload["total_commits"] = json!(1);
    payload.to_string()
}

/// An ISO 8601 time with offset (as `git show --format=%cI` prints it) in Unix milliseconds,
/// as Bitbucket Data Center writes commit times.
fn unix_millis(timestamp: &str) -> i64 {
    let time =
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{timestamp} is not an RFC 3339 time: {e}"));
    time.unix_timestamp() * 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    use slipway_core::Secret;
    use slipway_forge::{VerifyPolicy, WebhookEvent, forge_for};

    const SECRET: &str = "It's a Secret to Everybody";

    fn commit(id: &str) -> CommitInfo {
        CommitInfo {
            id: id.to_owned(),
            tree_id: "1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5".to_owned(),
            message: "Add feature [x]\n\nLonger text".to_owned(),
            timestamp: "2026-11-23T10:00:00+01:00".to_owned(),
            author_name: "t".to_owned(),
            author_email: "t@example.com".to_owned(),
        }
    }

    fn update(git_ref: &str, before: &str, after: &str) -> RefUpdate {
        RefUpdate {
            git_ref: git_ref.to_owned(),
            before: before.to_owned(),
            after: after.to_owned(),
            head: commit(after),
        }
    }

    fn header_map(headers: &[(String, String)]) -> HeaderMap {
        headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::try_from(n.as_str()).expect("header name"),
                    HeaderValue::try_from(v.as_str()).expect("header value"),
                )
            })
            .collect()
    }

    /// Every payload and its headers are what Slipway's forge parsers read as the push that
    /// was meant: the ref, both commit ids and the head's message.
    #[test]
    fn every_forge_payload_is_read_back_as_the_push_it_describes() {
        let before = "1111111111111111111111111111111111111111";
        let after = "2222222222222222222222222222222222222222";
        for forge in [
            Forge::Bitbucket,
            Forge::BitbucketServer,
            Forge::Gitlab,
            Forge::Gitea,
            Forge::Forgejo,
        ] {
            for before in [before, ZERO_ID] {
                let body = forge.push_payload(
                    "acme/web",
                    &[update("refs/heads/release/1.x", before, after)],
                );
                let headers = header_map(&forge.signed_headers(
                    ExampleEvent::BranchPush,
                    "d-1",
                    SECRET,
                    body.as_bytes(),
                ));
                let parser = forge_for(forge.provider());
                assert!(
                    parser
                        .verify(
                            &Secret::new(SECRET),
                            VerifyPolicy::default(),
                            &headers,
                            body.as_bytes()
                        )
                        .is_ok(),
                    "{forge:?}"
                );
                let Ok(WebhookEvent::Push(events)) = parser.parse(&headers, body.as_bytes()) else {
                    panic!("{forge:?} is not read as a push: {body}");
                };
                assert_eq!(events.len(), 1, "{forge:?}: {events:#?}");
                let event = &events[0];
                assert_eq!(event.git_ref.full(), "refs/heads/release/1.x", "{forge:?}");
                assert_eq!(
                    event.after.as_ref().map(|c| c.as_str().to_owned()),
                    Some(after.to_owned()),
                    "{forge:?}"
                );
                let expected_before = (before != ZERO_ID).then(|| before.to_owned());
                assert_eq!(
                    event.before.as_ref().map(|c| c.as_str().to_owned()),
                    expected_before,
                    "{forge:?} with before {before}"
                );
                assert!(
                    event
                        .head_message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("Add feature [x]")),
                    "{forge:?}: {event:#?}"
                );
                assert!(!body.contains("slipway-demo"), "{forge:?}: {body}");
            }
        }
    }

    #[test]
    fn bitbucket_batches_every_ref_into_one_delivery() {
        let body = Forge::Bitbucket.push_payload(
            "acme/web",
            &[
                update(
                    "refs/heads/main",
                    "1111111111111111111111111111111111111111",
                    "2222222222222222222222222222222222222222",
                ),
                update(
                    "refs/heads/develop",
                    ZERO_ID,
                    "3333333333333333333333333333333333333333",
                ),
            ],
        );
        let json: Value = serde_json::from_str(&body).expect("JSON");
        let changes = json["push"]["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["new"]["name"], "main");
        assert_eq!(
            changes[0]["old"]["target"]["hash"],
            "1111111111111111111111111111111111111111"
        );
        assert_eq!(changes[1]["new"]["name"], "develop");
        assert_eq!(changes[1]["new"]["type"], "branch");
        assert_eq!(changes[1]["old"], Value::Null);
        assert_eq!(changes[1]["created"], true);
        assert_eq!(
            changes[1]["commits"][0]["hash"],
            "3333333333333333333333333333333333333333"
        );
    }

    #[test]
    fn forgejo_sends_its_own_headers() {
        let headers = Forge::Forgejo.signed_headers(ExampleEvent::BranchPush, "d-1", SECRET, b"{}");
        assert!(
            headers.iter().all(|(n, _)| !n.starts_with("x-gitea-")),
            "{headers:#?}"
        );
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-forgejo-signature" && *v == hmac_sha256_hex(SECRET, b"{}")),
            "{headers:#?}"
        );
    }
}
