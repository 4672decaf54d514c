//! Recovery: deleting what dead writers and removers left behind in `tmp/` and `trash/`.
//!
//! Writers of an id stage in `tmp/<hex>/`, and only while holding the id's exclusive lock. So:
//! - a writer that takes the lock and finds `tmp/<hex>/` already there clears it first (what is
//!   in it was left by a writer that died), see [`Inner::stage`];
//! - recovery (at open and in `gc`) clears every `tmp/<hex>/` whose lock it can take, or that
//!   has no lock file (writers create the lock file first and remove it last);
//! - everything in `trash/` is already unreachable and is deleted by whoever gets there first.
//!
//! Cleared directories are renamed into `trash/` before being deleted, so a crash during the
//! deletion leaves only trash.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use tracing::{debug, warn};

use crate::{
    ArtifactId, Error,
    cache::Inner,
    error::IoResultExt,
    lockfile::{LockFile, TOMBSTONE},
    tree,
};

impl Inner {
    /// Deletes leftovers; returns how many staging and trash directories it deleted. Runs at
    /// open and in `gc`.
    pub(crate) fn recover(&self) -> Result<u64, Error> {
        let mut removed = 0;
        let tmp = &self.layout.tmp;
        for entry in fs::read_dir(tmp).with_path(tmp)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).with_path(tmp),
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name.starts_with(".probe.") {
                // A writability probe lives for microseconds; one that is still here is a
                // leftover, or about to be removed by its owner (who tolerates that).
                let _ = fs::remove_file(&path);
                continue;
            }
            let Ok(id) = name.parse::<ArtifactId>() else {
                warn!(path = %path.display(), "unknown entry in the staging area");
                continue;
            };
            // Take the lock (creating the file if needed: a writer may be about to) so that
            // no writer can start while we clear. No lock file and no staging directory left:
            // its writer finished (and retired the lock) after the listing.
            let lock_path = self.layout.lock(&id);
            let (lock, created) = match LockFile::open(&lock_path, false).with_path(&lock_path)? {
                Some(lock) => (lock, false),
                None if !path.exists() => continue,
                None => (
                    LockFile::open(&lock_path, true).with_path(&lock_path)?.expect("created"),
                    true,
                ),
            };
            // A tombstone means the file we opened was unlinked meanwhile: a new writer may
            // hold its successor. Leave it for next time.
            let dead = lock.try_exclusive().with_path(&lock_path)?
                && lock.locked_generation(|| lock_path.clone()).with_path(&lock_path)? != TOMBSTONE;
            if dead && !created && !path.exists() {
                // The writer seen in the listing finished before we locked: nothing to clear.
                // Let go at once, so that whoever comes next (a `remove` just after the commit,
                // a writer just after an abort) meets the lock for as short a time as can be.
                let _ = lock.unlock();
            } else if dead {
                removed += self.clear_staging(&id, &path)?;
                let _ = fs::remove_dir(&path);
                if self.layout.object(&id).exists() {
                    let _ = lock.unlock();
                } else {
                    self.retire(&id, lock);
                }
            } else {
                let _ = lock.unlock();
            }
        }
        self.empty_trash();
        Ok(removed)
    }

    /// Under the exclusive lock of `id`: makes a fresh staging directory
    /// `tmp/<hex>/<pid>.<n>` with an empty `tree/` in it, after clearing what a dead writer of
    /// the same id left in `tmp/<hex>/`. Returns (staging, tree).
    pub(crate) fn stage(&self, id: &ArtifactId) -> Result<(PathBuf, PathBuf), Error> {
        let dir = self.layout.staging_dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let cleared = self.clear_staging(id, &dir)?;
                if cleared > 0 {
                    self.empty_trash();
                }
            }
            Err(err) => return Err(err).with_path(&dir),
        }
        let staging = self.layout.unique(&dir, None);
        fs::create_dir(&staging).with_path(&staging)?;
        let tree = staging.join("tree");
        if let Err(err) = fs::create_dir(&tree).with_path(&tree) {
            let _ = fs::remove_dir(&staging);
            self.unstage(id);
            return Err(err);
        }
        Ok((staging, tree))
    }

    /// Under the exclusive lock of `id`, once its staging directory is gone: removes
    /// `tmp/<hex>/`.
    pub(crate) fn unstage(&self, id: &ArtifactId) {
        let _ = fs::remove_dir(self.layout.staging_dir(id));
    }

    /// Moves everything in `dir` (a `tmp/<hex>/` nobody writes in) to the trash.
    fn clear_staging(&self, id: &ArtifactId, dir: &Path) -> Result<u64, Error> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err).with_path(dir),
        };
        let mut moved = 0;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let trash = self.layout.unique(&self.layout.trash, Some(id));
            match fs::rename(entry.path(), &trash) {
                Ok(()) => {
                    debug!(id = %id, path = %entry.path().display(), "removing a dead writer's staging directory");
                    moved += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_path(entry.path()),
            }
        }
        Ok(moved)
    }

    /// Deletes everything in `trash/` (errors are logged: the next recovery retries).
    fn empty_trash(&self) {
        let Ok(entries) = fs::read_dir(&self.layout.trash) else { return };
        for entry in entries.flatten() {
            if let Err(err) = tree::remove(&entry.path()) {
                warn!(error = %err, "cannot empty the trash");
            }
        }
    }
}
