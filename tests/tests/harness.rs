//! Checks of the harness itself against the rig, without the Slipway binary: if these fail,
//! the end-to-end tests' verdicts cannot be trusted either.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_e2e::{
    Docker, DockerProxy, PostgresCluster, Registry, RegistryServer, Rig, Slipway, TestDatabase,
    unique_name,
};
use tempfile::TempDir;

/// Builds a one-layer image from the base image, pushes it, and checks that the registry
/// client reports the digest docker pushed and that a pull by that digest runs.
fn round_trip(docker: &Docker, rig: &Rig, registry: &Registry, registry_host: &str) {
    let path = format!("e2e/{}", unique_name("harness"));
    let image = format!("{registry_host}/{path}:t1");
    let dockerfile = format!(
        "FROM {}\nLABEL org.example.check=yes\nCMD [\"echo\", \"hello from {path}\"]\n",
        rig.base_image
    );
    docker.run(
        &["build", "--quiet", "--tag", &image, "-"],
        Some(&dockerfile),
    );
    docker.run(&["push", "--quiet", &image], None);
    let repo_digests = docker.run(
        &[
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            &image,
        ],
        None,
    );
    let pushed = repo_digests
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{registry_host}/{path}@")))
        .unwrap_or_else(|| panic!("docker recorded no digest for {image}: {repo_digests}"))
        .to_owned();

    assert_eq!(registry.manifest_digest(&path, "t1"), Some(pushed.clone()));
    assert_eq!(registry.manifest_digest(&path, "no-such-tag"), None);

    // Untag the local build so the pull below has to go to the registry.
    docker.run(&["image", "rm", &image], None);
    let by_digest = format!("{registry_host}/{path}@{pushed}");
    docker.pull(&by_digest);
    assert_eq!(docker.run_image(&by_digest), format!("hello from {path}\n"));
    assert_eq!(
        docker.label(&by_digest, "org.example.check").as_deref(),
        Some("yes")
    );
    assert_eq!(docker.label(&by_digest, "org.example.absent"), None);
}

#[test]
fn registry_and_docker_helpers_agree_with_the_anonymous_registry() {
    let rig = Rig::load();
    let docker = Docker::new();
    round_trip(
        &docker,
        &rig,
        &Registry::new(&rig.registry, None),
        &rig.registry,
    );
}

#[test]
fn registry_and_docker_helpers_agree_with_the_authenticated_registry() {
    let rig = Rig::load();
    let docker = Docker::new();
    docker.login(
        &rig.auth_registry,
        &rig.auth_registry_user,
        &rig.auth_registry_password,
    );
    let registry = Registry::new(&rig.auth_registry, Some(rig.auth_registry_credentials()));
    round_trip(&docker, &rig, &registry, &rig.auth_registry);
}

#[test]
fn docker_configurations_are_private_to_each_helper() {
    let rig = Rig::load();
    let logged_in = Docker::new();
    logged_in.login(
        &rig.auth_registry,
        &rig.auth_registry_user,
        &rig.auth_registry_password,
    );
    // Another helper has not logged in, so the authenticated registry refuses it outright
    // (rather than answering that the image does not exist).
    let anonymous = Docker::new();
    let image = format!(
        "{}/e2e/{}:latest",
        rig.auth_registry,
        unique_name("harness")
    );
    let refused = anonymous.output(&["pull", &image], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "an anonymous pull from the authenticated registry must fail"
    );
    assert!(stderr.contains("no basic auth credentials"), "{stderr}");
    let allowed = logged_in.output(&["pull", &image], None);
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    assert!(
        stderr.contains("not found"),
        "the logged-in helper gets as far as the manifest: {stderr}"
    );
}

#[test]
fn test_databases_are_created_and_dropped() {
    let rig = Rig::load();
    let database = TestDatabase::create(&rig.postgres_url, "harness");
    let name = database.name().to_owned();
    assert_eq!(psql(database.url(), "SELECT current_database()"), name);
    drop(database);
    let left = psql(
        &rig.postgres_url,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    );
    assert_eq!(left, "0", "the database is dropped with its value");
}

fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-X", "-tA", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Writes an executable stand-in for `slipway` that runs `script` with the arguments Slipway
/// is started with already parsed into shell variables.
fn stand_in(dir: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("slipway-stand-in");
    let text = format!(
        "#!/bin/sh\nset -eu\n[ \"$1\" = serve ] || exit 64\nshift\n\
         while [ $# -gt 0 ]; do\n  case $1 in\n    --config) config=$2 ;;\n    --listen) listen=$2 ;;\n    \
         --data-dir) data=$2 ;;\n    --database-url) database=$2 ;;\n    *) exit 64 ;;\n  esac\n  shift 2\ndone\n{script}\n"
    );
    std::fs::write(&path, text).expect("write the stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the stand-in executable");
    path
}

/// The stand-in serves its data directory over HTTP, so the test can read back the
/// configuration and environment it was started with.
#[test]
fn slipway_harness_starts_waits_for_health_and_kills_its_child() {
    let dir = TempDir::new().expect("temp dir");
    let binary = stand_in(
        dir.path(),
        "mkdir -p \"$data\"\necho ok > \"$data/healthz\"\ncp \"$config\" \"$data/config.toml\"\n\
         printf '%s' \"$E2E_CHECK\" > \"$data/env.txt\"\nprintf '%s' \"$database\" > \"$data/database.txt\"\n\
         exec busybox httpd -f -p \"$listen\" -h \"$data\"",
    );
    let slipway = Slipway::builder("[[repositories]]\nname = \"a/b\"\n")
        .binary(&binary)
        .env("E2E_CHECK", "value")
        .database_url("postgres://example/db")
        .start();
    assert_eq!(slipway.get("/healthz").assert_status(200).text, "ok\n");
    let config = slipway.get("/config.toml").text;
    assert_eq!(
        config,
        format!(
            "public_url = \"{}\"\n[[repositories]]\nname = \"a/b\"\n",
            slipway.url("")
        )
    );
    assert_eq!(slipway.get("/env.txt").text, "value");
    assert_eq!(slipway.get("/database.txt").text, "postgres://example/db");

    let health = slipway.url("/healthz");
    drop(slipway);
    let after = reqwest::blocking::get(&health);
    assert!(
        after.is_err(),
        "the child is gone once the harness is dropped: {after:?}"
    );
}

#[test]
fn slipway_harness_reports_an_early_exit_with_its_stderr() {
    let dir = TempDir::new().expect("temp dir");
    let binary = stand_in(
        dir.path(),
        "echo 'configuration error: the answer is 42' >&2\nexit 3",
    );
    let outcome = std::panic::catch_unwind(|| Slipway::builder("").binary(&binary).start());
    let payload = outcome.expect_err("starting a process that exits must fail the test");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(
        message.contains("exited before it became healthy"),
        "{message}"
    );
    assert!(
        message.contains("configuration error: the answer is 42"),
        "{message}"
    );
}

/// The private registry stops (its port refuses connections) and starts again on the same
/// port with the same storage.
#[test]
fn a_private_registry_stops_and_starts_again_on_its_port() {
    let mut registry = RegistryServer::start();
    let url = format!("http://{}/v2/", registry.host());
    let get = || reqwest::blocking::get(&url).map(|response| response.status().as_u16());
    assert_eq!(get().ok(), Some(200), "{}", registry.log());
    registry.stop();
    assert!(get().is_err(), "a stopped registry refuses connections");
    registry.start_again();
    assert_eq!(get().ok(), Some(200), "{}", registry.log());
}

/// The private PostgreSQL cluster takes Slipway's kind of URL, refuses connections while it
/// is stopped, and keeps its data across a restart.
#[test]
fn a_private_postgres_cluster_stops_and_starts_again_with_its_data() {
    let mut cluster = PostgresCluster::start();
    let url = cluster.url();
    assert_eq!(psql(&url, "SELECT current_user"), "slipway");
    psql(
        &url,
        "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)",
    );
    cluster.stop();
    let refused = Command::new("psql")
        .args([&url, "-X", "-tA", "-c", "SELECT 1"])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    assert!(
        !refused.status.success(),
        "a stopped cluster refuses connections"
    );
    cluster.start_again();
    assert_eq!(psql(&url, "SELECT v FROM kept"), "42");
}

/// The Docker proxy relays the engine's API while it runs, and nothing answers on its socket
/// while it is stopped.
#[test]
fn the_docker_proxy_relays_the_engine_until_it_is_stopped() {
    let mut proxy = DockerProxy::start();
    let host = proxy.docker_host();
    let version = || {
        Command::new("docker")
            .args([
                "--host",
                &host,
                "version",
                "--format",
                "{{.Server.Version}}",
            ])
            .output()
            .expect("run docker")
    };
    let answered = version();
    assert!(
        answered.status.success() && !answered.stdout.is_empty(),
        "the engine answers through the proxy: {answered:?}"
    );
    proxy.stop();
    assert!(
        !version().status.success(),
        "nothing answers through a stopped proxy"
    );
    proxy.start_again();
    assert!(
        version().status.success(),
        "the proxy relays again after a restart"
    );
    assert!(
        proxy.connections() >= 2,
        "the proxy counted its connections"
    );
}
