//! GitHub webhook deliveries as GitHub sends them: the push payload and its signature.

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::git_server::CommitInfo;

/// The all-zero object id GitHub uses for "no commit" in `before` (a new ref) and `after` (a
/// deleted ref).
pub const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// The GitHub user that pushes in every payload.
const PUSHER: &str = "octocat";

/// A complete GitHub `push` payload for `repository` (`owner/name`).
///
/// `after` is what GitHub reports as the new value of the ref: a commit for a branch, the tag
/// object for an annotated tag, [`ZERO_ID`] for a deletion. `head_commit` is the commit the
/// push ends at (already peeled for a tag), or `None` for a deletion, which GitHub reports with
/// `deleted: true`, no commits and `head_commit: null`.
pub fn github_push_payload(
    repository: &str,
    git_ref: &str,
    before: &str,
    after: &str,
    head_commit: Option<&CommitInfo>,
) -> String {
    let html_url = format!("https://github.com/{repository}");
    let created = before == ZERO_ID;
    let deleted = after == ZERO_ID;
    let short = |id: &str| id.chars().take(12).collect::<String>();
    let compare = if created {
        format!(
            "{html_url}/compare/{}",
            git_ref.rsplit('/').next().unwrap_or(git_ref)
        )
    } else {
        format!("{html_url}/compare/{}...{}", short(before), short(after))
    };
    let commits: Vec<Value> = head_commit
        .map(|c| commit_json(&html_url, c))
        .into_iter()
        .collect();
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": created,
        "deleted": deleted,
        "forced": false,
        "base_ref": if git_ref.starts_with("refs/tags/") && !deleted { json!("refs/heads/main") } else { Value::Null },
        "compare": compare,
        "commits": commits,
        "head_commit": head_commit.map(|c| commit_json(&html_url, c)),
        "repository": repository_json(repository),
        "pusher": { "name": PUSHER, "email": "octocat@users.noreply.github.com" },
        "organization": organization_json(repository),
        "sender": sender_json()
    })
    .to_string()
}

/// The `repository` object: a private repository of an organization.
fn repository_json(repository: &str) -> Value {
    let html_url = format!("https://github.com/{repository}");
    let (owner, name) = repository.split_once('/').unwrap_or(("e2e", repository));
    let mut object = json!({
        "id": 700_000_001,
        "node_id": "R_kgDOKbcdEQ",
        "name": name,
        "full_name": repository,
        "private": true,
        "owner": {
            "name": owner,
            "email": null,
            "login": owner,
            "id": 900_001,
            "node_id": "O_kgDOAA27oQ",
            "avatar_url": "https://avatars.githubusercontent.com/u/900001?v=4",
            "gravatar_id": "",
            "url": format!("https://api.github.com/users/{owner}"),
            "html_url": format!("https://github.com/{owner}"),
            "type": "Organization",
            "user_view_type": "public",
            "site_admin": false
        },
        "html_url": html_url,
        "description": "End-to-end test repository",
        "fork": false,
        "url": html_url,
        "created_at": 1_700_000_000,
        "updated_at": "2026-11-23T10:00:00Z",
        "pushed_at": 1_763_892_000,
        "git_url": format!("git://github.com/{repository}.git"),
        "ssh_url": format!("git@github.com:{repository}.git"),
        "clone_url": format!("https://github.com/{repository}.git"),
        "svn_url": html_url,
        "homepage": null
    });
    // The rest is split off only because one json! literal this long exceeds the macro's
    // recursion limit.
    let settings = json!({
        "size": 12,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": "Dockerfile",
        "has_issues": true,
        "has_projects": false,
        "has_downloads": true,
        "has_wiki": false,
        "has_pages": false,
        "forks_count": 0,
        "archived": false,
        "disabled": false,
        "open_issues_count": 0,
        "license": null,
        "allow_forking": false,
        "is_template": false,
        "topics": [],
        "visibility": "private",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": "main",
        "stargazers": 0,
        "master_branch": "main",
        "organization": owner
    });
    if let (Some(object), Value::Object(settings)) = (object.as_object_mut(), settings) {
        object.extend(settings);
    }
    object
}

fn organization_json(repository: &str) -> Value {
    let owner = repository
        .split_once('/')
        .map_or(repository, |(owner, _)| owner);
    json!({
        "login": owner,
        "id": 900_001,
        "node_id": "O_kgDOAA27oQ",
        "url": format!("https://api.github.com/orgs/{owner}"),
        "description": null
    })
}

fn sender_json() -> Value {
    json!({
        "login": PUSHER,
        "id": 583_231,
        "node_id": "MDQ6VXNlcjU4MzIzMQ==",
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
        "gravatar_id": "",
        "url": "https://api.github.com/users/octocat",
        "html_url": "https://github.com/octocat",
        "type": "User",
        "user_view_type": "public",
        "site_admin": false
    })
}

fn commit_json(html_url: &str, commit: &CommitInfo) -> Value {
    let person = json!({
        "name": commit.author_name,
        "email": commit.author_email,
        "username": PUSHER
    });
    json!({
        "id": commit.id,
        "tree_id": commit.tree_id,
        "distinct": true,
        "message": commit.message,
        "timestamp": commit.timestamp,
        "url": format!("{html_url}/commit/{}", commit.id),
        "author": person,
        "committer": person,
        "added": [],
        "removed": [],
        "modified": []
    })
}

/// `sha256=<hex>`, the value of `X-Hub-Signature-256` for `body` signed with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// The lower-case hex HMAC-SHA256 of `body` with `secret` as the key: what GitHub, Bitbucket
/// and Gitea sign deliveries with. Computed here, not by Slipway's code, so the tests can
/// check Slipway's own signing against it.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh delivery id in GitHub's format (a GUID).
pub fn new_delivery_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit() -> CommitInfo {
        CommitInfo {
            id: "9f2c3c0a1b1e4a7a8c6d5e4f3a2b1c0d9e8f7a6b".to_owned(),
            tree_id: "1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5".to_owned(),
            message: "Add feature\n\nLonger text".to_owned(),
            timestamp: "2026-11-23T10:00:00+01:00".to_owned(),
            author_name: "t".to_owned(),
            author_email: "t@example.com".to_owned(),
        }
    }

    /// GitHub's published example for validating webhook deliveries.
    #[test]
    fn signature_matches_githubs_documented_example() {
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc_4231_test_vector() {
        assert_eq!(
            hmac_sha256_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_branch_push_has_every_field_github_sends() {
        let head = commit();
        let before = "1111111111111111111111111111111111111111";
        let json: Value = serde_json::from_str(&github_push_payload(
            "acme/web",
            "refs/heads/main",
            before,
            &head.id,
            Some(&head),
        ))
        .expect("valid JSON");
        for field in [
            "ref",
            "before",
            "after",
            "created",
            "deleted",
            "forced",
            "base_ref",
            "compare",
            "commits",
            "head_commit",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["ref"], "refs/heads/main");
        assert_eq!(json["after"], head.id);
        assert_eq!(json["created"], false);
        assert_eq!(json["deleted"], false);
        assert_eq!(json["base_ref"], Value::Null);
        assert_eq!(
            json["compare"],
            "https://github.com/acme/web/compare/111111111111...9f2c3c0a1b1e"
        );
        assert_eq!(json["head_commit"]["id"], head.id);
        assert_eq!(json["head_commit"]["message"], "Add feature\n\nLonger text");
        assert_eq!(json["head_commit"]["committer"]["email"], "t@example.com");
        assert_eq!(json["commits"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["repository"]["full_name"], "acme/web");
        assert_eq!(json["repository"]["name"], "web");
        assert_eq!(json["pusher"]["name"], PUSHER);
        assert_eq!(json["sender"]["login"], PUSHER);
    }

    #[test]
    fn a_new_tag_reports_the_tag_object_and_its_commit() {
        let head = commit();
        let tag_object = "2222222222222222222222222222222222222222";
        let json: Value = serde_json::from_str(&github_push_payload(
            "acme/web",
            "refs/tags/v1.2.3",
            ZERO_ID,
            tag_object,
            Some(&head),
        ))
        .expect("valid JSON");
        assert_eq!(json["after"], tag_object);
        assert_eq!(json["head_commit"]["id"], head.id);
        assert_eq!(json["created"], true);
        assert_eq!(json["base_ref"], "refs/heads/main");
        assert_eq!(
            json["compare"],
            "https://github.com/acme/web/compare/v1.2.3"
        );
    }

    #[test]
    fn a_deletion_has_no_head_commit() {
        let before = "1111111111111111111111111111111111111111";
        let json: Value = serde_json::from_str(&github_push_payload(
            "acme/web",
            "refs/heads/gone",
            before,
            ZERO_ID,
            None,
        ))
        .expect("valid JSON");
        assert_eq!(json["after"], ZERO_ID);
        assert_eq!(json["deleted"], true);
        assert_eq!(json["head_commit"], Value::Null);
        assert_eq!(json["commits"], json!([]));
    }
}
