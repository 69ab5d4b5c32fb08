//! Slipway's configuration file, written by the tests as TOML. Building it from structures
//! (rather than by formatting strings) gets TOML's quoting right for values such as the tag
//! template `{\1},latest`.

use std::collections::BTreeMap;

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
    /// How long a build may run before it is stopped and fails, such as `"90s"` or `"45m"`
    /// (Slipway's default is 60 minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_timeout: Option<String>,
    /// A newer push to a ref stops that rule's running builds too, not only its queued ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub supersede_running_builds: bool,
    /// Post commit statuses to the forge's API at `status_api_url` with the token named by
    /// `status_token_env`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub report_status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_token_env: Option<String>,
    pub rules: Vec<Rule>,
}

/// `[[repositories.rules]]`: which refs build, into which tags, from which Dockerfile, and
/// how. Every optional key is left out of the file unless a test sets it, so Slipway's own
/// defaults apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The rule's name: its commit-status context is `slipway/<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source_type: String,
    pub source: String,
    pub tags: String,
    pub dockerfile: String,
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autobuild: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore_paths: Vec<String>,
    /// `None` keeps Slipway's default markers; `Some(vec![])` turns them off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_message: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sanitize_tags: Option<bool>,
    // Tables come last: TOML writes them after the rule's plain keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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

    /// Names the rule (its commit statuses' context is `slipway/<name>`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn dockerfile(mut self, dockerfile: &str) -> Self {
        dockerfile.clone_into(&mut self.dockerfile);
        self
    }

    pub fn context(mut self, context: &str) -> Self {
        context.clone_into(&mut self.context);
        self
    }

    pub fn autobuild(mut self, autobuild: bool) -> Self {
        self.autobuild = Some(autobuild);
        self
    }

    pub fn cache(mut self, cache: bool) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The multi-stage target to build.
    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// Adds a build argument; `value` may use the build variables (`${SOURCE_BRANCH}`).
    pub fn build_arg(mut self, name: &str, value: &str) -> Self {
        self.build_args.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Adds an image label; `value` may use the build variables.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Builds only when the push changed a file matching one of these globs.
    pub fn paths(mut self, globs: &[&str]) -> Self {
        self.paths = globs.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// Changed files matching these globs do not count for [`Rule::paths`].
    pub fn ignore_paths(mut self, globs: &[&str]) -> Self {
        self.ignore_paths = globs.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// Replaces Slipway's default skip markers.
    pub fn skip_message(mut self, markers: &[&str]) -> Self {
        self.skip_message = Some(markers.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    pub fn sanitize_tags(mut self, sanitize: bool) -> Self {
        self.sanitize_tags = Some(sanitize);
        self
    }

    fn new(source_type: &str, source: &str, tags: &str) -> Self {
        Self {
            name: None,
            source_type: source_type.to_owned(),
            source: source.to_owned(),
            tags: tags.to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            context: "/".to_owned(),
            autobuild: None,
            cache: None,
            target: None,
            paths: Vec::new(),
            ignore_paths: Vec::new(),
            skip_message: None,
            sanitize_tags: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
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

    #[test]
    fn writes_the_build_rule_options_and_leaves_unset_ones_out() {
        let rule = Rule::branch("main", "latest")
            .cache(false)
            .autobuild(false)
            .target("runtime")
            .build_arg("GREETING", "hello-${SOURCE_BRANCH}")
            .label("org.example.commit", "${SOURCE_COMMIT}")
            .paths(&["services/api", "lib/**/*.rs"])
            .ignore_paths(&["**/*.md"])
            .skip_message(&["[no build]"])
            .sanitize_tags(true);
        let config = Config {
            repositories: vec![RepositoryConfig {
                name: "acme/web".to_owned(),
                provider: "github".to_owned(),
                git_url: "http://127.0.0.1:9000/acme/web.git".to_owned(),
                image: "127.0.0.1:5001/acme/web".to_owned(),
                supersede_running_builds: true,
                rules: vec![rule, Rule::branch("dev", "dev")],
                ..RepositoryConfig::default()
            }],
            ..Config::default()
        };
        let parsed: toml::Table = config.to_toml().parse().expect("valid TOML");
        let repository = &parsed["repositories"][0];
        assert_eq!(repository["supersede_running_builds"].as_bool(), Some(true));
        let rule = &repository["rules"][0];
        assert_eq!(rule["cache"].as_bool(), Some(false));
        assert_eq!(rule["autobuild"].as_bool(), Some(false));
        assert_eq!(rule["target"].as_str(), Some("runtime"));
        assert_eq!(
            rule["build_args"]["GREETING"].as_str(),
            Some("hello-${SOURCE_BRANCH}")
        );
        assert_eq!(
            rule["labels"]["org.example.commit"].as_str(),
            Some("${SOURCE_COMMIT}")
        );
        let strings = |key: &str| -> Vec<&str> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key} is an array"))
                .iter()
                .map(|v| v.as_str().expect("a string"))
                .collect()
        };
        assert_eq!(strings("paths"), ["services/api", "lib/**/*.rs"]);
        assert_eq!(strings("ignore_paths"), ["**/*.md"]);
        assert_eq!(strings("skip_message"), ["[no build]"]);
        assert_eq!(rule["sanitize_tags"].as_bool(), Some(true));

        let plain = &repository["rules"][1];
        for key in [
            "cache",
            "autobuild",
            "target",
            "build_args",
            "labels",
            "paths",
            "ignore_paths",
            "skip_message",
            "sanitize_tags",
        ] {
            assert!(plain.get(key).is_none(), "an unset {key} is left out");
        }
        let single = Config {
            repositories: vec![RepositoryConfig {
                rules: vec![Rule::branch("main", "latest")],
                ..RepositoryConfig::default()
            }],
            ..Config::default()
        };
        let parsed: toml::Table = single.to_toml().parse().expect("valid TOML");
        assert!(
            parsed["repositories"][0]
                .get("supersede_running_builds")
                .is_none(),
            "the default (false) is left out"
        );
    }
}
