//! Repositories: their names and the forge that hosts them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `owner/name`, the key of a repository and the tail of its webhook URL (`/hooks/owner/name`).
/// Both parts are restricted to characters that are safe in a URL path and a file name, so the
/// name can be used for the mirror directory without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryName {
    owner: String,
    name: String,
}

impl RepositoryName {
    pub fn new(owner: &str, name: &str) -> Result<Self, String> {
        for (what, part) in [("owner", owner), ("name", name)] {
            let valid_chars = part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if part.is_empty() || part.len() > 100 || !valid_chars || part.starts_with('.') {
                return Err(format!(
                    "repository {what} {part:?} must be 1 to 100 characters of letters, digits, '-', '_' or '.', not starting with '.'"
                ));
            }
        }
        Ok(Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl FromStr for RepositoryName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((owner, name)) if !name.contains('/') => Self::new(owner, name),
            _ => Err(format!(
                "repository name {s:?} must have the form owner/name"
            )),
        }
    }
}

impl TryFrom<String> for RepositoryName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RepositoryName> for String {
    fn from(value: RepositoryName) -> Self {
        value.to_string()
    }
}

/// The forge a repository lives on; it decides how webhooks are verified and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Provider {
    Github,
    /// Bitbucket Cloud.
    Bitbucket,
    /// Bitbucket Data Center (formerly Server).
    BitbucketServer,
    Gitlab,
    /// Gitea and Forgejo, which share a webhook format.
    Gitea,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Github,
        Provider::Bitbucket,
        Provider::BitbucketServer,
        Provider::Gitlab,
        Provider::Gitea,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Bitbucket => "bitbucket",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Gitlab => "gitlab",
            Provider::Gitea => "gitea",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            // Forgejo is a Gitea fork with the same webhook format.
            "forgejo" => Ok(Provider::Gitea),
            // Atlassian renamed Server to Data Center; accept both names.
            "bitbucket-datacenter" | "bitbucket-data-center" => Ok(Provider::BitbucketServer),
            other => Provider::ALL
                .into_iter()
                .find(|p| p.as_str() == other)
                .ok_or_else(|| {
                    format!(
                        "unknown provider {other:?} (supported: github, bitbucket, bitbucket-server, gitlab, gitea, forgejo)"
                    )
                }),
        }
    }
}

impl TryFrom<String> for Provider {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Provider> for String {
    fn from(value: Provider) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_and_name() {
        let name: RepositoryName = "acme/web".parse().expect("valid");
        assert_eq!((name.owner(), name.name()), ("acme", "web"));
        assert_eq!(name.to_string(), "acme/web");
    }

    #[test]
    fn providers_round_trip_and_accept_aliases() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        }
        assert_eq!("forgejo".parse::<Provider>(), Ok(Provider::Gitea));
        assert_eq!(
            "bitbucket-datacenter".parse::<Provider>(),
            Ok(Provider::BitbucketServer)
        );
        assert!(
            "svn"
                .parse::<Provider>()
                .expect_err("unknown")
                .contains("supported")
        );
    }

    #[test]
    fn rejects_names_that_could_escape_a_path() {
        for bad in [
            "acme",
            "acme/web/x",
            "../web",
            "acme/..",
            "acme/",
            "/web",
            "ac me/web",
            "acme/.git",
        ] {
            assert!(
                bad.parse::<RepositoryName>().is_err(),
                "{bad} must be rejected"
            );
        }
    }
}
