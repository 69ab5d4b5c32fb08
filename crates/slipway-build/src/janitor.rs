//! Keeping a worker's disk bounded: git mirrors and built images are caches, so the least
//! recently used go first once a size limit is passed, and the dangling images Slipway's own
//! builds leave behind are pruned. Nothing is evicted while a build uses it, and nothing
//! Slipway did not make is touched on a shared engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bollard::query_parameters::{
    ListImagesOptionsBuilder, PruneImagesOptionsBuilder, RemoveImageOptionsBuilder,
};

use crate::{Engine, Workspace};

/// The label every image Slipway builds carries, naming the repository.
pub const REPOSITORY_LABEL: &str = "io.slipway.repository";

/// The file whose modification time records a mirror's last use.
const LAST_USED: &str = "slipway-last-used";

/// Records that the mirror at `mirror` was just used.
pub fn touch_mirror(mirror: &Path) {
    // A failure only makes this mirror look older to the janitor; the build goes on.
    let _ = std::fs::write(mirror.join(LAST_USED), b"");
}

/// What one clean-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub mirrors_removed: Vec<PathBuf>,
    pub images_removed: usize,
    pub bytes_freed: u64,
}

impl Workspace {
    /// Removes the least recently used mirrors until they take at most `limit` bytes, skipping
    /// any a build holds.
    pub fn evict_mirrors(&self, limit: u64) -> std::io::Result<Cleaned> {
        let mut mirrors = Vec::new();
        let Ok(owners) = std::fs::read_dir(&self.mirrors_dir) else {
            return Ok(Cleaned::default());
        };
        for owner in owners {
            let owner = owner?;
            if !owner.file_type()?.is_dir() {
                continue;
            }
            for mirror in std::fs::read_dir(owner.path())? {
                let path = mirror?.path();
                if path.extension().is_some_and(|e| e == "git") {
                    let last_used = std::fs::metadata(path.join(LAST_USED))
                        .or_else(|_| std::fs::metadata(&path))
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    mirrors.push((last_used, dir_size(&path), path));
                }
            }
        }
        let mut total: u64 = mirrors.iter().map(|(_, size, _)| size).sum();
        mirrors.sort_by_key(|(last_used, _, _)| *last_used);
        let mut cleaned = Cleaned::default();
        for (_, size, path) in mirrors {
            if total <= limit {
                break;
            }
            let lock = self.mirror_lock(&path);
            // A mirror a build is fetching into is in use; the next clean-up may take it.
            let Ok(_held) = lock.try_lock() else { continue };
            std::fs::remove_dir_all(&path)?;
            total = total.saturating_sub(size);
            cleaned.bytes_freed += size;
            cleaned.mirrors_removed.push(path);
        }
        Ok(cleaned)
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

impl Engine {
    /// Removes Slipway's dangling images, then its oldest images until they take at most
    /// `limit` bytes. Images in use by a container are left alone (the engine refuses them).
    pub async fn evict_images(&self, limit: u64) -> Cleaned {
        let mut cleaned = Cleaned::default();
        let ours = HashMap::from([("label", vec![REPOSITORY_LABEL])]);
        let mut dangling = ours.clone();
        dangling.insert("dangling", vec!["true"]);
        if let Ok(pruned) = self
            .docker
            .prune_images(Some(
                PruneImagesOptionsBuilder::new().filters(&dangling).build(),
            ))
            .await
        {
            cleaned.images_removed += pruned.images_deleted.map_or(0, |d| d.len());
            cleaned.bytes_freed += u64::try_from(pruned.space_reclaimed.unwrap_or(0)).unwrap_or(0);
        }
        let Ok(mut images) = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::new().filters(&ours).build()))
            .await
        else {
            return cleaned;
        };
        let mut total: u64 = images
            .iter()
            .map(|i| u64::try_from(i.size).unwrap_or(0))
            .sum();
        // Oldest first: an image is used when it is built (and, as a cache source, when the
        // next build of its tag starts, which rebuilds it), so creation time tracks last use.
        images.sort_by_key(|i| i.created);
        for image in images {
            if total <= limit {
                break;
            }
            let options = RemoveImageOptionsBuilder::new()
                .force(false)
                .noprune(false)
                .build();
            if self
                .docker
                .remove_image(&image.id, Some(options), None)
                .await
                .is_ok()
            {
                let size = u64::try_from(image.size).unwrap_or(0);
                total = total.saturating_sub(size);
                cleaned.bytes_freed += size;
                cleaned.images_removed += 1;
            }
        }
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(workspace: &Workspace, name: &str, bytes: usize, age_secs: u64) -> PathBuf {
        let path = workspace.mirrors_dir.join(name);
        std::fs::create_dir_all(path.join("objects")).expect("mkdir");
        std::fs::write(path.join("objects/pack"), vec![0u8; bytes]).expect("write");
        touch_mirror(&path);
        let when = SystemTime::now() - std::time::Duration::from_secs(age_secs);
        let file = std::fs::File::options()
            .write(true)
            .open(path.join(LAST_USED))
            .expect("open");
        file.set_modified(when).expect("set time");
        path
    }

    #[test]
    fn the_least_recently_used_mirrors_go_first_and_busy_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Workspace::new(dir.path());
        let oldest = mirror(&workspace, "acme/old.git", 4000, 3000);
        let busy = mirror(&workspace, "acme/busy.git", 4000, 9000);
        let recent = mirror(&workspace, "acme/new.git", 4000, 10);
        let lock = workspace.mirror_lock(&busy);
        let _held = lock.try_lock().expect("a build holds it");
        let cleaned = workspace.evict_mirrors(8500).expect("evicts");
        assert_eq!(
            cleaned.mirrors_removed,
            vec![oldest.clone()],
            "the busy mirror is skipped, the newest kept"
        );
        assert!(!oldest.exists() && busy.exists() && recent.exists());
        assert!(cleaned.bytes_freed >= 4000);
    }
}
