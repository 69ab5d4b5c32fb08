//! Slipway's configuration file, written by the tests as TOML. Building it from structures
//! (rather than by formatting strings) gets TOML's quoting right for values such as the tag
//! template `{\1},latest`.

use serde::Serialize;

/// The whole file. `public_url` is filled in by [`crate::Slipway`] when left `None`, because only
/// it knows the port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryConfig>,
    pub repositories: Vec<RepositoryConfig>,
}

impl Config {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serializes as TOML")
    }
}

/// `[[registries]]`: credentials for one registry host. Exactly one of the password keys is
/// normally set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistryConfig {
    pub host: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `[[repositories]]`: one repository, its webhook and where its image goes. Git credentials
/// are either a password (`git_password_env`) or an SSH deploy key (`git_ssh_*`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepositoryConfig {
    pub name: String,
    pub provider: String,
    pub git_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_password_env: Option<String>,
    /// The private key file of an SSH deploy key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_ssh_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_ssh_passphrase_env: Option<String>,
    /// The only SSH host key accepted, `SHA256:<base64>` as `ssh-keygen -lf` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_ssh_host_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
    pub image: String,
    pub rules: Vec<Rule>,
}

/// `[[repositories.rules]]`: which refs build, into which tags, from which Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub source_type: String,
    pub source: String,
    pub tags: String,
    pub dockerfile: String,
    pub context: String,
}

impl Rule {
    /// A rule for the branch (or `/regex/`) `source`, with the default Dockerfile and context.
    pub fn branch(source: &str, tags: &str) -> Self {
        Self::new("branch", source, tags)
    }

    /// A rule for the tag (or `/regex/`) `source`, with the default Dockerfile and context.
    pub fn tag(source: &str, tags: &str) -> Self {
        Self::new("tag", source, tags)
    }

    pub fn dockerfile(mut self, dockerfile: &str) -> Self {
        dockerfile.clone_into(&mut self.dockerfile);
        self
    }

    pub fn context(mut self, context: &str) -> Self {
        context.clone_into(&mut self.context);
        self
    }

    fn new(source_type: &str, source: &str, tags: &str) -> Self {
        Self {
            source_type: source_type.to_owned(),
            source: source.to_owned(),
            tags: tags.to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_documented_shape_and_round_trips_backslashes() {
        let config = Config {
            public_url: None,
            registries: vec![RegistryConfig {
                host: "127.0.0.1:5001".to_owned(),
                username: "ci".to_owned(),
                password_env: Some("REGISTRY_PASSWORD".to_owned()),
                ..RegistryConfig::default()
            }],
            repositories: vec![RepositoryConfig {
                name: "acme/web".to_owned(),
                provider: "github".to_owned(),
                git_url: "http://127.0.0.1:9000/acme/web.git".to_owned(),
                git_username: Some("bot".to_owned()),
                git_password_env: Some("ACME_GIT_TOKEN".to_owned()),
                webhook_secret_env: Some("ACME_WEB_SECRET".to_owned()),
                image: "127.0.0.1:5001/acme/web".to_owned(),
                rules: vec![Rule::tag("/^v([0-9.]+)$/", "{\\1},latest").context("")],
                ..RepositoryConfig::default()
            }],
        };
        let text = config.to_toml();
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(
            parsed["registries"][0]["password_env"].as_str(),
            Some("REGISTRY_PASSWORD")
        );
        assert!(parsed["registries"][0].get("password").is_none());
        let rule = &parsed["repositories"][0]["rules"][0];
        assert_eq!(rule["source"].as_str(), Some("/^v([0-9.]+)$/"));
        assert_eq!(rule["tags"].as_str(), Some("{\\1},latest"));
        assert_eq!(rule["context"].as_str(), Some(""));
        assert_eq!(rule["dockerfile"].as_str(), Some("Dockerfile"));
        assert!(parsed.get("public_url").is_none());
        assert!(
            parsed["repositories"][0].get("git_ssh_key_file").is_none(),
            "unset SSH keys are left out"
        );
    }

    #[test]
    fn writes_the_ssh_deploy_key_settings() {
        let config = Config {
            repositories: vec![RepositoryConfig {
                name: "acme/web".to_owned(),
                provider: "github".to_owned(),
                git_url: "ssh://127.0.0.1:2222/srv/git/acme/web.git".to_owned(),
                git_username: Some("deploy".to_owned()),
                git_ssh_key_file: Some("/keys/deploy_ed25519".to_owned()),
                git_ssh_passphrase_env: Some("DEPLOY_KEY_PASSPHRASE".to_owned()),
                git_ssh_host_key: Some("SHA256:abc+/def".to_owned()),
                image: "127.0.0.1:5001/acme/web".to_owned(),
                rules: vec![Rule::branch("main", "latest")],
                ..RepositoryConfig::default()
            }],
            ..Config::default()
        };
        let parsed: toml::Table = config.to_toml().parse().expect("valid TOML");
        let repository = &parsed["repositories"][0];
        assert_eq!(
            repository["git_ssh_key_file"].as_str(),
            Some("/keys/deploy_ed25519")
        );
        assert_eq!(
            repository["git_ssh_passphrase_env"].as_str(),
            Some("DEPLOY_KEY_PASSPHRASE")
        );
        assert_eq!(
            repository["git_ssh_host_key"].as_str(),
            Some("SHA256:abc+/def")
        );
        assert!(repository.get("git_password_env").is_none());
    }
}
