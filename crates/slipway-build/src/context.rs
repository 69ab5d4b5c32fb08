//! The build context: where it is, and the tar stream the engine receives.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use slipway_core::dockerignore::DockerIgnore;
use slipway_core::paths::resolve_build_paths;
use tokio::sync::mpsc;

use crate::BuildError;

/// The name under which a Dockerfile that lies outside the context is added to the tar.
const INJECTED_DOCKERFILE: &str = ".slipway.Dockerfile";

/// A context and Dockerfile resolved on disk and confined to the checkout.
#[derive(Debug, Clone)]
pub struct PreparedContext {
    /// The context directory on disk (canonical).
    pub context_dir: PathBuf,
    /// The Dockerfile on disk (canonical).
    pub dockerfile_path: PathBuf,
    /// The context relative to the repository root, for the log.
    pub context_relative: PathBuf,
    /// The Dockerfile relative to the repository root, for the log and error messages.
    pub dockerfile_relative: PathBuf,
    /// The Dockerfile's name inside the tar, as the engine's `dockerfile` option wants it.
    pub dockerfile_in_tar: String,
    /// Whether the Dockerfile lies outside the context and must be added to the tar.
    pub inject_dockerfile: bool,
    /// The most file content the context may hold; more fails the build.
    pub max_bytes: u64,
}

/// Resolves the rule's `context` and `dockerfile` inside `checkout`, following symlinks, and
/// refuses anything that ends up outside it. Runs before the engine is called.
pub fn prepare_context(
    checkout: &Path,
    context: &str,
    dockerfile: &str,
) -> Result<PreparedContext, BuildError> {
    let paths = resolve_build_paths(context, dockerfile).map_err(BuildError::user)?;
    let root = checkout
        .canonicalize()
        .map_err(|e| BuildError::infrastructure(format!("cannot resolve the checkout: {e}")))?;

    let context_dir = confine(&root, &paths.context, "context")?;
    if !context_dir.is_dir() {
        return Err(BuildError::user(format!(
            "the build context {} is not a directory in the repository",
            shown(&paths.context)
        )));
    }
    let dockerfile_path = root.join(&paths.dockerfile);
    if dockerfile_path.symlink_metadata().is_err() {
        return Err(BuildError::user(format!(
            "Dockerfile not found at {} (context {}, dockerfile {dockerfile:?})",
            paths.dockerfile.display(),
            shown(&paths.context)
        )));
    }
    let dockerfile_path = confine(&root, &paths.dockerfile, "dockerfile")?;
    if !dockerfile_path.is_file() {
        return Err(BuildError::user(format!(
            "the Dockerfile {} is not a regular file",
            paths.dockerfile.display()
        )));
    }

    let (dockerfile_in_tar, inject_dockerfile) = match dockerfile_path.strip_prefix(&context_dir) {
        Ok(inside) => (slash_path(inside), false),
        Err(_) => (INJECTED_DOCKERFILE.to_owned(), true),
    };
    Ok(PreparedContext {
        context_dir,
        dockerfile_path,
        context_relative: paths.context,
        dockerfile_relative: paths.dockerfile,
        dockerfile_in_tar,
        inject_dockerfile,
        max_bytes: u64::MAX,
    })
}

fn shown(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "/".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Canonicalises `root/relative` and checks that it stays under `root`.
fn confine(root: &Path, relative: &Path, what: &str) -> Result<PathBuf, BuildError> {
    let joined = root.join(relative);
    let resolved = joined.canonicalize().map_err(|e| {
        BuildError::user(format!(
            "the {what} {} cannot be resolved in the repository: {e}",
            shown(relative)
        ))
    })?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(BuildError::user(format!(
            "the {what} {} resolves outside the repository checkout (through a symlink); refused before building",
            shown(relative)
        )))
    }
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes the context as a tar into a channel, piece by piece, on a blocking thread. The
/// returned receiver yields the tar's bytes; an error ends the stream early and is returned
/// by the join handle.
pub fn stream_context(
    prepared: PreparedContext,
) -> (
    mpsc::Receiver<Bytes>,
    tokio::task::JoinHandle<io::Result<u64>>,
) {
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    let handle = tokio::task::spawn_blocking(move || {
        write_context_tar(
            &prepared,
            ChannelWriter {
                sender,
                buffer: Vec::new(),
            },
        )
    });
    (receiver, handle)
}

/// Adapts a channel to `io::Write`, sending 64 KiB pieces.
struct ChannelWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

const PIECE: usize = 64 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buffer));
        self.sender.blocking_send(piece).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

/// The largest `.dockerignore` read; real ones are a few hundred bytes.
const MAX_DOCKERIGNORE: u64 = 1024 * 1024;

/// Reads `.dockerignore` only if it is a regular file of bounded size: a symlink could point
/// outside the checkout (or at `/dev/zero`), so it is refused, as the tar refuses to follow one.
fn read_dockerignore(path: &Path) -> io::Result<String> {
    let metadata = std::fs::symlink_metadata(path)?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            ".dockerignore must be a regular file, not a symlink",
        ));
    }
    if metadata.len() > MAX_DOCKERIGNORE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            ".dockerignore is larger than 1 MiB",
        ));
    }
    std::fs::read_to_string(path)
}

/// Writes the tar: every file under the context not excluded by `.dockerignore`, symlinks as
/// symlinks (never followed, so nothing outside the checkout is read), owners set to root and
/// times fixed so that identical content produces an identical tar.
fn write_context_tar(prepared: &PreparedContext, writer: ChannelWriter) -> io::Result<u64> {
    let ignore = match read_dockerignore(&prepared.context_dir.join(".dockerignore")) {
        Ok(text) => {
            DockerIgnore::parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(e),
    };
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut count = 0u64;
    let mut total = 0u64;
    let mut pending = vec![prepared.context_dir.clone()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path
                .strip_prefix(&prepared.context_dir)
                .map_err(io::Error::other)?;
            let name = slash_path(relative);
            let file_type = entry.file_type()?;
            // The Dockerfile and .dockerignore always travel, as the Docker CLI does it: the
            // engine needs the first, and the second is harmless.
            let always = name == prepared.dockerfile_in_tar || name == ".dockerignore";
            if !always && ignore.is_excluded(&name) {
                if file_type.is_dir() && ignore.has_exceptions() {
                    pending.push(path);
                }
                continue;
            }
            if file_type.is_dir() {
                builder.append_dir(&name, &path)?;
                pending.push(path);
            } else {
                if file_type.is_file() {
                    total = total.saturating_add(entry.metadata()?.len());
                    if total > prepared.max_bytes {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the build context holds more than the repository's max_context_size of {} MiB; exclude what the build does not need with .dockerignore",
                                prepared.max_bytes / (1024 * 1024)
                            ),
                        ));
                    }
                }
                builder.append_path_with_name(&path, &name)?;
            }
            count += 1;
        }
    }
    if prepared.inject_dockerfile {
        builder.append_path_with_name(&prepared.dockerfile_path, INJECTED_DOCKERFILE)?;
    }
    let mut writer = builder.into_inner()?;
    writer.flush()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn checkout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("app/sub")).expect("mkdir");
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").expect("write");
        fs::write(dir.path().join("app/sub/a.txt"), "a").expect("write");
        fs::write(dir.path().join("app/notes.md"), "n").expect("write");
        dir
    }

    #[test]
    fn resolves_inside_the_checkout() {
        let dir = checkout();
        let prepared = prepare_context(dir.path(), "/app", "Dockerfile").expect("prepares");
        assert_eq!(prepared.dockerfile_in_tar, "Dockerfile");
        assert!(!prepared.inject_dockerfile);
        let outside = prepare_context(dir.path(), "app", "../Dockerfile").expect("prepares");
        assert!(outside.inject_dockerfile);
    }

    #[test]
    fn missing_dockerfile_names_the_path() {
        let dir = checkout();
        let err = prepare_context(dir.path(), "/", "nope/Dockerfile").expect_err("missing");
        assert!(
            err.message
                .contains("Dockerfile not found at nope/Dockerfile"),
            "{}",
            err.message
        );
    }

    #[test]
    fn symlinks_out_of_the_checkout_are_refused() {
        let dir = checkout();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).expect("symlink");
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("Evil.Dockerfile"))
            .expect("symlink");
        let err = prepare_context(dir.path(), "escape", "Dockerfile").expect_err("escapes");
        assert!(
            err.message
                .contains("resolves outside the repository checkout"),
            "{}",
            err.message
        );
        let err = prepare_context(dir.path(), "/", "Evil.Dockerfile").expect_err("escapes");
        assert!(err.message.contains("outside"), "{}", err.message);
        assert!(prepare_context(dir.path(), "../..", "Dockerfile").is_err());
    }

    #[tokio::test]
    async fn a_symlinked_dockerignore_is_refused() {
        let dir = checkout();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("app/.dockerignore"))
            .expect("symlink");
        let prepared = prepare_context(dir.path(), "/app", "Dockerfile").expect("prepares");
        let (mut receiver, handle) = stream_context(prepared);
        while receiver.recv().await.is_some() {}
        let error = handle.await.expect("joins").expect_err("refused");
        assert!(error.to_string().contains("not a symlink"), "{error}");
    }

    #[tokio::test]
    async fn tar_honours_dockerignore_but_keeps_the_dockerfile() {
        let dir = checkout();
        fs::write(
            dir.path().join("app/.dockerignore"),
            "*.md\nDockerfile\nsub\n!sub/a.txt\n",
        )
        .expect("write");
        let prepared = prepare_context(dir.path(), "/app", "Dockerfile").expect("prepares");
        let (mut receiver, handle) = stream_context(prepared);
        let mut tar_bytes = Vec::new();
        while let Some(piece) = receiver.recv().await {
            tar_bytes.extend_from_slice(&piece);
        }
        handle.await.expect("joins").expect("writes");
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(names, vec![".dockerignore", "Dockerfile", "sub/a.txt"]);
    }
}
