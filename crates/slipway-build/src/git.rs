//! Fetching one commit into a bare mirror and checking it out, with git2.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, build::CheckoutBuilder,
};
use slipway_core::Secret;

use crate::{BuildError, BuildLog};

/// Where to fetch from and how to authenticate; always from configuration.
#[derive(Debug, Clone)]
pub struct GitSource {
    pub url: String,
    pub auth: GitAuth,
    /// The SSH server's host key fingerprint, `SHA256:<base64>` as `ssh-keygen -lf` prints
    /// it. When set, only that key is accepted; when unset, `~/.ssh/known_hosts` decides.
    pub ssh_host_key: Option<String>,
}

#[derive(Debug, Clone)]
pub enum GitAuth {
    None,
    /// HTTP(S) basic authentication (a token is a password here).
    Basic {
        username: String,
        password: Secret,
    },
    /// SSH with a private key file (a deploy key).
    SshKey {
        username: String,
        private_key: PathBuf,
        passphrase: Option<Secret>,
    },
}

/// The URL with any `user:password@` removed, for logs, labels and error messages.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// What to bring into which mirror.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    pub mirror: &'a Path,
    pub source: &'a GitSource,
    /// The full ref to fetch.
    pub git_ref: &'a str,
    /// The commit (or annotated tag object) to check out.
    pub commit: &'a str,
    /// The ref's previous commit, to list the files changed since.
    pub before: Option<&'a str>,
    /// Fetch the ref even when the commit is already in the mirror (to see the ref's current
    /// tip).
    pub always_fetch: bool,
}

/// What a checkout found out about the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOut {
    /// The commit that was checked out (an annotated tag peeled to its commit).
    pub commit: String,
    /// Its full message.
    pub message: String,
    /// The files changed between `before` and the commit (both sides of a rename), when a
    /// `before` was given and is known; `None` when it is not (a new ref, a forced push whose
    /// old commit never reached the mirror).
    pub changed_files: Option<Vec<String>>,
}

/// Brings `commit` into the bare mirror at `mirror` (creating it on first use), then checks
/// its tree out into `dest`. With `before`, also lists the files changed since it. Runs on a
/// blocking thread.
pub fn fetch_and_checkout(
    request: &Fetch<'_>,
    dest: &Path,
    log: &BuildLog,
) -> Result<CheckedOut, BuildError> {
    let Fetch {
        mirror,
        source,
        git_ref,
        commit,
        before,
        always_fetch,
    } = *request;
    let public_url = strip_credentials(&source.url);
    let oid = Oid::from_str(commit)
        .map_err(|_| BuildError::user(format!("{commit:?} is not a commit id")))?;
    let repo = open_or_init_mirror(mirror)?;
    crate::janitor::touch_mirror(mirror);

    if repo.find_object(oid, None).is_ok() && !always_fetch {
        log.blocking_line(format!(
            "git: {} already in the mirror, no fetch needed",
            short(commit)
        ));
    } else {
        log.blocking_line(format!("git: fetching {git_ref} from {public_url}"));
        let refspec = format!("+{git_ref}:{git_ref}");
        fetch(&repo, source, &[refspec.as_str()], &public_url)?;
        if repo.find_object(oid, None).is_err() {
            // The ref may have moved on since the push; the commit can still be reachable from
            // another branch or tag.
            log.blocking_line(format!(
                "git: {} is no longer at {git_ref}; fetching all branches and tags",
                short(commit)
            ));
            fetch(
                &repo,
                source,
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                &public_url,
            )?;
        }
    }

    let object = repo.find_object(oid, None).map_err(|_| {
        BuildError::user(format!(
            "commit {commit} is not in {public_url} (was the push rewritten?)"
        ))
    })?;
    let commit_object = object.peel(ObjectType::Commit).map_err(|e| {
        BuildError::user(format!("{commit} does not name a commit: {}", e.message()))
    })?;
    let commit_id = commit_object.id().to_string();
    if commit_id != commit {
        log.blocking_line(format!(
            "git: tag object {} points at commit {}",
            short(commit),
            short(&commit_id)
        ));
    }
    let tree = commit_object.peel_to_tree().map_err(|e| {
        BuildError::infrastructure(format!(
            "cannot read the tree of {commit_id}: {}",
            e.message()
        ))
    })?;

    let mut checkout = CheckoutBuilder::new();
    checkout
        .target_dir(dest)
        .force()
        .recreate_missing(true)
        .update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut checkout))
        .map_err(|e| {
            BuildError::infrastructure(format!("checkout of {commit_id} failed: {}", e.message()))
        })?;
    log.blocking_line(format!("git: checked out {commit_id}"));
    let message = commit_object
        .as_commit()
        .and_then(|c| c.message().ok().map(str::to_owned))
        .unwrap_or_default();
    let changed_files = before.and_then(|before| changed_files(&repo, before, &tree));
    Ok(CheckedOut {
        commit: commit_id,
        message,
        changed_files,
    })
}

/// The paths that differ between `before`'s tree and `tree`, or `None` when `before` is not
/// in the mirror.
fn changed_files(repo: &Repository, before: &str, tree: &git2::Tree<'_>) -> Option<Vec<String>> {
    let old = repo
        .find_object(Oid::from_str(before).ok()?, None)
        .ok()?
        .peel_to_tree()
        .ok()?;
    let diff = repo.diff_tree_to_tree(Some(&old), Some(tree), None).ok()?;
    let mut files = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path().and_then(|p| p.to_str())
                && !files.iter().any(|f| f == path)
            {
                files.push(path.to_owned());
            }
        }
    }
    Some(files)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn open_or_init_mirror(mirror: &Path) -> Result<Repository, BuildError> {
    let opened = if mirror.exists() {
        Repository::open_bare(mirror)
    } else {
        if let Some(parent) = mirror.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                BuildError::infrastructure(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        Repository::init_bare(mirror)
    };
    opened.map_err(|e| {
        BuildError::infrastructure(format!(
            "cannot open the mirror {}: {}",
            mirror.display(),
            e.message()
        ))
    })
}

fn fetch(
    repo: &Repository,
    source: &GitSource,
    refspecs: &[&str],
    public_url: &str,
) -> Result<(), BuildError> {
    let mut remote = repo
        .remote_anonymous(&source.url)
        .map_err(|e| BuildError::user(format!("invalid git URL {public_url}: {}", e.message())))?;
    let host_key_refusal = HostKeyRefusal::default();
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks(source, &host_key_refusal))
        .download_tags(AutotagOption::None);
    remote
        .fetch(refspecs, Some(&mut options), None)
        .map_err(|e| describe_git_error(&e, "git fetch", source, public_url, &host_key_refusal))
}

/// The branches and tags a remote has, as (full ref, object id) pairs: `git ls-remote`, with
/// the repository's configured credentials. An annotated tag's id is the tag object's.
pub fn remote_refs(source: &GitSource) -> Result<Vec<(String, String)>, BuildError> {
    let public_url = strip_credentials(&source.url);
    let mut remote = git2::Remote::create_detached(source.url.as_str())
        .map_err(|e| BuildError::user(format!("invalid git URL {public_url}: {}", e.message())))?;
    let host_key_refusal = HostKeyRefusal::default();
    let connection = remote
        .connect_auth(
            git2::Direction::Fetch,
            Some(callbacks(source, &host_key_refusal)),
            None,
        )
        .map_err(|e| {
            describe_git_error(&e, "git ls-remote", source, &public_url, &host_key_refusal)
        })?;
    let heads = connection.list().map_err(|e| {
        describe_git_error(&e, "git ls-remote", source, &public_url, &host_key_refusal)
    })?;
    Ok(heads
        .iter()
        .filter(|head| {
            head.name().starts_with("refs/heads/") || head.name().starts_with("refs/tags/")
        })
        .filter(|head| !head.name().ends_with("^{}"))
        .map(|head| (head.name().to_owned(), head.oid().to_string()))
        .collect())
}

/// Where the host-key callback keeps its reason: libgit2 replaces the message of a refused
/// host key with its own generic one.
type HostKeyRefusal = Arc<Mutex<Option<String>>>;

/// Credentials and host-key checking for one remote operation.
fn callbacks(source: &GitSource, host_key_refusal: &HostKeyRefusal) -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    let auth = source.auth.clone();
    callbacks.credentials(move |_url, username_from_url, allowed| {
        // Over SSH without a user in the URL, libgit2 first asks only for a user name, then for
        // the key: that first question is not an attempt.
        if allowed == CredentialType::USERNAME {
            return credentials(&auth, username_from_url, allowed);
        }
        // libgit2 asks again after a refused attempt; answering the same credentials forever
        // would loop, so the second request ends the operation with an authentication error.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                "credentials were refused",
            ));
        }
        credentials(&auth, username_from_url, allowed)
    });
    if let Some(pinned) = source.ssh_host_key.clone() {
        let refusal = host_key_refusal.clone();
        callbacks.certificate_check(move |cert, host| {
            let Some(presented) = cert.as_hostkey().and_then(|key| key.hash_sha256()) else {
                // Not an SSH host key (an HTTPS certificate): the usual TLS checks apply.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let presented = format!("SHA256:{}", STANDARD_NO_PAD.encode(presented));
            if presented == pinned.trim_end_matches('=') {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                let reason = format!(
                    "the SSH host key of {host} is {presented}, not the configured {pinned}"
                );
                *refusal
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.clone());
                Err(git2::Error::new(
                    ErrorCode::Certificate,
                    ErrorClass::Ssh,
                    reason,
                ))
            }
        });
    }
    callbacks
}

/// Turns a libgit2 error into a build error whose kind says whose fault it is, with no
/// credential in its text.
fn describe_git_error(
    error: &git2::Error,
    operation: &str,
    source: &GitSource,
    public_url: &str,
    host_key_refusal: &HostKeyRefusal,
) -> BuildError {
    let detail = strip_url_credentials_in(error.message(), &source.url, public_url);
    if is_host_key_error(error) || error.code() == ErrorCode::Certificate {
        let reason = host_key_refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or(detail);
        return BuildError::user(format!(
            "{operation} from {public_url} failed: the server's identity could not be verified ({reason}); for SSH, set git_ssh_host_key to the fingerprint `ssh-keygen -lf` shows for the server's host key"
        ));
    }
    match (error.code(), error.class()) {
        (ErrorCode::Auth, _) => BuildError::user(format!(
            "{operation} from {public_url} failed: authentication was refused ({detail})"
        )),
        (_, ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Os) => {
            BuildError::infrastructure(format!("{operation} from {public_url} failed: {detail}"))
        }
        _ => BuildError::user(format!("{operation} from {public_url} failed: {detail}")),
    }
}

/// A refused or unknown SSH host key: libgit2 reports it with class SSH and its own wording.
fn is_host_key_error(error: &git2::Error) -> bool {
    error.class() == ErrorClass::Ssh && error.message().contains("hostkey")
}

/// libgit2 messages can quote the URL it was given; make sure a credential in it never leaks.
fn strip_url_credentials_in(message: &str, url: &str, public_url: &str) -> String {
    message.replace(url, public_url)
}

fn credentials(
    auth: &GitAuth,
    username_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    match auth {
        GitAuth::Basic { username, password }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
        {
            Cred::userpass_plaintext(username, password.expose())
        }
        GitAuth::SshKey {
            username,
            private_key,
            passphrase,
        } if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key(
            username,
            None,
            private_key,
            passphrase.as_ref().map(Secret::expose),
        ),
        GitAuth::SshKey { username, .. } if allowed.contains(CredentialType::USERNAME) => {
            Cred::username(username)
        }
        _ if allowed.contains(CredentialType::USERNAME) => {
            Cred::username(username_from_url.unwrap_or("git"))
        }
        _ => Err(git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Http,
            "the server asks for credentials, and none of a kind it accepts are configured",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_userinfo_only() {
        assert_eq!(
            strip_credentials("http://bot:tok@127.0.0.1:9000/a/b.git"),
            "http://127.0.0.1:9000/a/b.git"
        );
        assert_eq!(
            strip_credentials("https://host/a@b.git"),
            "https://host/a@b.git"
        );
        assert_eq!(
            strip_credentials("ssh://git@host/x.git"),
            "ssh://host/x.git"
        );
        assert_eq!(strip_credentials("file:///srv/x.git"), "file:///srv/x.git");
    }
}

/// How commit `a` relates to commit `b` in a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Same,
    /// `a` is an ancestor of `b`: `b` is newer.
    Ancestor,
    /// `a` descends from `b`: `a` is newer.
    Descendant,
    /// Neither contains the other (a rewritten history).
    Unrelated,
    /// One of them is not in the mirror.
    Unknown,
}

/// Compares two commits (annotated tags are peeled) in the mirror at `mirror`.
pub fn relation(mirror: &Path, a: &str, b: &str) -> Relation {
    let Ok(repo) = Repository::open_bare(mirror) else {
        return Relation::Unknown;
    };
    let peel = |id: &str| -> Option<Oid> {
        let object = repo.find_object(Oid::from_str(id).ok()?, None).ok()?;
        Some(object.peel(ObjectType::Commit).ok()?.id())
    };
    let (Some(a), Some(b)) = (peel(a), peel(b)) else {
        return Relation::Unknown;
    };
    if a == b {
        return Relation::Same;
    }
    match (
        repo.graph_descendant_of(b, a),
        repo.graph_descendant_of(a, b),
    ) {
        (Ok(true), _) => Relation::Ancestor,
        (_, Ok(true)) => Relation::Descendant,
        (Ok(false), Ok(false)) => Relation::Unrelated,
        _ => Relation::Unknown,
    }
}

/// Whether `commit` is the tip of `git_ref` in the mirror or one of its ancestors: a build of a
/// named commit (from a trigger) must be on the ref it names.
pub fn on_ref(mirror: &Path, git_ref: &str, commit: &str) -> bool {
    let Ok(repo) = Repository::open_bare(mirror) else {
        return false;
    };
    let Ok(tip) = repo.refname_to_id(git_ref) else {
        return false;
    };
    let tip = repo
        .find_object(tip, None)
        .and_then(|o| o.peel(ObjectType::Commit))
        .map(|c| c.id());
    let commit = Oid::from_str(commit)
        .and_then(|id| repo.find_object(id, None))
        .and_then(|o| o.peel(ObjectType::Commit))
        .map(|c| c.id());
    match (tip, commit) {
        (Ok(tip), Ok(commit)) => {
            tip == commit || repo.graph_descendant_of(tip, commit).unwrap_or(false)
        }
        _ => false,
    }
}
