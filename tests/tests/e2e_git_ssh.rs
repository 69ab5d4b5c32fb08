//! Fetching over SSH: a signed GitHub push makes Slipway fetch from the real OpenSSH `sshd`
//! with a deploy key, accepting only the pinned host key.

use serde_json::Value;
use slipway_e2e::{Fixture, Rule, Slipway, SshGitServer, SshKeyPair};

const REVISION: &str = "org.opencontainers.image.revision";
const SOURCE: &str = "org.opencontainers.image.source";

/// Nothing Slipway shows (the error, the build log, its own output) contains any line of
/// the private key `key`.
#[track_caller]
fn assert_no_key_material(slipway: &Slipway, build: &Value, error: &str, key: &SshKeyPair) {
    let build_id = build["id"].as_str().expect("the build has an id");
    let log = slipway.log(build_id);
    let stderr = slipway.stderr();
    let stdout = slipway.stdout();
    for (what, text) in [
        ("the error", error),
        ("the build log", log.as_str()),
        ("Slipway's stderr", stderr.as_str()),
        ("Slipway's stdout", stdout.as_str()),
    ] {
        assert!(
            !text.contains("PRIVATE KEY"),
            "{what} shows a private key: {text}"
        );
        for line in key
            .private_key_text()
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(
                !text.contains(line),
                "{what} contains a line of the private key: {text}"
            );
        }
    }
}

#[test]
fn a_signed_push_builds_from_an_ssh_remote_with_a_deploy_key_and_pinned_host_key() {
    let fx = Fixture::new("ssh-deploy-key");
    let ssh = SshGitServer::start();
    let app = fx.sample_app();
    let commit = fx.repo.commit("Add the app", &app.files);
    let config = fx.ssh_config(&ssh, vec![Rule::branch("main", "latest")]);
    let slipway = fx.slipway(&config).start();

    let build_id = fx.push_main(&slipway);
    let build = slipway.wait_for_success(&build_id);
    assert_eq!(build["commit"], commit.as_str());

    // The fetch went over SSH with the deploy key, not over HTTP.
    assert!(
        ssh.accepted_key(ssh.deploy_key().fingerprint()),
        "sshd logged no login with the deploy key:\n{}",
        ssh.log()
    );
    assert!(
        fx.git.requests().is_empty(),
        "Slipway fetched over HTTP: {:#?}",
        fx.git.requests()
    );

    let digest = build["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("a succeeded build has a digest: {build:#}"));
    assert_eq!(
        fx.registry()
            .manifest_digest(fx.name(), "latest")
            .as_deref(),
        Some(digest),
        "the registry's latest is the build's digest"
    );
    let docker = fx.docker();
    let image = format!("{}@{digest}", fx.image());
    docker.pull(&image);
    assert_eq!(docker.run_image(&image), app.expected_output);
    let labels = docker.labels(&image);
    assert_eq!(labels.get(REVISION), Some(&commit), "labels: {labels:#?}");
    assert_eq!(
        labels.get(SOURCE),
        Some(&ssh.url(&fx.repo)),
        "the source label is the SSH URL: {labels:#?}"
    );
}

#[test]
fn a_wrong_pinned_ssh_host_key_fails_the_build_before_logging_in() {
    let fx = Fixture::new("ssh-wrong-host-key");
    let ssh = SshGitServer::start();
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let impostor = SshKeyPair::generate("impostor-host");
    let mut config = fx.ssh_config(&ssh, vec![Rule::branch("main", "latest")]);
    config.repositories[0].git_ssh_host_key = Some(impostor.fingerprint().to_owned());
    let slipway = fx.slipway(&config).start();

    let (build, error) = slipway.wait_for_failure(&fx.push_main(&slipway));
    assert!(
        error.contains("git_ssh_host_key"),
        "the error names the setting to check: {build:#}"
    );
    assert!(
        error.contains("identity could not be verified"),
        "the error says the server's identity could not be verified: {build:#}"
    );
    assert_no_key_material(&slipway, &build, &error, ssh.deploy_key());
    assert!(
        !ssh.accepted_key(ssh.deploy_key().fingerprint()),
        "Slipway logged in to a server whose host key it should have refused:\n{}",
        ssh.log()
    );
    fx.assert_not_pushed("latest");
}

#[test]
fn an_unauthorized_ssh_deploy_key_fails_with_an_authentication_error() {
    let fx = Fixture::new("ssh-wrong-deploy-key");
    let ssh = SshGitServer::start();
    fx.repo.commit("Add the app", &fx.sample_app().files);
    let stranger = SshKeyPair::generate("stranger");
    let mut config = fx.ssh_config(&ssh, vec![Rule::branch("main", "latest")]);
    config.repositories[0].git_ssh_key_file = Some(stranger.private_key_str().to_owned());
    let slipway = fx.slipway(&config).start();

    let (build, error) = slipway.wait_for_failure(&fx.push_main(&slipway));
    assert!(
        error.contains("authentication was refused"),
        "the error says authentication was refused: {build:#}"
    );
    assert_no_key_material(&slipway, &build, &error, &stranger);
    assert!(
        ssh.refused_key(stranger.fingerprint()) && !ssh.accepted_key(stranger.fingerprint()),
        "sshd saw the stranger's key and refused it:\n{}",
        ssh.log()
    );
    fx.assert_not_pushed("latest");
}
