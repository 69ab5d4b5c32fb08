//! Whether a build may push a tag, decided right before each push.
//!
//! The rule: a build never replaces a tag that a newer commit of the same ref holds. "Newer"
//! is decided by git ancestry in the build's mirror (arrival order only when git cannot tell,
//! after a rewritten history), and a build waits while an older holder's push is still under
//! way, so that the newer image is the one that lands last. The store takes the tag with a
//! compare-and-set on its holder, so two builds deciding at once cannot both win.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use crate::BuildError;
use crate::git::{Relation, relation};

/// A boxed future, as the guard's methods return them.
pub type GuardFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BuildError>> + Send + 'a>>;

/// Who holds a tag, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagHolder {
    pub build_id: String,
    pub git_ref: String,
    pub commit: String,
    pub queued_at: i64,
    /// Whether the holder has finished pushing the tag.
    pub pushed: bool,
    /// Whether the holder's build still runs (and so may still push).
    pub running: bool,
}

/// The store's side of tag ownership, and whether the build was cancelled.
pub trait PushGuard: Send + Sync {
    /// This build's id, ref, commit and queue time.
    fn me(&self) -> (&str, &str, &str, i64);
    fn cancelled(&self) -> GuardFuture<'_, bool>;
    fn holder<'a>(&'a self, tag: &'a str) -> GuardFuture<'a, Option<TagHolder>>;
    /// Takes the tag if its holder is still `expected`.
    fn take<'a>(&'a self, tag: &'a str, expected: Option<&'a str>) -> GuardFuture<'a, bool>;
    fn pushed<'a>(&'a self, tag: &'a str) -> GuardFuture<'a, ()>;
}

/// How long a build waits for an older holder to finish pushing before giving up.
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(500);

/// `Ok(None)`: the tag is this build's to push now. `Ok(Some(reason))`: it must not push it.
pub async fn may_push(
    guard: &dyn PushGuard,
    mirror: &Path,
    tag: &str,
) -> Result<Option<String>, BuildError> {
    let (my_id, my_ref, my_commit, my_queued_at) = guard.me();
    let deadline = tokio::time::Instant::now() + WAIT_FOR_HOLDER;
    loop {
        if guard.cancelled().await? {
            return Ok(Some("the build was cancelled".to_owned()));
        }
        let holder = guard.holder(tag).await?;
        let Some(holder) = holder else {
            if guard.take(tag, None).await? {
                return Ok(None);
            }
            continue;
        };
        if holder.build_id == my_id {
            return Ok(None);
        }
        let holds_content = holder.pushed || holder.running;
        if holder.git_ref == my_ref && holder.commit != my_commit && holds_content {
            let (mirror, mine, theirs) = (
                mirror.to_path_buf(),
                my_commit.to_owned(),
                holder.commit.clone(),
            );
            let related = tokio::task::spawn_blocking(move || relation(&mirror, &mine, &theirs))
                .await
                .unwrap_or(Relation::Unknown);
            let newer = match related {
                Relation::Ancestor => true,
                Relation::Descendant | Relation::Same => false,
                // A rewritten history (or a commit this mirror lacks): the later push wins.
                Relation::Unrelated | Relation::Unknown => holder.queued_at > my_queued_at,
            };
            if newer {
                let short = &holder.commit[..holder.commit.len().min(12)];
                return Ok(Some(format!(
                    "build {} of the newer commit {short} already pushed this tag",
                    holder.build_id
                )));
            }
        }
        // An older build is still pushing this tag: wait, so that ours lands after it.
        if holder.running && !holder.pushed {
            if tokio::time::Instant::now() > deadline {
                return Err(BuildError::infrastructure(format!(
                    "build {} held the tag {tag} without finishing its push for 10 minutes",
                    holder.build_id
                )));
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        if guard.take(tag, Some(&holder.build_id)).await? {
            return Ok(None);
        }
    }
}
