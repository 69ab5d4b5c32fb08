//! A private PostgreSQL cluster that a test can stop and start again, unlike the rig's shared
//! one, which no test may disturb. It is made with `initdb` and run with `pg_ctl` as the
//! `postgres` OS user (the server refuses to run as root), in a directory under /tmp that the
//! `postgres` user can reach.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::command;
use crate::registry_server::free_port;

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// A cluster listening on `127.0.0.1:<port>` with one database, `slipway`, owned by a role
/// that logs in with a password over TCP, as Slipway's would. The port and the data stay the
/// same across [`PostgresCluster::stop`] and [`PostgresCluster::start_again`].
#[derive(Debug)]
pub struct PostgresCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    running: bool,
}

impl PostgresCluster {
    /// Initialises a cluster, starts it and creates the role and database. Durability is off:
    /// the cluster holds one test's throwaway data.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`PostgresCluster::start`] with PostgreSQL's default durability (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on), so that a commit is on disk when the
    /// server says so, as in production: what the benchmarks measure against.
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let bin = server_bindir();
        // The postgres user must be able to traverse every parent directory; /tmp allows it,
        // and the directory itself is opened up below.
        let dir = TempDir::with_prefix_in("slipway-e2e-pg-", "/tmp")
            .expect("create the cluster's directory under /tmp");
        run(Command::new("chmod").arg("0755").arg(dir.path()));
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
            password: format!("pw{}", uuid::Uuid::new_v4().simple()),
            running: false,
        };
        for (path, mode) in [(cluster.data_dir(), "0700"), (cluster.run_dir(), "0755")] {
            run(Command::new("install")
                .args(["-d", "-o", "postgres", "-g", "postgres", "-m", mode])
                .arg(path));
        }
        cluster.as_postgres(&cluster.bin.join("initdb"), |command| {
            command
                .arg("-D")
                .arg(cluster.data_dir())
                .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
                .args(["--auth-local=peer", "--auth-host=scram-sha-256"]);
        });
        let durability = if durable {
            "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
        } else {
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        };
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = 100\n{durability}",
            cluster.port,
            cluster.run_dir().display()
        );
        let conf = cluster.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        // Written as root, the file keeps its owner (postgres).
        std::fs::write(&conf, text).expect("write postgresql.conf");

        let mut cluster = cluster;
        cluster.start_again();
        // CREATEDB lets the benchmarks make a fresh database per measurement.
        let create_role = format!(
            "CREATE ROLE slipway LOGIN CREATEDB PASSWORD '{}'",
            cluster.password
        );
        cluster.as_postgres(&cluster.bin.join("psql"), |command| {
            command
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(cluster.run_dir())
                .args(["-p", &cluster.port.to_string(), "-d", "postgres"])
                .args(["-c", &create_role])
                .args(["-c", "CREATE DATABASE slipway OWNER slipway"]);
        });
        cluster
    }

    /// `postgres://slipway:…@127.0.0.1:<port>/slipway`, for `--database-url`.
    pub fn url(&self) -> String {
        format!(
            "postgres://slipway:{}@127.0.0.1:{}/slipway",
            self.password, self.port
        )
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "the private cluster is already running");
        let log = self.run_dir().join("postgres.log");
        self.pg_ctl(|command| {
            command.arg("-l").arg(&log).arg("start");
        });
        self.running = true;
    }

    /// Stops the server in `fast` mode: open connections are ended at once (clients see them
    /// fail) and new ones are refused until [`PostgresCluster::start_again`].
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    /// Stops the server in `immediate` mode, as a crash would: no checkpoint, connections cut.
    pub fn crash(&mut self) {
        self.stop_with("immediate");
    }

    fn stop_with(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        self.pg_ctl(|command| {
            command.args(["-m", mode, "stop"]);
        });
        self.running = false;
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("postgres.log")).unwrap_or_default()
    }

    fn pg_ctl(&self, arguments: impl FnOnce(&mut Command)) {
        self.as_postgres(&self.bin.join("pg_ctl"), |command| {
            command
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-s"]);
            arguments(command);
        });
    }

    /// Runs `program` as the `postgres` OS user, from `/` so that the PostgreSQL tools do not
    /// trip over a working directory they cannot read; fails the test unless it succeeds.
    fn as_postgres(&self, program: &Path, arguments: impl FnOnce(&mut Command)) {
        let mut command = Command::new("runuser");
        command
            .current_dir("/")
            .args(["-u", "postgres", "--"])
            .arg(program)
            // The server must not inherit the tests' database settings.
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT");
        arguments(&mut command);
        let output = command::output(&mut command);
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}{}\nserver log:\n{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- private PostgreSQL log ----\n{}\n---- end of private PostgreSQL log ----",
                command::tail(&self.log(), 8000)
            );
        }
        if self.running {
            // pg_ctl stops exactly the server of this data directory.
            let stopped = Command::new("runuser")
                .current_dir("/")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "30", "-s", "-m", "immediate", "stop"])
                .output();
            if !matches!(&stopped, Ok(output) if output.status.success()) {
                eprintln!("could not stop the private PostgreSQL cluster: {stopped:?}");
            }
            self.running = false;
        }
        // Give the server's processes a moment to let go of the directory.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The newest PostgreSQL server's binaries, not Debian's wrappers in /usr/bin (which route
/// commands to the system's clusters).
fn server_bindir() -> PathBuf {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("read /usr/lib/postgresql (install the postgresql package; see scripts/rig)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server under /usr/lib/postgresql")
}

fn run(command: &mut Command) {
    command::run(command);
}
