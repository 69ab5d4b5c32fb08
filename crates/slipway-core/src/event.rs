//! What a forge tells us about a push, in one shape for every forge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A full commit id: 40 hex digits (SHA-1) or 64 (SHA-256), stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitId(String);

impl CommitId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as forges and the dashboard show it.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// Forges send an all-zero id for "no commit": the old side of a new ref, the new side of a
    /// deleted one.
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }
}

impl FromStr for CommitId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed = matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if well_formed {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{s:?} is not a full commit id (40 or 64 hex digits)"
            ))
        }
    }
}

impl TryFrom<String> for CommitId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<CommitId> for String {
    fn from(value: CommitId) -> Self {
        value.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A branch or tag, kept as its kind plus its short name (`main`, `v1.2.3`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitRef {
    pub kind: RefKind,
    pub name: String,
}

impl GitRef {
    /// Parses a full ref (`refs/heads/main`, `refs/tags/v1`). Other refs (pull-request heads,
    /// notes) are not builds' business and return `None`.
    pub fn parse(full: &str) -> Option<Self> {
        let (kind, name) = if let Some(name) = full.strip_prefix("refs/heads/") {
            (RefKind::Branch, name)
        } else if let Some(name) = full.strip_prefix("refs/tags/") {
            (RefKind::Tag, name)
        } else {
            return None;
        };
        valid_ref_name(name).then(|| Self {
            kind,
            name: name.to_owned(),
        })
    }

    pub fn full(&self) -> String {
        match self.kind {
            RefKind::Branch => format!("refs/heads/{}", self.name),
            RefKind::Tag => format!("refs/tags/{}", self.name),
        }
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

/// The subset of git's `check-ref-format` rules that matter here: a ref name becomes part of a
/// git refspec, a log line and (through `{sourceref}`) a Docker tag, so control characters,
/// spaces and the sequences git itself forbids are refused.
fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.split('/').any(|part| part.starts_with('.'))
        && name.chars().all(|c| {
            !c.is_control() && !matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        })
}

/// One ref update from a forge. `after == None` means the ref was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    pub git_ref: GitRef,
    /// The commit the ref pointed at before the push; `None` for a newly created ref.
    pub before: Option<CommitId>,
    /// The commit the ref points at now; `None` when the push deleted the ref.
    pub after: Option<CommitId>,
    /// The head commit's message, when the forge sent it.
    pub head_message: Option<String>,
    /// When the head commit was made (Unix milliseconds), when the forge sent it.
    pub head_timestamp: Option<i64>,
    /// Who pushed, as the forge names them.
    pub pusher: Option<String>,
    pub forced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_branches_and_tags() {
        assert_eq!(
            GitRef::parse("refs/heads/feature/x"),
            Some(GitRef {
                kind: RefKind::Branch,
                name: "feature/x".into()
            })
        );
        assert_eq!(
            GitRef::parse("refs/tags/v1.2.3").map(|r| r.full()),
            Some("refs/tags/v1.2.3".to_owned())
        );
        assert_eq!(GitRef::parse("refs/pull/1/head"), None);
        assert_eq!(GitRef::parse("refs/heads/"), None);
        assert_eq!(GitRef::parse("refs/heads/a..b"), None);
        assert_eq!(GitRef::parse("refs/heads/a b"), None);
    }

    #[test]
    fn commit_ids_are_full_and_lowercase() {
        let id: CommitId = "ABCDEF0123456789abcdef0123456789abcdef01"
            .parse()
            .expect("valid");
        assert_eq!(id.as_str(), "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(id.short(), "abcdef012345");
        assert!("abc".parse::<CommitId>().is_err());
        assert!(
            "0".repeat(64)
                .parse::<CommitId>()
                .expect("sha256 zero")
                .is_zero()
        );
    }
}
