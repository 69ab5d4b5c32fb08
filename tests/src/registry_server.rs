//! A private Docker registry (Debian's `docker-registry`, the CNCF distribution) that a test
//! can stop and start again, unlike the rig's shared registries, which no test may disturb.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::command::send_signal;
use crate::registry::Registry;

/// The registry program the rig installs.
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// How long the registry may take to answer `GET /v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// An anonymous registry on `127.0.0.1:<port>` with its storage in a temporary directory. The
/// port and the storage stay the same across [`RegistryServer::stop`] and
/// [`RegistryServer::start_again`], so what was pushed before is still there afterwards.
/// The Docker Engine treats every `127.0.0.0/8` registry as insecure, so plain HTTP works.
#[derive(Debug)]
pub struct RegistryServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl RegistryServer {
    /// Writes a configuration for a free port and starts the registry.
    pub fn start() -> Self {
        let dir =
            TempDir::with_prefix("slipway-e2e-registry-").expect("create the registry's directory");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("create the registry's storage directory");
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: '{}'\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n",
            storage.display()
        );
        std::fs::write(dir.path().join("config.yml"), config)
            .expect("write the registry's configuration");
        let mut server = Self {
            dir,
            port,
            child: None,
        };
        server.start_again();
        server
    }

    /// `127.0.0.1:<port>`, as image names and Slipway's configuration write it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client for this registry (no credentials).
    pub fn client(&self) -> Registry {
        Registry::new(&self.host(), None)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the registry (again) on the same port with the same storage, and waits until it
    /// answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the registry is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the registry's log");
        let log_err = log.try_clone().expect("clone the registry's log handle");
        // distribution lets REGISTRY_* environment variables override its configuration (and
        // the tests' own environment may have such names), so it runs with an empty one.
        let child = Command::new(REGISTRY_BINARY)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY_BINARY} (is the rig installed?): {e}")
            });
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// Stops the registry (SIGTERM, then SIGKILL after five seconds) and waits until it is
    /// gone; pushes to it are refused from then on.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            send_signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        // Nothing may answer on the port any more.
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "something still answers on the stopped registry's port {}",
            self.port
        );
    }

    /// What the registry logged, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn wait_until_ready(&mut self) {
        let url = format!("http://{}/v2/", self.host());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("build an HTTP client");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait().ok().flatten()
            {
                self.child = None;
                panic!(
                    "the private registry exited ({status}) before it answered:\n{}",
                    self.log()
                );
            }
            if http
                .get(&url)
                .send()
                .is_ok_and(|response| response.status().as_u16() == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private registry did not answer {url} within {STARTUP_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The registry's directory (its configuration, storage and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        // Only the child this value started is killed, by its handle.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- private registry log ----\n{}\n---- end of private registry log ----",
                crate::command::tail(&self.log(), 8000)
            );
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port on 127.0.0.1")
        .port()
}
