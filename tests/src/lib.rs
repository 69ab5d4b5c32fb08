//! The end-to-end harness: real components only. Tests start the real `slipway` binary and
//! point it at a real git server (`git http-backend` behind Basic authentication), the rig's
//! Docker Engine and registries, and optionally its PostgreSQL. Repositories can also be
//! fetched over SSH from a real `sshd` ([`SshGitServer`]) with a deploy key. Dashboard tests
//! drive the rig's headless Chromium through `chromedriver` ([`Browser`]).
//!
//! Every test makes its own names ([`unique_name`]), so tests can run in parallel against the
//! shared registries. A missing rig fails a test with instructions; it never skips it.

mod browser;
mod command;
mod config;
mod docker;
mod docker_proxy;
mod fake_forge;
mod forges;
mod git;
mod git_server;
mod payload;
mod pg_cluster;
mod postgres;
mod registry;
mod registry_server;
mod rig;
mod slipway;
mod ssh_server;
mod webhook_receiver;

pub use browser::{
    ARTIFACTS_ENV, Browser, CHROMEDRIVER_ENV, CHROMIUM_ENV, Cookie, DESKTOP_VIEWPORT, Element,
    WAIT_TIMEOUT, WebDriverError,
};
pub use config::{Config, RegistryConfig, RepositoryConfig, Rule};
pub use docker::Docker;
pub use docker_proxy::DockerProxy;
pub use fake_forge::{FakeAnswer, FakeForge, RecordedRequest};
pub use forges::{
    BITBUCKET_SERVER_PING, Forge, RefUpdate, assert_signed_as_documented, bitbucket_push_payload,
    bitbucket_server_push_payload, gitea_push_payload, gitlab_push_payload,
};
pub use git::{Git, git_output};
pub use git_server::{CommitInfo, GitHttpServer, RepoFile, RepoHandle, RequestRecord, TagIds};
pub use payload::{
    ZERO_ID, github_push_payload, github_signature, hmac_sha256_hex, new_delivery_id,
};
pub use pg_cluster::PostgresCluster;
pub use postgres::TestDatabase;
pub use registry::{Registry, manifest_digest};
pub use registry_server::RegistryServer;
pub use rig::Rig;
pub use slipway::{
    BUILD_TIMEOUT, HttpResponse, Slipway, SlipwayBuilder, SlipwayWorker, binary_path, build_digest,
};
pub use slipway_forge::sign::ExampleEvent;
pub use ssh_server::{SshGitServer, SshKeyPair};
pub use webhook_receiver::{ReceivedHook, WebhookReceiver};

use serde_json::Value;

/// The environment variables a [`Fixture`]'s configuration names for its secrets.
pub const GIT_PASSWORD_ENV: &str = "E2E_GIT_PASSWORD";
pub const WEBHOOK_SECRET_ENV: &str = "E2E_WEBHOOK_SECRET";
pub const REGISTRY_PASSWORD_ENV: &str = "E2E_REGISTRY_PASSWORD";

/// The label Slipway puts the built commit in.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// The user name Slipway clones with.
pub const GIT_USER: &str = "slipway-bot";

/// `<label>-<8 random hex digits>`: unique per test run, and valid both as a repository name
/// part and in a Docker image path.
pub fn unique_name(label: &str) -> String {
    assert!(
        label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "labels are lower-case letters, digits and '-': {label:?}"
    );
    format!(
        "{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// One test's world: the rig, a git server with one repository (`e2e/<label>-<random>`) that
/// needs credentials, and the secrets Slipway is configured with. The repository's name is
/// also its Slipway name and its path in the authenticated registry.
#[derive(Debug)]
pub struct Fixture {
    pub rig: Rig,
    pub git: GitHttpServer,
    pub repo: RepoHandle,
    pub webhook_secret: String,
}

impl Fixture {
    pub fn new(label: &str) -> Self {
        let rig = Rig::load();
        let git = GitHttpServer::start(GIT_USER, &format!("git-{}", uuid::Uuid::new_v4().simple()));
        let repo = git.create_repo(&format!("e2e/{}", unique_name(label)));
        let webhook_secret = format!("hook-{}", uuid::Uuid::new_v4().simple());
        Self {
            rig,
            git,
            repo,
            webhook_secret,
        }
    }

    /// `e2e/<label>-<random>`: the repository, its webhook path and its registry path.
    pub fn name(&self) -> &str {
        self.repo.name()
    }

    /// The image Slipway pushes to, in the authenticated registry.
    pub fn image(&self) -> String {
        format!("{}/{}", self.rig.auth_registry, self.name())
    }

    /// A configuration with the authenticated registry and this repository with `rules`; the
    /// secrets are named by [`GIT_PASSWORD_ENV`], [`WEBHOOK_SECRET_ENV`] and
    /// [`REGISTRY_PASSWORD_ENV`].
    pub fn config(&self, rules: Vec<Rule>) -> Config {
        Config {
            public_url: None,
            registries: vec![RegistryConfig {
                host: self.rig.auth_registry.clone(),
                username: self.rig.auth_registry_user.clone(),
                password_env: Some(REGISTRY_PASSWORD_ENV.to_owned()),
                ..RegistryConfig::default()
            }],
            repositories: vec![RepositoryConfig {
                name: self.name().to_owned(),
                provider: "github".to_owned(),
                git_url: self.repo.url().to_owned(),
                git_username: Some(GIT_USER.to_owned()),
                git_password_env: Some(GIT_PASSWORD_ENV.to_owned()),
                webhook_secret_env: Some(WEBHOOK_SECRET_ENV.to_owned()),
                image: self.image(),
                rules,
                ..RepositoryConfig::default()
            }],
        }
    }

    /// [`Fixture::config`] with the repository's webhooks coming from `forge`.
    pub fn forge_config(&self, forge: Forge, rules: Vec<Rule>) -> Config {
        let mut config = self.config(rules);
        config.repositories[0].provider = forge.config_name().to_owned();
        config
    }

    /// [`Fixture::config`], but this repository is fetched from `ssh` (which serves the same
    /// bare repository) as its user, with its deploy key and its host key pinned. Tests that
    /// need a wrong key change `git_ssh_key_file` or `git_ssh_host_key` in the result.
    pub fn ssh_config(&self, ssh: &SshGitServer, rules: Vec<Rule>) -> Config {
        let mut config = self.config(rules);
        let repository = &mut config.repositories[0];
        repository.git_url = ssh.url(&self.repo);
        repository.git_username = Some(ssh.user().to_owned());
        // Slipway takes either a password or a deploy key, not both.
        repository.git_password_env = None;
        repository.git_ssh_key_file = Some(ssh.deploy_key().private_key_str().to_owned());
        repository.git_ssh_host_key = Some(ssh.host_key_fingerprint().to_owned());
        config
    }

    /// Slipway with `config` and the right secrets in its environment; `.env(...)` on the
    /// result overrides any of them.
    pub fn slipway(&self, config: &Config) -> SlipwayBuilder {
        Slipway::builder(&config.to_toml())
            .env(GIT_PASSWORD_ENV, self.git.password())
            .env(WEBHOOK_SECRET_ENV, &self.webhook_secret)
            .env(REGISTRY_PASSWORD_ENV, &self.rig.auth_registry_password)
    }

    /// Slipway serving this repository with `rules`, on its default (SQLite) database.
    pub fn start_slipway(&self, rules: Vec<Rule>) -> Slipway {
        self.slipway(&self.config(rules)).start()
    }

    /// The push payload GitHub would send now for `git_ref`, which moved from `before` to
    /// whatever it points at in the repository (for an annotated tag, the tag object).
    pub fn push_payload(&self, git_ref: &str, before: &str) -> String {
        let after = self
            .repo
            .ref_target(git_ref)
            .unwrap_or_else(|| panic!("{git_ref} does not exist in {}", self.name()));
        let head = self.repo.commit_info(&after);
        github_push_payload(self.name(), git_ref, before, &after, Some(&head))
    }

    /// The payload GitHub sends when `git_ref`, which pointed at `before`, is deleted.
    pub fn deletion_payload(&self, git_ref: &str, before: &str) -> String {
        github_push_payload(self.name(), git_ref, before, ZERO_ID, None)
    }

    /// What a push payload says about `git_ref`, which moved from `before` to its current
    /// target in the repository.
    pub fn ref_update(&self, git_ref: &str, before: &str) -> RefUpdate {
        let after = self
            .repo
            .ref_target(git_ref)
            .unwrap_or_else(|| panic!("{git_ref} does not exist in {}", self.name()));
        RefUpdate {
            git_ref: git_ref.to_owned(),
            before: before.to_owned(),
            head: self.repo.commit_info(&after),
            after,
        }
    }

    /// Delivers `body` to this repository's webhook as `forge` sends `event`: its headers, a
    /// fresh delivery id, signed with the webhook secret (and the signature checked by
    /// [`assert_signed_as_documented`] first).
    pub fn deliver_as(
        &self,
        slipway: &Slipway,
        forge: Forge,
        event: ExampleEvent,
        body: &str,
    ) -> HttpResponse {
        let headers = forge.signed_headers(
            event,
            &new_delivery_id(),
            &self.webhook_secret,
            body.as_bytes(),
        );
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        slipway.post_hook_raw(self.name(), &headers, body.as_bytes().to_vec())
    }

    /// Delivers a correctly signed `push` event with a fresh delivery id.
    pub fn deliver_push(&self, slipway: &Slipway, body: &str) -> HttpResponse {
        slipway.post_hook(
            self.name(),
            "push",
            &new_delivery_id(),
            body,
            Some(&self.webhook_secret),
        )
    }

    /// Delivers the push that moved `main` from `before` ([`ZERO_ID`] when it created the
    /// branch) to its current head, and returns the answer.
    pub fn deliver_main(&self, slipway: &Slipway, before: &str) -> HttpResponse {
        self.deliver_push(slipway, &self.push_payload("refs/heads/main", before))
    }

    /// Delivers the push that created `main` (from [`ZERO_ID`] to its head) and returns the id
    /// of the one build it queued.
    pub fn push_main(&self, slipway: &Slipway) -> String {
        let answer = self.deliver_main(slipway, ZERO_ID);
        answer.assert_status(202);
        answer.single_build_id()
    }

    /// The digest of `tag` of this repository's image in the authenticated registry, or `None`.
    pub fn pushed_digest(&self, tag: &str) -> Option<String> {
        self.registry().manifest_digest(self.name(), tag)
    }

    /// Pulls this repository's image at `digest` from the registry, runs it and returns what
    /// it printed; the pulled image is removed again afterwards.
    pub fn run_pushed(&self, digest: &str) -> String {
        let docker = self.docker();
        let image = format!("{}@{digest}", self.image());
        docker.pull(&image);
        docker.run_image(&image)
    }

    /// Fails the test unless `build` succeeded and pushed `tag`: the registry's `tag` has the
    /// digest the API reports, and that image's [`REVISION_LABEL`] is `commit`. Returns the
    /// digest.
    #[track_caller]
    pub fn assert_pushed(&self, build: &Value, tag: &str, commit: &str) -> String {
        assert_eq!(build["status"], "succeeded", "{build:#}");
        let digest = build_digest(build);
        assert_eq!(
            self.pushed_digest(tag).as_deref(),
            Some(digest.as_str()),
            "the registry's {}:{tag} is the digest of build {build:#}",
            self.image()
        );
        let docker = self.docker();
        let image = format!("{}@{digest}", self.image());
        docker.pull(&image);
        assert_eq!(
            docker.label(&image, REVISION_LABEL).as_deref(),
            Some(commit),
            "the revision of {image}, pushed by {build:#}"
        );
        digest
    }

    /// Fails the test if the authenticated registry holds `tag` of this repository's image.
    #[track_caller]
    pub fn assert_not_pushed(&self, tag: &str) {
        assert_eq!(
            self.pushed_digest(tag),
            None,
            "a failed build pushed {}:{tag}",
            self.image()
        );
    }

    /// The authenticated registry, with the rig's credentials.
    pub fn registry(&self) -> Registry {
        Registry::new(
            &self.rig.auth_registry,
            Some(self.rig.auth_registry_credentials()),
        )
    }

    /// A small application whose image shows that each Dockerfile instruction ran: `RUN`
    /// writes a file, `COPY` brings one from the repository, and `CMD` prints both.
    pub fn sample_app(&self) -> SampleApp {
        let greeting = format!("hello from {}\n", self.name());
        let dockerfile = format!(
            "FROM {}\n\
             RUN mkdir -p /app && echo 'written by RUN' > /app/run.txt\n\
             COPY greeting.txt /app/greeting.txt\n\
             CMD [\"cat\", \"/app/run.txt\", \"/app/greeting.txt\"]\n",
            self.rig.base_image
        );
        SampleApp {
            files: vec![
                RepoFile::text("Dockerfile", &dockerfile),
                RepoFile::text("greeting.txt", &greeting),
            ],
            expected_output: format!("written by RUN\n{greeting}"),
        }
    }

    /// The docker CLI, logged in to the authenticated registry in a private configuration.
    pub fn docker(&self) -> Docker {
        let docker = Docker::new();
        docker.login(
            &self.rig.auth_registry,
            &self.rig.auth_registry_user,
            &self.rig.auth_registry_password,
        );
        docker
    }
}

/// The files of [`Fixture::sample_app`] and what its container prints.
#[derive(Debug, Clone)]
pub struct SampleApp {
    pub files: Vec<RepoFile>,
    pub expected_output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_the_label() {
        let a = unique_name("happy-path");
        let b = unique_name("happy-path");
        assert_ne!(a, b);
        assert!(
            a.starts_with("happy-path-") && a.len() == "happy-path-".len() + 8,
            "{a}"
        );
    }
}
