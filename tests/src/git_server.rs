//! A smart-HTTP git server that really runs `git http-backend` for every request, behind HTTP
//! Basic authentication, plus helpers to put commits and tags into its repositories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::io::ReaderStream;

use crate::git::{Git, git_output};

/// One request the server answered, for assertions and for diagnosing a failed clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The user name of a request that authenticated, `None` for one that did not.
    pub user: Option<String>,
    /// The request's `Content-Encoding`, such as `gzip` for a large fetch negotiation.
    pub content_encoding: Option<String>,
    pub status: u16,
}

/// The server's shared state: where repositories live, who may read them, and what was asked.
#[derive(Debug)]
struct ServerState {
    project_root: PathBuf,
    username: String,
    password: String,
    requests: Mutex<Vec<RequestRecord>>,
}

/// A git server on `127.0.0.1:<ephemeral port>`. It runs on a private tokio runtime in a
/// background thread, so it serves while the test thread blocks; dropping it stops the server
/// and removes its repositories.
#[derive(Debug)]
pub struct GitHttpServer {
    address: SocketAddr,
    state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Declared last so that the directory outlives the server thread, which is joined on drop.
    root: TempDir,
}

impl GitHttpServer {
    /// Starts a server that only answers requests carrying these Basic credentials.
    pub fn start(username: &str, password: &str) -> Self {
        let root =
            TempDir::with_prefix("slipway-e2e-git-").expect("create the git server's directory");
        let state = Arc::new(ServerState {
            project_root: root.path().to_path_buf(),
            username: username.to_owned(),
            password: password.to_owned(),
            requests: Mutex::new(Vec::new()),
        });
        // Binding here, on the caller's thread, makes the port known before start returns.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the git server to 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("make the git server's socket non-blocking");
        let address = listener.local_addr().expect("the git server's address");
        let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name("git-http-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("start the git server's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("adopt the git server's socket");
                    let serve = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    );
                    // Stopping abruptly is deliberate: an idle keep-alive connection from a
                    // client must not hold up the end of a test.
                    tokio::select! {
                        result = serve => result.expect("the git server failed"),
                        _ = shutdown_signal => {}
                    }
                });
            })
            .expect("spawn the git server's thread");
        Self {
            address,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
            root,
        }
    }

    /// `http://127.0.0.1:PORT`, without credentials.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The user name the server accepts.
    pub fn username(&self) -> &str {
        &self.state.username
    }

    /// The password the server accepts.
    pub fn password(&self) -> &str {
        &self.state.password
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state
            .requests
            .lock()
            .expect("the request log is not poisoned")
            .clone()
    }

    /// Creates the bare repository `<root>/<name>.git` (for a name such as `acme/web`) and a
    /// work tree to commit from.
    pub fn create_repo(&self, name: &str) -> RepoHandle {
        let bare = self.root.path().join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).expect("create the bare repository's directory");
        Git::new(&bare).run(&["init", "--quiet", "--bare", "--initial-branch=main"]);
        let work_dir =
            TempDir::with_prefix("slipway-e2e-worktree-").expect("create a work tree directory");
        let work = Git::new(work_dir.path());
        work.run(&["init", "--quiet", "--initial-branch=main"]);
        work.run(&["remote", "add", "origin", path_str(&bare)]);
        RepoHandle {
            name: name.to_owned(),
            url: format!("{}/{name}.git", self.base_url()),
            bare,
            work_dir,
        }
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already have stopped after a failure; that is fine here.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the git server's thread panicked");
        }
    }
}

/// One entry of a commit: a file with contents, or a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFile {
    Text { path: String, contents: String },
    Symlink { path: String, target: String },
}

impl RepoFile {
    pub fn text(path: &str, contents: &str) -> Self {
        Self::Text {
            path: path.to_owned(),
            contents: contents.to_owned(),
        }
    }

    /// A symbolic link at `path` pointing at `target`, stored as git stores links.
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Text { path, .. } | Self::Symlink { path, .. } => path,
        }
    }
}

/// The two ids of an annotated tag: the tag object (what a forge reports as `after` in a tag
/// push) and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagIds {
    pub tag_object: String,
    pub commit: String,
}

/// What a push payload says about a commit, read from the repository itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: String,
    pub tree_id: String,
    pub message: String,
    /// The committer date in ISO 8601 with offset, as GitHub writes it.
    pub timestamp: String,
    pub author_name: String,
    pub author_email: String,
}

/// A repository on a [`GitHttpServer`]. Commits are made in a private work tree and pushed to
/// the bare repository by file path, so the HTTP side is only ever used by the code under test.
#[derive(Debug)]
pub struct RepoHandle {
    name: String,
    url: String,
    bare: PathBuf,
    work_dir: TempDir,
}

impl RepoHandle {
    /// The repository's name, such as `acme/web`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT/<name>.git`, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with `user:password@` in it, as the git CLI takes credentials.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        self.url
            .replacen("http://", &format!("http://{user}:{password}@"), 1)
    }

    /// The bare repository on disk.
    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// Writes `files` on top of the branch's current tree, commits them and pushes the branch
    /// (creating it from the current commit when it does not exist yet). Returns the full id of
    /// the new commit.
    pub fn commit_on(&self, branch: &str, message: &str, files: &[RepoFile]) -> String {
        let work = self.work();
        let local_branch = format!("refs/heads/{branch}");
        if work
            .output(&["rev-parse", "--verify", "--quiet", &local_branch])
            .status
            .success()
        {
            work.run(&["checkout", "--quiet", branch]);
        } else {
            // A new branch starts from whatever is checked out (nothing, in a new repository).
            work.run(&["checkout", "--quiet", "-b", branch]);
        }
        for file in files {
            let path = self.work_dir.path().join(file.path());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a directory in the work tree");
            }
            if path.symlink_metadata().is_ok() {
                std::fs::remove_file(&path).expect("replace a file in the work tree");
            }
            match file {
                RepoFile::Text { contents, .. } => {
                    std::fs::write(&path, contents).expect("write a file in the work tree")
                }
                RepoFile::Symlink { target, .. } => std::os::unix::fs::symlink(target, &path)
                    .expect("create a symlink in the work tree"),
            }
        }
        work.run(&["add", "--all"]);
        work.run(&["commit", "--quiet", "--allow-empty", "-m", message]);
        work.run(&["push", "--quiet", "origin", &format!("HEAD:{local_branch}")]);
        self.rev_parse(&local_branch)
    }

    /// [`RepoHandle::commit_on`] the `main` branch.
    pub fn commit(&self, message: &str, files: &[RepoFile]) -> String {
        self.commit_on("main", message, files)
    }

    /// Creates the annotated tag `name` on the head of `branch` and pushes it.
    pub fn tag_annotated(&self, name: &str, branch: &str, message: &str) -> TagIds {
        let work = self.work();
        work.run(&[
            "tag",
            "--annotate",
            "-m",
            message,
            name,
            &format!("refs/heads/{branch}"),
        ]);
        work.run(&["push", "--quiet", "origin", &format!("refs/tags/{name}")]);
        TagIds {
            tag_object: self.rev_parse(&format!("refs/tags/{name}")),
            commit: self.rev_parse(&format!("refs/tags/{name}^{{commit}}")),
        }
    }

    /// Deletes `branch` from the served repository, as `git push --delete` would.
    pub fn delete_branch(&self, branch: &str) {
        self.work().run(&[
            "push",
            "--quiet",
            "origin",
            "--delete",
            &format!("refs/heads/{branch}"),
        ]);
    }

    /// What the served repository's `git_ref` points at now (for an annotated tag, the tag
    /// object), or `None` when the ref does not exist.
    pub fn ref_target(&self, git_ref: &str) -> Option<String> {
        let output = Git::new(&self.bare).output(&["rev-parse", "--verify", "--quiet", git_ref]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The commit a revision resolves to, with what a push payload reports about it.
    pub fn commit_info(&self, revision: &str) -> CommitInfo {
        let commit = format!("{revision}^{{commit}}");
        let text = git_output(
            &self.bare,
            &[
                "show",
                "--no-patch",
                "--format=%H%n%T%n%cI%n%an%n%ae%n%B",
                &commit,
            ],
        );
        let mut lines = text.splitn(6, '\n');
        let mut next = || lines.next().unwrap_or_default().to_owned();
        CommitInfo {
            id: next(),
            tree_id: next(),
            timestamp: next(),
            author_name: next(),
            author_email: next(),
            message: next().trim_end().to_owned(),
        }
    }

    fn rev_parse(&self, revision: &str) -> String {
        git_output(&self.bare, &["rev-parse", "--verify", revision])
            .trim()
            .to_owned()
    }

    fn work(&self) -> Git {
        Git::new(self.work_dir.path())
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Answers one request: checks the credentials, then hands the request to `git http-backend`.
async fn handle(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let user = authenticated_user(&state, request.headers());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let content_encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = match &user {
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "authentication required\n",
        )
            .into_response(),
        Some(user) => run_http_backend(&state.project_root, user, peer, request)
            .await
            .unwrap_or_else(|error| {
                eprintln!("git http server: {method} {path}: {error:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}\n")).into_response()
            }),
    };
    let record = RequestRecord {
        method,
        path,
        query,
        user,
        content_encoding,
        status: response.status().as_u16(),
    };
    state
        .requests
        .lock()
        .expect("the request log is not poisoned")
        .push(record);
    response
}

/// The user name of a request with the right Basic credentials.
fn authenticated_user(state: &ServerState, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (user == state.username && password == state.password).then(|| user.to_owned())
}

/// Runs `git http-backend` as a CGI program: the request becomes its environment and standard
/// input, and its standard output becomes the response (CGI headers, a blank line, the body).
async fn run_http_backend(
    project_root: &Path,
    user: &str,
    peer: SocketAddr,
    request: Request,
) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let header_text = |name: HeaderName| -> String {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", format!("{:?}", parts.version))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Without CONTENT_LENGTH (a chunked request) http-backend reads its input to the end.
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        command.env("CONTENT_LENGTH", length.to_str()?);
    }
    // http-backend inflates a gzip-encoded request body itself when told about it.
    if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING) {
        command.env("HTTP_CONTENT_ENCODING", encoding.to_str()?);
    }
    if let Some(protocol) = parts.headers.get("git-protocol") {
        command.env("HTTP_GIT_PROTOCOL", protocol.to_str()?);
    }
    let mut child = command.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("http-backend has no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("http-backend has no stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("http-backend has no stderr"))?;

    // The body is fed from its own task so that a large request and a large response cannot
    // wait on each other. Write errors mean http-backend stopped reading; its answer says why.
    tokio::spawn(async move {
        let mut body = body;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("git http-backend: {line}");
        }
    });
    tokio::spawn(async move {
        let _ = child.wait().await;
    });

    let mut stdout = BufReader::new(stdout);
    let mut response = Response::builder();
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).await? == 0 {
            anyhow::bail!("http-backend ended before the end of its CGI headers");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("malformed CGI header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            response = response.status(StatusCode::from_bytes(code.as_bytes())?);
        } else {
            response = response.header(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
        }
    }
    // The BufReader hands out whatever it already buffered before reading on.
    Ok(response.body(Body::from_stream(ReaderStream::new(stdout)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_tags_and_reads_back_what_a_payload_needs() {
        let server = GitHttpServer::start("bot", "secret");
        let repo = server.create_repo("acme/web");
        assert_eq!(repo.url(), format!("{}/acme/web.git", server.base_url()));
        let first = repo.commit("First\n\nWith a body.", &[RepoFile::text("a.txt", "a\n")]);
        assert_eq!(first.len(), 40, "a full commit id: {first}");
        let info = repo.commit_info(&first);
        assert_eq!(info.id, first);
        assert_eq!(info.message, "First\n\nWith a body.");
        assert_eq!(info.tree_id.len(), 40);
        assert!(
            info.timestamp.contains('T'),
            "an ISO 8601 date: {}",
            info.timestamp
        );

        let tag = repo.tag_annotated("v1.0.0", "main", "Release");
        assert_eq!(tag.commit, first);
        assert_ne!(
            tag.tag_object, first,
            "an annotated tag is an object of its own"
        );
        assert_eq!(
            repo.ref_target("refs/tags/v1.0.0").as_deref(),
            Some(tag.tag_object.as_str())
        );

        let feature = repo.commit_on(
            "feature",
            "Feature",
            &[RepoFile::symlink("link", "/etc/passwd")],
        );
        assert_eq!(
            repo.ref_target("refs/heads/feature").as_deref(),
            Some(feature.as_str())
        );
        repo.delete_branch("feature");
        assert_eq!(repo.ref_target("refs/heads/feature"), None);
        assert_eq!(
            repo.ref_target("refs/heads/main").as_deref(),
            Some(first.as_str())
        );

        // Going back to main continues main, not the feature branch.
        let second = repo.commit("Second", &[RepoFile::text("b.txt", "b\n")]);
        assert_eq!(repo.commit_info(&second).message, "Second");
        let parent = git_output(repo.bare_path(), &["rev-parse", &format!("{second}^")]);
        assert_eq!(parent.trim(), first);
    }

    #[test]
    fn git_cli_clones_only_with_the_right_credentials() {
        let server = GitHttpServer::start("bot", "s3cret");
        let repo = server.create_repo("acme/web");
        let commit = repo.commit(
            "Add files",
            &[
                RepoFile::text("README", "hello\n"),
                RepoFile::symlink("link", "README"),
            ],
        );
        let target = TempDir::new().expect("temp dir");

        let clone = |url: &str, name: &str| {
            Git::new(target.path()).output(&["clone", "--quiet", url, name])
        };

        let anonymous = clone(repo.url(), "anonymous");
        assert!(
            !anonymous.status.success(),
            "a clone without credentials must fail"
        );
        let wrong = clone(&repo.url_with_credentials("bot", "wrong"), "wrong");
        assert!(
            !wrong.status.success(),
            "a clone with a wrong password must fail"
        );
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.status == 401 && r.user.is_none()),
            "every refused request is a 401 challenge: {:#?}",
            server.requests()
        );

        let good = clone(&repo.url_with_credentials("bot", "s3cret"), "good");
        assert!(
            good.status.success(),
            "clone failed: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        let checkout = target.path().join("good");
        assert_eq!(
            std::fs::read_to_string(checkout.join("README")).expect("README"),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_link(checkout.join("link")).expect("link"),
            Path::new("README")
        );
        assert_eq!(git_output(&checkout, &["rev-parse", "HEAD"]).trim(), commit);
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.user.as_deref() == Some("bot")
                    && r.path == "/acme/web.git/git-upload-pack"
                    && r.status == 200),
            "the pack came from http-backend: {:#?}",
            server.requests()
        );

        // A fetch with many local refs makes git gzip its request body, which http-backend has
        // to inflate; a hundred "have" lines are well past git's threshold for that.
        let checkout_git = Git::new(&checkout);
        for i in 0..100 {
            checkout_git.run(&[
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                &format!("local {i}"),
            ]);
            checkout_git.run(&["tag", &format!("local-{i}")]);
        }
        repo.commit("More", &[RepoFile::text("more.txt", "more\n")]);
        let fetched = checkout_git.output(&["fetch", "--quiet", "origin"]);
        assert!(
            fetched.status.success(),
            "fetch failed: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.content_encoding.as_deref() == Some("gzip") && r.status == 200),
            "a gzip-encoded negotiation was answered: {:#?}",
            server.requests()
        );
        assert_eq!(
            git_output(&checkout, &["rev-parse", "origin/main"]).trim(),
            repo.ref_target("refs/heads/main").expect("main exists")
        );
    }

    /// libgit2 is what the worker clones with: it sends credentials only after a 401 challenge,
    /// and must be able to peel an annotated tag it fetched.
    #[test]
    fn libgit2_clones_after_the_challenge_and_peels_tags() {
        let server = GitHttpServer::start("bot", "s3cret");
        let repo = server.create_repo("acme/api");
        let commit = repo.commit("Add", &[RepoFile::text("Dockerfile", "FROM scratch\n")]);
        let tag = repo.tag_annotated("v1.2.3", "main", "Release 1.2.3");
        let target = TempDir::new().expect("temp dir");

        let asked = std::cell::Cell::new(0);
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(|_url, _user, _allowed| {
            asked.set(asked.get() + 1);
            git2::Cred::userpass_plaintext("bot", "s3cret")
        });
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(callbacks);
        let cloned = git2::build::RepoBuilder::new()
            .fetch_options(fetch)
            .clone(repo.url(), target.path())
            .expect("libgit2 clones with credentials");
        assert!(asked.get() >= 1, "libgit2 was asked for credentials");
        let head = cloned
            .head()
            .expect("HEAD")
            .peel_to_commit()
            .expect("a commit");
        assert_eq!(head.id().to_string(), commit);
        let tag_object = cloned
            .revparse_single("refs/tags/v1.2.3")
            .expect("the tag was fetched");
        assert_eq!(tag_object.id().to_string(), tag.tag_object);
        let peeled = tag_object
            .peel_to_commit()
            .expect("the tag peels to a commit");
        assert_eq!(peeled.id().to_string(), tag.commit);

        let requests = server.requests();
        assert_eq!(
            requests[0].status, 401,
            "the first request is challenged: {requests:#?}"
        );
        assert!(
            requests
                .iter()
                .any(|r| r.path.ends_with("/git-upload-pack") && r.status == 200),
            "the pack came from http-backend: {requests:#?}"
        );
    }

    #[test]
    fn unknown_repositories_are_not_found() {
        let server = GitHttpServer::start("bot", "pw");
        let target = TempDir::new().expect("temp dir");
        let url = format!("http://bot:pw@{}/nobody/nothing.git", server.address);
        let output = Git::new(target.path()).output(&["clone", "--quiet", &url, "x"]);
        assert!(!output.status.success());
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.user.is_some() && r.status == 404),
            "http-backend's own 404 comes through: {:#?}",
            server.requests()
        );
    }
}
