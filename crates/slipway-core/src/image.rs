//! Image names: `registry-host[:port]/path`, the way Docker parses them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A repository in a registry, without a tag: `127.0.0.1:5000/acme/web`. The first component
/// is the registry host when it contains `.` or `:` or is `localhost`, as in Docker's own
/// reference grammar; otherwise the image lives on Docker Hub (`docker.io`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageName {
    registry: String,
    path: String,
}

impl ImageName {
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `name:tag`, as the engine wants it for tagging and pushing.
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{self}:{tag}")
    }
}

impl FromStr for ImageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('@') || s.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(format!(
                "image {s:?} must not carry a tag or digest: tags come from the build rules"
            ));
        }
        let (registry, path) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), s.to_owned()),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if path.is_empty() || !path.split('/').all(component_ok) {
            return Err(format!(
                "image {s:?}: the repository path must be lower-case letters, digits and '.', '_', '-', separated by '/'"
            ));
        }
        Ok(Self { registry, path })
    }
}

impl TryFrom<String> for ImageName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ImageName> for String {
    fn from(value: ImageName) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.registry == "docker.io" {
            f.write_str(&self.path)
        } else {
            write!(f, "{}/{}", self.registry, self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_registry_and_path() {
        let image: ImageName = "127.0.0.1:5000/acme/web".parse().expect("valid");
        assert_eq!(
            (image.registry(), image.path()),
            ("127.0.0.1:5000", "acme/web")
        );
        assert_eq!(image.with_tag("latest"), "127.0.0.1:5000/acme/web:latest");
        let hub: ImageName = "acme/web".parse().expect("valid");
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.to_string(), "acme/web");
    }

    #[test]
    fn refuses_tags_digests_and_upper_case() {
        for bad in [
            "acme/web:latest",
            "reg.io/acme/web@sha256:00",
            "reg.io/Acme/web",
            "reg.io/",
            "",
        ] {
            assert!(bad.parse::<ImageName>().is_err(), "{bad}");
        }
    }
}
