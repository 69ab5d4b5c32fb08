//! The docker CLI with a private configuration directory per test, so that one test's
//! `docker login` can neither help nor hinder another's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use tempfile::TempDir;

use crate::command;

/// The docker CLI talking to the rig's engine (`DOCKER_HOST` is inherited) with its own
/// `DOCKER_CONFIG`. Images it pulled are removed again when it is dropped.
#[derive(Debug)]
pub struct Docker {
    config_dir: TempDir,
    pulled: Mutex<Vec<String>>,
}

impl Default for Docker {
    fn default() -> Self {
        Self::new()
    }
}

impl Docker {
    pub fn new() -> Self {
        let config_dir =
            TempDir::with_prefix("slipway-e2e-docker-").expect("create a DOCKER_CONFIG directory");
        Self {
            config_dir,
            pulled: Mutex::new(Vec::new()),
        }
    }

    /// Logs in to `registry`; the password goes through standard input, never the command line.
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        self.run(
            &["login", "--username", user, "--password-stdin", registry],
            Some(password),
        );
    }

    /// Pulls `image` from its registry, so what is inspected or run afterwards is what the
    /// registry holds.
    pub fn pull(&self, image: &str) {
        self.run(&["pull", "--quiet", image], None);
        self.pulled
            .lock()
            .expect("not poisoned")
            .push(image.to_owned());
    }

    /// `docker run --rm <image>`: what the container printed on standard output.
    pub fn run_image(&self, image: &str) -> String {
        self.run(&["run", "--rm", "--network", "none", image], None)
    }

    /// Every label of a local image.
    pub fn labels(&self, image: &str) -> BTreeMap<String, String> {
        let json = self.run(
            &[
                "image",
                "inspect",
                "--format",
                "{{json .Config.Labels}}",
                image,
            ],
            None,
        );
        let labels: Option<BTreeMap<String, String>> = serde_json::from_str(json.trim())
            .unwrap_or_else(|e| panic!("labels of {image} are not JSON ({e}): {json}"));
        labels.unwrap_or_default()
    }

    /// One label of a local image, or `None`.
    pub fn label(&self, image: &str, label: &str) -> Option<String> {
        self.labels(image).remove(label)
    }

    /// The ids of local images that carry `label` with `value`.
    pub fn images_with_label(&self, label: &str, value: &str) -> Vec<String> {
        let filter = format!("label={label}={value}");
        self.run(
            &["image", "ls", "--quiet", "--no-trunc", "--filter", &filter],
            None,
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Runs the docker CLI and fails the test, with its error output, unless it succeeds.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        command::expect_success(&format!("docker {args:?}"), &self.output(args, stdin))
    }

    /// Runs the docker CLI and returns its output, whether it succeeded or not.
    pub fn output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("docker")
            .env("DOCKER_CONFIG", self.config_dir.path())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("docker's stdin is piped");
            pipe.write_all(input.as_bytes())
                .expect("write to docker's stdin");
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("docker {args:?} did not finish: {e}"))
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Removing what this test pulled keeps the rig's disk from filling up; an image that is
        // still in use by another reference is simply untagged.
        let pulled = std::mem::take(
            &mut *self
                .pulled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for image in pulled {
            let _ = self.output(&["image", "rm", "--no-prune", &image], None);
        }
    }
}
