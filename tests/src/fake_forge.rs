//! A stand-in for the HTTP APIs of third-party services (GitHub, GitLab, Bitbucket, Gitea and
//! the receivers of outgoing webhooks), which the tests cannot reach and must not depend on.
//!
//! [`FakeForge`] accepts any method on any path, records every request, and answers from a
//! queue that a test programs per path prefix, so a test can make a forge fail twice and then
//! succeed, answer slowly, or be down altogether. It runs the real HTTP/1.1 stack (axum on
//! hyper) on a private tokio runtime in a background thread, so keep-alive clients such as
//! reqwest behave exactly as they do against a real service, while the test thread blocks.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt as _;

/// How long [`FakeForge::restart`] keeps trying to bind the old port again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`FakeForge::wait_for_requests`] looks at the log again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How much of each body a panic message of [`FakeForge::wait_for_requests`] shows.
const BODY_PREVIEW: usize = 300;

/// One request the fake received, in the order it arrived.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent: the path with its query string, such as
    /// `/repos/acme/web/statuses/abc?x=1`.
    pub path: String,
    /// Every header in the order sent, with lower-cased names; a header sent twice appears
    /// twice. Values that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The body as text (converted lossily if it is not UTF-8); [`RecordedRequest::body_bytes`]
    /// holds the exact bytes, which is what signatures are computed over.
    pub body: String,
    pub body_bytes: Vec<u8>,
    /// When the fake had read the whole request.
    pub received_at: Instant,
    /// The status the fake answered (or, for a delayed answer, is about to answer) with.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of the header `name` (in any case), or `None` if it was not sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(&self.path, |(path, _)| path)
    }

    /// The body parsed as JSON; panics with the body if it is not JSON, because every API the
    /// fake stands in for takes JSON and a test asking for it expects some.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not JSON ({e}): {:?}",
                self.method, self.path, self.body
            )
        })
    }
}

// A hand-written Debug keeps failure messages readable: the exact bytes would repeat the body
// as a list of numbers.
impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("received_at", &self.received_at)
            .finish()
    }
}

/// One programmed answer: a status, a JSON (or any) body, and how long to wait before sending
/// it, to imitate a slow service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAnswer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl FakeAnswer {
    /// `status` with the body `{}` and no delay.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: "{}".to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// This answer with `body` instead.
    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// This answer, sent only after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What the fake knows; it lives across [`FakeForge::stop`] and [`FakeForge::restart`].
#[derive(Debug)]
struct ForgeState {
    requests: Vec<RecordedRequest>,
    /// Programmed answers per path prefix, each consumed from the front.
    queues: Vec<(String, VecDeque<FakeAnswer>)>,
    default_answer: FakeAnswer,
}

impl ForgeState {
    /// Takes the answer for `target`: the front of the queue with the longest prefix of
    /// `target` that still has answers, or else the default. The longest prefix wins so that a
    /// test can program one repository's statuses apart from a forge-wide queue.
    fn next_answer(&mut self, target: &str) -> FakeAnswer {
        let chosen = self
            .queues
            .iter_mut()
            .filter(|(prefix, queue)| target.starts_with(prefix.as_str()) && !queue.is_empty())
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, queue)| queue.pop_front());
        self.queues.retain(|(_, queue)| !queue.is_empty());
        chosen.unwrap_or_else(|| self.default_answer.clone())
    }
}

/// The server thread of one run of the fake, between a start and a stop.
#[derive(Debug)]
struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// A fake third-party HTTP API on `127.0.0.1:<free port>`.
///
/// Every request on any path is recorded and answered with the next programmed answer for the
/// longest matching path prefix ([`FakeForge::answer_next`]), or the default: `201` with `{}`
/// unless [`FakeForge::set_default`] says otherwise. [`FakeForge::stop`] makes the forge
/// "down" (connections are refused) and [`FakeForge::restart`] brings it back on the same
/// port with its log and queues intact. Dropping it stops the server thread.
#[derive(Debug)]
pub struct FakeForge {
    address: SocketAddr,
    state: Arc<Mutex<ForgeState>>,
    running: Option<Running>,
}

impl FakeForge {
    /// Starts a fake that answers `201 {}` to everything until programmed otherwise.
    pub fn start() -> Self {
        Self::start_with_default(FakeAnswer::status(201))
    }

    /// Starts a fake whose default answer is `default`.
    pub fn start_with_default(default: FakeAnswer) -> Self {
        checked_status(default.status);
        // Binding here, on the caller's thread, makes the port known before start returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind the fake forge to a free port on 127.0.0.1");
        let address = listener
            .local_addr()
            .expect("the fake forge's listening address");
        let state = Arc::new(Mutex::new(ForgeState {
            requests: Vec::new(),
            queues: Vec::new(),
            default_answer: default,
        }));
        let running = serve(listener, Arc::clone(&state));
        Self {
            address,
            state,
            running: Some(running),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The base URL followed by `path` (a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base_url())
        } else {
            format!("{}/{path}", self.base_url())
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Queues `statuses` (each with the body `{}`) for the next requests whose path starts
    /// with `path_prefix`; later requests get the default again. Queues for the same prefix
    /// add up.
    #[track_caller]
    pub fn answer_next(&self, path_prefix: &str, statuses: &[u16]) {
        let answers: Vec<FakeAnswer> = statuses.iter().copied().map(FakeAnswer::status).collect();
        self.answer_next_with(path_prefix, &answers);
    }

    /// [`FakeForge::answer_next`] with full answers: bodies and delays.
    #[track_caller]
    pub fn answer_next_with(&self, path_prefix: &str, answers: &[FakeAnswer]) {
        for answer in answers {
            checked_status(answer.status);
        }
        let mut state = self.lock();
        if let Some((_, queue)) = state
            .queues
            .iter_mut()
            .find(|(prefix, _)| prefix == path_prefix)
        {
            queue.extend(answers.iter().cloned());
        } else if !answers.is_empty() {
            state
                .queues
                .push((path_prefix.to_owned(), answers.iter().cloned().collect()));
        }
    }

    /// Answers `answer` to every request that nothing is queued for.
    #[track_caller]
    pub fn set_default(&self, answer: FakeAnswer) {
        checked_status(answer.status);
        self.lock().default_answer = answer;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The requests whose path (with query) starts with `path_prefix`, oldest first.
    pub fn requests_to(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Forgets every request received so far (the queues stay).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Waits until at least `count` requests to `path_prefix` have arrived and returns all of
    /// them (possibly more than `count`), oldest first. Panics after `timeout` with everything
    /// the fake received, so that a wrong path or a missing request is easy to tell apart.
    #[track_caller]
    pub fn wait_for_requests(
        &self,
        path_prefix: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let matching = self.requests_to(path_prefix);
            if matching.len() >= count {
                return matching;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the fake forge at {} received {} of {count} requests to {path_prefix:?} \
                     within {timeout:?}; everything it received:\n{}",
                    self.base_url(),
                    matching.len(),
                    describe(&self.requests())
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Takes the forge down: the listener is closed and every open connection (including
    /// idle keep-alive ones, which a client would otherwise reuse) is dropped, so from now on
    /// connections are refused. Requests still waiting for a delayed answer get none.
    #[track_caller]
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        // The thread may already have ended after a failure; joining reports that below.
        let _ = running.shutdown.send(());
        if running.thread.join().is_err() {
            panic!("the fake forge's server thread panicked");
        }
        assert!(
            std::net::TcpStream::connect(self.address).is_err(),
            "something still answers on the stopped fake forge's address {}",
            self.address
        );
    }

    /// Brings a stopped forge back on the same port, with its recorded requests and queues.
    /// Rust binds listeners with `SO_REUSEADDR`, so connections of the previous run lingering
    /// in `TIME_WAIT` do not block the port; only another process taking the free port in the
    /// meantime could, and that fails the test with an explanation.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "the fake forge is already running");
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match std::net::TcpListener::bind(self.address) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "cannot listen on {} again to restart the fake forge (another process may \
                     have taken the port while it was down): {e}",
                    self.address
                ),
            }
        };
        self.running = Some(serve(listener, Arc::clone(&self.state)));
    }

    fn lock(&self) -> MutexGuard<'_, ForgeState> {
        lock(&self.state)
    }
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
            if running.thread.join().is_err() && !std::thread::panicking() {
                panic!("the fake forge's server thread panicked");
            }
        }
    }
}

/// Locks the state even if a test thread panicked while holding it: the log is still the best
/// evidence of what happened.
fn lock(state: &Mutex<ForgeState>) -> MutexGuard<'_, ForgeState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fails the test at the caller if `status` cannot be sent as an HTTP status.
#[track_caller]
fn checked_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .unwrap_or_else(|_| panic!("{status} is not an HTTP status the fake forge can answer"))
}

/// Serves `listener` on a new thread with its own runtime until the returned handle's
/// shutdown fires.
fn serve(listener: std::net::TcpListener, state: Arc<Mutex<ForgeState>>) -> Running {
    listener
        .set_nonblocking(true)
        .expect("make the fake forge's socket non-blocking");
    let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
    let app = Router::new().fallback(handle).with_state(state);
    let thread = std::thread::Builder::new()
        .name("fake-forge".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("start the fake forge's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .expect("adopt the fake forge's socket");
                // Dropping the server future closes the listener; dropping the runtime when
                // this thread ends then drops every connection task, which closes idle
                // keep-alive connections too. That is what "the forge is down" must mean.
                tokio::select! {
                    result = axum::serve(listener, app) => {
                        result.expect("the fake forge's server failed");
                    }
                    _ = shutdown_signal => {}
                }
            });
        })
        .expect("spawn the fake forge's thread");
    Running { shutdown, thread }
}

/// Records the request and sends the answer programmed for it.
async fn handle(State(state): State<Arc<Mutex<ForgeState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body_bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        // The client went away mid-body; there is no one to answer and nothing to record.
        Err(_) => return plain_response(StatusCode::BAD_REQUEST, "incomplete body".to_owned()),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |target| target.to_string());
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Taking the answer and recording under one lock keeps the log in the order the answers
    // were handed out.
    let answer = {
        let mut state = lock(&state);
        let answer = state.next_answer(&path);
        state.requests.push(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path,
            headers,
            body: String::from_utf8_lossy(&body_bytes).into_owned(),
            body_bytes,
            received_at: Instant::now(),
            status: answer.status,
        });
        answer
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    plain_response(checked_status(answer.status), answer.body)
}

fn plain_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// One line per request (method, path, answer and the start of the body) for panic messages.
pub(crate) fn describe(requests: &[RecordedRequest]) -> String {
    if requests.is_empty() {
        return "  (nothing)".to_owned();
    }
    requests
        .iter()
        .map(|request| {
            let mut body: String = request.body.chars().take(BODY_PREVIEW).collect();
            if body.len() < request.body.len() {
                body.push('…');
            }
            format!(
                "  {} {} -> {}: {body}",
                request.method, request.path, request.status
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ForgeState {
        ForgeState {
            requests: Vec::new(),
            queues: Vec::new(),
            default_answer: FakeAnswer::status(201),
        }
    }

    #[test]
    fn the_longest_matching_prefix_with_answers_left_wins() {
        let mut state = state();
        state.queues.push((
            "/repos".to_owned(),
            VecDeque::from([FakeAnswer::status(500)]),
        ));
        state.queues.push((
            "/repos/acme/web".to_owned(),
            VecDeque::from([FakeAnswer::status(502)]),
        ));
        assert_eq!(state.next_answer("/repos/acme/web/statuses/1").status, 502);
        // The longer queue is used up, so the shorter prefix answers next.
        assert_eq!(state.next_answer("/repos/acme/web/statuses/1").status, 500);
        assert_eq!(state.next_answer("/repos/acme/web/statuses/1").status, 201);
        assert!(state.queues.is_empty(), "{:?}", state.queues);
    }

    #[test]
    fn requests_outside_every_prefix_get_the_default() {
        let mut state = state();
        state.queues.push((
            "/api/v4".to_owned(),
            VecDeque::from([FakeAnswer::status(500)]),
        ));
        assert_eq!(state.next_answer("/api/v1/repos").status, 201);
        assert_eq!(state.next_answer("/api/v4/projects").status, 500);
    }
}
