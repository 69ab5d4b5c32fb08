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
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Github,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
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
            "github" => Ok(Provider::Github),
            other => Err(format!("unknown provider {other:?} (supported: github)")),
        }
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
