//! A stand-in for a Docker Engine that goes away: a unix socket that this test owns, relaying
//! every connection to the rig's engine. Stopping it cuts every relayed connection at once and
//! refuses new ones, which is what Slipway sees when its engine dies; the shared engine itself
//! is never touched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The rig's engine.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// The relay while it runs: the token that ends it and every task it started.
#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A relay from `<temp dir>/docker.sock` to the rig's engine, on a runtime of its own.
#[derive(Debug)]
pub struct DockerProxy {
    runtime: tokio::runtime::Runtime,
    dir: TempDir,
    running: Option<Running>,
    /// How many connections it has relayed, over all its runs.
    connections: Arc<Mutex<u64>>,
}

impl DockerProxy {
    /// Starts relaying.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("docker-proxy")
            .enable_all()
            .build()
            .expect("start the Docker proxy's runtime");
        let dir = TempDir::with_prefix("slipway-e2e-docker-proxy-")
            .expect("create the Docker proxy's directory");
        let mut proxy = Self {
            runtime,
            dir,
            running: None,
            connections: Arc::default(),
        };
        proxy.start_again();
        proxy
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `unix://<socket>`, for Slipway's `--docker-host`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// How many connections were relayed so far.
    pub fn connections(&self) -> u64 {
        *self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Listens (again) on the same path.
    pub fn start_again(&mut self) {
        assert!(
            self.running.is_none(),
            "the Docker proxy is already running"
        );
        let socket = self.socket();
        // A socket file left behind by the last run would make the bind fail.
        let _ = std::fs::remove_file(&socket);
        let listener = {
            let _entered = self.runtime.enter();
            UnixListener::bind(&socket)
                .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", socket.display()))
        };
        let stop = CancellationToken::new();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = self.runtime.spawn(accept_loop(
            listener,
            stop.clone(),
            tasks.clone(),
            self.connections.clone(),
        ));
        lock(&tasks).push(accept);
        self.running = Some(Running { stop, tasks });
    }

    /// Stops listening, removes the socket and cuts every relayed connection; returns once
    /// all of them are closed.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.cancel();
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&running.tasks));
        self.runtime.block_on(async {
            for handle in handles {
                let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
            }
        });
        let _ = std::fs::remove_file(self.socket());
    }

    /// The directory the socket is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(
    listener: UnixListener,
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    connections: Arc<Mutex<u64>>,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((inbound, _)) = accepted else {
            continue;
        };
        *lock(&connections) += 1;
        let relay = tokio::spawn(relay(inbound, stop.clone()));
        let mut tasks = lock(&tasks);
        tasks.retain(|task| !task.is_finished());
        tasks.push(relay);
    }
}

/// Copies both ways until either side closes or the proxy stops; on a stop both sockets are
/// dropped mid-stream, as they would be if the engine died.
async fn relay(mut inbound: UnixStream, stop: CancellationToken) {
    let Ok(mut outbound) = UnixStream::connect(ENGINE_SOCKET).await else {
        return;
    };
    tokio::select! {
        () = stop.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}
