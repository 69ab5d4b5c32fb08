//! The `git` command line, run hermetically: no system or user configuration, no prompts and
//! a fixed identity, so that a developer's settings cannot change what the tests see.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::command;

/// `git` run in one directory.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Git {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every git run, such as `GIT_SSH_COMMAND`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs git and returns its output, whether it succeeded or not.
    pub fn output(&self, args: &[&str]) -> Output {
        command::output(&mut self.command(args))
    }

    /// Runs git and fails the test, showing git's error output, when it does not succeed.
    pub fn run(&self, args: &[&str]) -> String {
        let what = format!("git {args:?} in {}", self.dir.display());
        command::expect_success(&what, &self.output(args))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args([
                "-c",
                "commit.gpgSign=false",
                "-c",
                "tag.gpgSign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            // Symbolic links are committed as links, never as text files with the target in them.
            .args(["-c", "core.symlinks=true"])
            .args(args);
        command
    }
}

/// Runs git in `dir` and returns its standard output, failing the test if git fails.
pub fn git_output(dir: &Path, args: &[&str]) -> String {
    Git::new(dir).run(args)
}
