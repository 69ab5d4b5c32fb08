//! The real `slipway` binary as a child process, and a client for its HTTP interface.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;
use tempfile::TempDir;

use crate::command;
use crate::payload::github_signature;

/// How long `slipway serve` may take to answer `GET /healthz`, and `slipway worker` to say
/// that it started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a build may take by default: builds are real, on a two-core machine.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(180);
/// The statuses a build never leaves.
const TERMINAL_STATUSES: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// How to start Slipway: the configuration file's text, extra environment (secrets are named
/// in the configuration and passed this way), extra process flags and an optional database URL.
#[derive(Debug, Clone)]
pub struct SlipwayBuilder {
    config: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    database_url: Option<String>,
    binary: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

/// Which of Slipway's process commands runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `slipway serve`: HTTP and workers in one process.
    Serve,
    /// `slipway web`: HTTP only.
    Web,
    /// `slipway worker`: builds only.
    Worker,
}

impl Mode {
    fn command(self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Web => "web",
            Self::Worker => "worker",
        }
    }
}

impl SlipwayBuilder {
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a flag (or its value) to `slipway serve`'s command line.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// `--workers <slots>`: how many builds the process runs at once (Slipway's default is 2).
    pub fn workers(self, slots: usize) -> Self {
        self.arg("--workers").arg(&slots.to_string())
    }

    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// Runs this program instead of [`binary_path`]; the harness's own tests use a stand-in.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// `--data-dir <dir>` instead of a fresh directory per process, so processes (or one
    /// process and its restart) can share mirrors and scratch space. The directory is the
    /// caller's to remove.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Starts `slipway serve` (HTTP and workers) and waits until it is healthy.
    pub fn start(self) -> Slipway {
        self.start_http(Mode::Serve)
    }

    /// Starts `slipway web` (HTTP only; builds are left to `slipway worker` processes on the
    /// same database) and waits until it is healthy.
    pub fn start_web(self) -> Slipway {
        self.start_http(Mode::Web)
    }

    /// Starts `slipway worker` (builds only, from the shared database) and waits until it has
    /// connected to the engine and started its workers.
    pub fn start_worker(self) -> SlipwayWorker {
        SlipwayWorker::spawn(&self)
    }

    fn start_http(self, mode: Mode) -> Slipway {
        // A free port is found by binding and releasing it, so another process can take it in
        // between; a start that fails for that reason is retried on a new port.
        for _ in 0..3 {
            match Slipway::spawn(&self, mode) {
                Ok(slipway) => return slipway,
                Err(StartError::PortTaken) => continue,
            }
        }
        panic!("slipway could not bind a free port on 127.0.0.1 in three attempts");
    }
}

/// One Slipway process this harness started: the child, its directory (configuration file,
/// output logs and, unless shared, its data directory) and what it runs. Signals go to this
/// child only, by its handle's PID, and only while it has not been reaped.
#[derive(Debug)]
struct SlipwayProcess {
    child: Mutex<Child>,
    pid: u32,
    mode: Mode,
    dir: TempDir,
    data_dir: PathBuf,
}

impl SlipwayProcess {
    /// Writes the configuration (with `public_url` when one is given and the file has none)
    /// and starts `slipway <mode> <extra>` with its output going to files in its directory.
    fn spawn(
        options: &SlipwayBuilder,
        mode: Mode,
        extra: &[&str],
        public_url: Option<&str>,
    ) -> Self {
        let binary = options.binary.clone().unwrap_or_else(binary_path);
        let dir = TempDir::with_prefix(format!("slipway-e2e-{}-", mode.command()))
            .expect("create Slipway's directory");
        let config = match public_url {
            Some(url)
                if !options
                    .config
                    .lines()
                    .any(|line| line.trim_start().starts_with("public_url")) =>
            {
                // Top-level keys have to come before the first table, so the key goes first.
                format!("public_url = \"{url}\"\n{}", options.config)
            }
            _ => options.config.clone(),
        };
        std::fs::write(dir.path().join("slipway.toml"), config)
            .expect("write Slipway's configuration file");
        let mut args = vec![mode.command()];
        args.extend_from_slice(extra);
        let mut command = Slipway::command(options, dir.path(), &args);
        command
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(log_file(dir.path(), "stdout.log"))
            .stderr(log_file(dir.path(), "stderr.log"));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let data_dir = data_dir(options, dir.path());
        Self {
            pid: child.id(),
            child: Mutex::new(child),
            mode,
            dir,
            data_dir,
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The exit status if the process has ended (reaping it), `None` while it runs.
    fn try_wait(&self) -> Option<ExitStatus> {
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll slipway {}: {e}", self.mode.command()))
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the child, unless it has already been reaped: an
    /// exited but unreaped child keeps its PID, so the signal can reach no other process.
    fn signal(&self, signal: &str) {
        let mut child = self.child();
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        command::send_signal(self.pid, signal);
    }

    /// SIGKILL, then waits for the process to be gone.
    fn kill(&self) -> ExitStatus {
        let mut child = self.child();
        // `Child::kill` sends SIGKILL, and does nothing harmful to a child already reaped.
        let _ = child.kill();
        child
            .wait()
            .unwrap_or_else(|e| panic!("cannot wait for slipway {}: {e}", self.mode.command()))
    }

    fn wait_for_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }
}

impl Drop for SlipwayProcess {
    fn drop(&mut self) {
        // Only the child this harness started is killed, by its handle.
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
        drop(child);
        if std::thread::panicking() {
            eprintln!(
                "---- slipway {mode} (pid {pid}) stdout ----\n{}\n---- slipway {mode} (pid {pid}) stderr ----\n{}\n---- end of slipway {mode} (pid {pid}) output ----",
                self.stdout(),
                self.stderr(),
                mode = self.mode.command(),
                pid = self.pid,
            );
        }
    }
}

/// The data directory a process of `options` uses, its own under `dir` unless shared.
fn data_dir(options: &SlipwayBuilder, dir: &Path) -> PathBuf {
    options.data_dir.clone().unwrap_or_else(|| dir.join("data"))
}

/// A running `slipway worker`: no HTTP side, so it is watched through its log and the API of
/// a `slipway web` on the same database. Killed when dropped.
#[derive(Debug)]
pub struct SlipwayWorker {
    process: SlipwayProcess,
}

impl SlipwayWorker {
    fn spawn(options: &SlipwayBuilder) -> Self {
        let worker = Self {
            process: SlipwayProcess::spawn(options, Mode::Worker, &[], None),
        };
        worker.wait_until_started();
        worker
    }

    /// Waits until the worker logs that it started (after it reached its engine).
    fn wait_until_started(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.stderr().contains("worker started") {
                return;
            }
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "slipway worker exited before it started ({status}).\nstderr:\n{}\nstdout:\n{}",
                    self.stderr(),
                    self.stdout()
                );
            }
            assert!(
                Instant::now() < deadline,
                "slipway worker did not log \"worker started\" within {STARTUP_TIMEOUT:?}.\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id: Slipway names its workers `<host>-<pid>-<random>` in `attempt_history`.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Whether `worker` (an `attempt_history` entry's `worker`) is this process.
    pub fn is(&self, worker: &str) -> bool {
        worker.contains(&format!("-{}-", self.pid()))
    }

    /// SIGKILL: the process dies at once, with no chance to clean up. Waits until it is gone.
    pub fn kill(&self) -> ExitStatus {
        self.process.kill()
    }

    /// SIGTERM: the process is asked to shut down; returns at once.
    pub fn terminate(&self) {
        self.process.signal("TERM");
    }

    /// Waits up to `timeout` for the process to end and returns how it ended, or `None`.
    pub fn wait_for_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_for_exit(timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.process.try_wait().is_none()
    }

    /// The process's data directory (mirrors and scratch space).
    pub fn data_dir(&self) -> &Path {
        &self.process.data_dir
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn stdout(&self) -> String {
        self.process.stdout()
    }
}

enum StartError {
    PortTaken,
}

/// A running `slipway serve` (or `slipway web`). Its output goes to files in its temporary
/// directory and is printed when the test fails; the process is killed when this is dropped.
#[derive(Debug)]
pub struct Slipway {
    process: SlipwayProcess,
    base_url: String,
    /// Sends the administrator's API token with every request (see [`Slipway::admin_token`]).
    http: Client,
    /// Sends no credentials, for what anonymous callers see.
    anonymous: Client,
    admin_token: String,
    /// How it was started: the CLI runs with the same configuration, secrets and database.
    options: SlipwayBuilder,
}

/// A response from Slipway, kept whole so that assertion messages can show it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// Every response header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl HttpResponse {
    /// The value of the header `name` (any case), or `None`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The `builds` array of a webhook answer (empty when there is none).
    pub fn builds(&self) -> Vec<Value> {
        self.json()["builds"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The ids of the builds a webhook answer lists, in its order.
    pub fn build_ids(&self) -> Vec<String> {
        self.builds()
            .iter()
            .map(|build| {
                build["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a build has no string id: {self:#?}"))
                    .to_owned()
            })
            .collect()
    }

    /// The entries of a trigger's answer (one per rule considered), failing the test unless
    /// the request was accepted (202) with a JSON array.
    #[track_caller]
    pub fn trigger_entries(&self) -> Vec<Value> {
        self.assert_status(202);
        self.json()
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("a trigger answers a JSON array: {self:#?}"))
    }

    /// The `error.message` of an error answer, failing the test when there is none.
    #[track_caller]
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {self:#?}"))
            .to_owned()
    }

    /// The `delivery` id of a webhook answer: the key of `GET /api/deliveries/{id}`.
    pub fn delivery_id(&self) -> String {
        self.json()["delivery"]
            .as_str()
            .unwrap_or_else(|| panic!("the answer names no delivery: {self:#?}"))
            .to_owned()
    }

    /// The id of the only build a webhook answer queued, failing the test otherwise.
    pub fn single_build_id(&self) -> String {
        let builds = self.builds();
        assert_eq!(
            builds.len(),
            1,
            "expected exactly one queued build in {self:#?}"
        );
        builds[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the build has no string id: {self:#?}"))
            .to_owned()
    }

    /// Fails the test unless the status is `expected`, showing the whole response.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status, expected,
            "unexpected status; the response was {self:#?}"
        );
        self
    }
}

impl Slipway {
    /// Prepares to start Slipway with this configuration file text. A missing `public_url` is
    /// set to the address Slipway listens on.
    pub fn builder(config: &str) -> SlipwayBuilder {
        SlipwayBuilder {
            config: config.to_owned(),
            env: Vec::new(),
            args: Vec::new(),
            database_url: None,
            binary: None,
            data_dir: None,
        }
    }

    fn spawn(options: &SlipwayBuilder, mode: Mode) -> Result<Self, StartError> {
        let listen = free_loopback_address();
        let base_url = format!("http://{listen}");
        let process = SlipwayProcess::spawn(options, mode, &["--listen", &listen], Some(&base_url));
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build an HTTP client");
        let mut slipway = Self {
            process,
            base_url,
            anonymous: http.clone(),
            http,
            admin_token: String::new(),
            options: options.clone(),
        };
        slipway.wait_until_healthy()?;
        // A stand-in binary (the harness's own tests) has no accounts to make.
        if options.binary.is_none() {
            slipway.sign_in_as_admin();
        }
        Ok(slipway)
    }

    /// The user every instance's helpers act as: a global administrator made with the CLI,
    /// as an operator would on first run.
    pub const ADMIN: &str = "e2e-admin";
    pub const ADMIN_PASSWORD: &str = "e2e-admin-password";

    /// Makes the administrator (unless a process on the same database already did) and an API
    /// token for it, and sends that token with every request from then on.
    fn sign_in_as_admin(&mut self) {
        let added = self.cli_with_input(
            &["user", "add", "--admin", Self::ADMIN],
            &format!("{}\n", Self::ADMIN_PASSWORD),
        );
        let stderr = String::from_utf8_lossy(&added.stderr);
        assert!(
            added.status.success() || stderr.contains("exists"),
            "slipway user add failed: {stderr}"
        );
        let token = self
            .cli(&["token", "create", "--user", Self::ADMIN, "--scope", "owner"])
            .trim()
            .to_owned();
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        self.http = Client::builder()
            .timeout(Duration::from_secs(120))
            .default_headers(headers)
            .build()
            .expect("build an HTTP client");
        self.admin_token = token;
    }

    /// The administrator's API token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// `GET <path>` with no credentials, whatever the status.
    pub fn get_anonymous(&self, path: &str) -> HttpResponse {
        let response = self
            .anonymous
            .get(self.url(path))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        into_http_response(response)
    }

    /// A request with no credentials but those the caller adds (another user's token, a
    /// session cookie).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.anonymous.request(method, self.url(path))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Whether `worker` (an `attempt_history` entry's `worker`) is this process's.
    pub fn is(&self, worker: &str) -> bool {
        worker.contains(&format!("-{}-", self.pid()))
    }

    /// SIGKILL: the process dies at once, with no chance to clean up. Waits until it is gone;
    /// requests to it fail from then on.
    pub fn kill(&self) -> ExitStatus {
        self.process.kill()
    }

    /// SIGTERM: the process is asked to shut down; returns at once.
    pub fn terminate(&self) {
        self.process.signal("TERM");
    }

    /// Waits up to `timeout` for the process to end and returns how it ended, or `None`.
    pub fn wait_for_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_for_exit(timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.process.try_wait().is_none()
    }

    /// The process's data directory (its SQLite database by default, mirrors, scratch space).
    pub fn data_dir(&self) -> &Path {
        &self.process.data_dir
    }

    /// `slipway <args> --config … --data-dir …` with the configuration file and data directory
    /// in `dir`, the database and environment of `options`, and nothing from the caller's
    /// `SLIPWAY_*` environment.
    fn command(options: &SlipwayBuilder, dir: &Path, args: &[&str]) -> Command {
        let binary = options.binary.clone().unwrap_or_else(binary_path);
        let mut command = Command::new(&binary);
        command
            .args(args)
            .arg("--config")
            .arg(dir.join("slipway.toml"))
            .arg("--data-dir")
            .arg(data_dir(options, dir));
        if let Some(url) = &options.database_url {
            command.arg("--database-url").arg(url);
        }
        // Slipway reads SLIPWAY_* settings from its environment; none from the developer's shell
        // (or the rig's SLIPWAY_TEST_* variables) may change what a test runs.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SLIPWAY_") {
                command.env_remove(name);
            }
        }
        command
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_BACKTRACE", "1");
        command
    }

    /// Runs `slipway <args>` to the end against this instance's configuration file, data
    /// directory and database (as an operator runs the CLI beside the server), with its
    /// environment; returns the output whether it succeeded or not.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        let mut command = Self::command(&self.options, self.process.dir.path(), args);
        self.with_admin_token(&mut command);
        command.stdin(Stdio::null());
        command::output(&mut command)
    }

    /// The API's commands (`repo`, `build`, `trigger`) act as the administrator through
    /// `SLIPWAY_TOKEN`, once there is one; the server is the configuration's `public_url`.
    fn with_admin_token(&self, command: &mut Command) {
        if !self.admin_token.is_empty() {
            command.env("SLIPWAY_TOKEN", &self.admin_token);
        }
    }

    /// `slipway <args> --server <this instance>` as an operator runs the API's commands from
    /// another machine: no configuration file, data directory, database or `SLIPWAY_*`
    /// environment; with `--token <token>` when one is given. The caller adds environment,
    /// runs it and reads its output.
    pub fn client_command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let binary = self.options.binary.clone().unwrap_or_else(binary_path);
        let mut command = Command::new(&binary);
        command.args(args).arg("--server").arg(&self.base_url);
        if let Some(token) = token {
            command.arg("--token").arg(token);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SLIPWAY_") {
                command.env_remove(name);
            }
        }
        command.stdin(Stdio::null()).env("RUST_BACKTRACE", "1");
        command
    }

    /// [`Slipway::client_command`] as the administrator, run to the end; returns the output
    /// whether it succeeded or not.
    pub fn client_output(&self, args: &[&str]) -> Output {
        command::output(&mut self.client_command(Some(&self.admin_token), args))
    }

    /// [`Slipway::cli_output`] with `input` on standard input (a password, say).
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut command = Self::command(&self.options, self.process.dir.path(), args);
        self.with_admin_token(&mut command);
        Self::run_with_input(command, args, input)
    }

    /// Runs a prepared command to the end with `input` on standard input.
    fn run_with_input(mut command: Command, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start slipway {args:?}: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write to slipway {args:?}: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("slipway {args:?} failed: {e}"))
    }

    /// [`Slipway::cli_output`], failing the test (with the error output) unless it succeeds;
    /// returns the standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        command::expect_success(&format!("slipway {args:?}"), &self.cli_output(args))
    }

    /// `slipway <args>` on this instance's configuration and database as the server's operator
    /// runs it, with no API token in the environment, so that the account commands work on the
    /// database rather than through the API; whatever the outcome, with `input` on standard
    /// input.
    pub fn cli_on_database(&self, args: &[&str], input: &str) -> Output {
        let command = Self::command(&self.options, self.process.dir.path(), args);
        Self::run_with_input(command, args, input)
    }

    /// `slipway trigger <args> --server <this instance> --token <administrator's>`: the CLI as
    /// a client of the API; fails the test unless it succeeds and returns what it printed.
    fn trigger_cli(&self, args: &[&str]) -> String {
        let mut all = vec!["trigger"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--server", &self.base_url, "--token", &self.admin_token]);
        self.cli(&all)
    }

    /// `slipway trigger create <repository> <name>`: the URL it prints, the only time the
    /// token is shown.
    pub fn create_trigger(&self, repository: &str, name: &str) -> String {
        trigger_url(&self.trigger_cli(&["create", repository, name]))
    }

    /// `slipway trigger regenerate <repository> <name>`: the new URL.
    pub fn regenerate_trigger(&self, repository: &str, name: &str) -> String {
        trigger_url(&self.trigger_cli(&["regenerate", repository, name]))
    }

    /// `slipway trigger revoke <repository> <name>`.
    pub fn revoke_trigger(&self, repository: &str, name: &str) {
        self.trigger_cli(&["revoke", repository, name]);
    }

    /// `POST <url>` (a full URL, such as a trigger's) with `body`, as JSON, or form-encoded
    /// when `form` is set; whatever the status.
    pub fn post(&self, url: &str, body: &str, form: bool) -> HttpResponse {
        let content_type = if form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_owned())
            .send()
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
        into_http_response(response)
    }

    fn wait_until_healthy(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = self.url("/healthz");
        let command = self.process.mode.command();
        loop {
            if let Some(status) = self.process.try_wait() {
                let stderr = self.stderr();
                if stderr.contains("in use") {
                    return Err(StartError::PortTaken);
                }
                panic!(
                    "slipway {command} exited before it became healthy ({status}).\nstderr:\n{stderr}\nstdout:\n{}",
                    self.stdout()
                );
            }
            let answer = self.http.get(&url).timeout(Duration::from_secs(2)).send();
            if let Ok(response) = answer
                && response.status().as_u16() == 200
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "slipway {command} did not answer GET /healthz with 200 within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a webhook delivery as GitHub does: JSON, the event and delivery headers, and an
    /// `X-Hub-Signature-256` over the body when a secret is given.
    pub fn post_hook(
        &self,
        repository: &str,
        event: &str,
        delivery_id: &str,
        body: &str,
        secret: Option<&str>,
    ) -> HttpResponse {
        let signature = secret.map(|secret| github_signature(secret, body.as_bytes()));
        let mut headers = github_headers(event, delivery_id);
        if let Some(signature) = &signature {
            headers.push(("X-Hub-Signature-256", signature));
        }
        self.post_hook_raw(repository, &headers, body.as_bytes().to_vec())
    }

    /// Sends anything to `POST /hooks/<repository>`: exactly these headers and this body.
    pub fn post_hook_raw(
        &self,
        repository: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> HttpResponse {
        self.try_post_hook_raw(repository, headers, body, None)
            .unwrap_or_else(|e| panic!("POST /hooks/{repository} failed: {e}"))
    }

    /// [`Slipway::post_hook`] that gives up after `timeout` and reports a request that got no
    /// answer (refused, reset, timed out) as an error instead of failing the test: for tests
    /// that kill Slipway or its database while deliveries arrive.
    pub fn try_post_hook(
        &self,
        repository: &str,
        event: &str,
        delivery_id: &str,
        body: &str,
        secret: Option<&str>,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        let signature = secret.map(|secret| github_signature(secret, body.as_bytes()));
        let mut headers = github_headers(event, delivery_id);
        if let Some(signature) = &signature {
            headers.push(("X-Hub-Signature-256", signature));
        }
        self.try_post_hook_raw(
            repository,
            &headers,
            body.as_bytes().to_vec(),
            Some(timeout),
        )
    }

    fn try_post_hook_raw(
        &self,
        repository: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<HttpResponse, String> {
        let mut request = self
            .http
            .post(self.url(&format!("/hooks/{repository}")))
            .body(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().map_err(|e| describe_request_error(&e))?;
        try_into_http_response(response)
    }

    /// `GET <path>`, whatever the status.
    pub fn get(&self, path: &str) -> HttpResponse {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        into_http_response(response)
    }

    /// `GET <path>` that gives up after `timeout`; a request that got no answer is an error.
    pub fn try_get(&self, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
        let response = self
            .http
            .get(self.url(path))
            .timeout(timeout)
            .send()
            .map_err(|e| describe_request_error(&e))?;
        try_into_http_response(response)
    }

    /// `POST <path>` with an empty body (such as `/api/builds/{id}/cancel`), whatever the
    /// status.
    pub fn post_empty(&self, path: &str) -> HttpResponse {
        let response = self
            .http
            .post(self.url(path))
            .send()
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"));
        into_http_response(response)
    }

    /// `GET /api/builds/{id}` as JSON.
    pub fn build(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/builds/{id}"));
        response.assert_status(200);
        serde_json::from_str(&response.text)
            .unwrap_or_else(|e| panic!("build {id} is not JSON ({e}): {response:#?}"))
    }

    /// `GET /api/builds/{id}/log` as text.
    pub fn log(&self, id: &str) -> String {
        let response = self.get(&format!("/api/builds/{id}/log"));
        response.assert_status(200);
        response.text
    }

    /// `GET /api/deliveries/{id}` as JSON: the delivery with its rule decisions and builds.
    pub fn delivery(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/deliveries/{id}"));
        response.assert_status(200);
        serde_json::from_str(&response.text)
            .unwrap_or_else(|e| panic!("delivery {id} is not JSON ({e}): {response:#?}"))
    }

    /// Polls the build until it has finished (succeeded, failed, cancelled or skipped) and
    /// returns it. On timeout the test fails with the build's last state and its log.
    pub fn wait_for_build(&self, id: &str, timeout: Duration) -> Value {
        self.poll_build(id, timeout, "finish", |status| {
            TERMINAL_STATUSES.contains(&status)
        })
    }

    /// Polls the build until its status is `status` (such as `running`) and returns it. The
    /// test fails, with the build and its log, if the build finishes otherwise or the time
    /// runs out.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let build = self.poll_build(id, timeout, &format!("become {status}"), |now| {
            now == status || TERMINAL_STATUSES.contains(&now)
        });
        assert_eq!(
            build["status"],
            status,
            "build {id} finished before it became {status}: {build:#}\nlog:\n{}",
            self.log(id)
        );
        build
    }

    fn poll_build(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let build = self.build(id);
            if build["status"].as_str().is_some_and(&done) {
                return build;
            }
            if Instant::now() >= deadline {
                panic!(
                    "build {id} did not {what} within {timeout:?}.\nlast state: {build:#}\nlog:\n{}",
                    self.log(id)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the build and fails the test, with its log, unless it succeeded.
    pub fn wait_for_success(&self, id: &str) -> Value {
        let build = self.wait_for_build(id, BUILD_TIMEOUT);
        assert_eq!(
            build["status"],
            "succeeded",
            "build {id} did not succeed: {build:#}\nlog:\n{}",
            self.log(id)
        );
        build
    }

    /// Waits for the build and fails the test unless it failed; returns the build and its
    /// `error` text.
    pub fn wait_for_failure(&self, id: &str) -> (Value, String) {
        self.wait_for_end(id, "failed", BUILD_TIMEOUT)
    }

    /// Waits up to `timeout` for the build to finish and fails the test, with the build and its
    /// log, unless it ended with `status` (`failed`, `skipped` or `cancelled`) and an `error`
    /// saying why; returns the build and that text.
    pub fn wait_for_end(&self, id: &str, status: &str, timeout: Duration) -> (Value, String) {
        let build = self.wait_for_build(id, timeout);
        assert_eq!(
            build["status"],
            status,
            "build {id} was expected to end {status}: {build:#}\nlog:\n{}",
            self.log(id)
        );
        let error = build["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{status} build {id} has no error text: {build:#}"))
            .to_owned();
        (build, error)
    }

    /// What Slipway has written to standard error so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// What Slipway has written to standard output so far.
    pub fn stdout(&self) -> String {
        self.process.stdout()
    }
}

/// The `digest` of a succeeded build, failing the test when it has none.
pub fn build_digest(build: &Value) -> String {
    build["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("a succeeded build has a digest: {build:#}"))
        .to_owned()
}

/// The headers GitHub sends with every delivery, except the signature.
fn github_headers<'a>(event: &'a str, delivery_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/e2e"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery_id),
    ]
}

fn into_http_response(response: reqwest::blocking::Response) -> HttpResponse {
    try_into_http_response(response).unwrap_or_else(|e| panic!("cannot read a response: {e}"))
}

/// A failed request as text: the error and its causes, which say whether it was refused, reset
/// or timed out.
fn describe_request_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_timeout() {
        text.push_str(" (timed out)");
    }
    text
}

fn try_into_http_response(response: reqwest::blocking::Response) -> Result<HttpResponse, String> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let text = response.text().map_err(|e| {
        format!(
            "cannot read the body of a {status} answer: {}",
            describe_request_error(&e)
        )
    })?;
    Ok(HttpResponse {
        status,
        content_type,
        headers,
        text,
    })
}

/// The URL in what `slipway trigger create` or `regenerate` printed: two lines, a sentence
/// and then the URL.
fn trigger_url(printed: &str) -> String {
    let lines: Vec<&str> = printed.lines().collect();
    let url = match lines.as_slice() {
        [_, url] => url.trim(),
        _ => panic!("slipway printed {} lines, not two:\n{printed}", lines.len()),
    };
    assert!(
        url.starts_with("http://") && url.contains("/api/trigger/slw_"),
        "the second line slipway printed is no trigger URL:\n{printed}"
    );
    url.to_owned()
}

/// The binary under test: `$SLIPWAY_BIN`, or `target/debug/slipway` in this workspace.
pub fn binary_path() -> PathBuf {
    let path = match std::env::var_os("SLIPWAY_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || {
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join("target")
                },
                PathBuf::from,
            );
            target.join("debug").join("slipway")
        }
    };
    assert!(
        path.is_file(),
        "the slipway binary is not at {}: build it with cargo build --bins (or set SLIPWAY_BIN)",
        path.display()
    );
    path
}

fn free_loopback_address() -> String {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("find a free port on 127.0.0.1");
    listener
        .local_addr()
        .expect("the free port's address")
        .to_string()
}

fn log_file(dir: &Path, name: &str) -> File {
    File::create(dir.join(name)).unwrap_or_else(|e| panic!("cannot create {name}: {e}"))
}
