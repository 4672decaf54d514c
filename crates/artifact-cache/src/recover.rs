//! Recovery: deleting what dead writers and removers left behind in `tmp/` and `trash/`.
//!
//! A staging directory `tmp/<hex>.<pid>.<n>` belongs to a live writer exactly while someone
//! holds the lock of `<hex>` (a writer takes it before creating the directory and releases it
//! after renaming or deleting it). So a staging directory whose lock can be taken exclusively,
//! or that has no lock file, is a dead writer's: it is moved to `trash/` and deleted. Everything
//! in `trash/` is already unreachable and is deleted (by whoever gets there first).

use std::{fs, io};

use tracing::{debug, warn};

use crate::{
    Error, cache::Inner, error::IoResultExt, layout::id_of_entry, lockfile::LockFile, tree,
};

impl Inner {
    /// Deletes leftovers; returns how many trees and files it deleted. Runs at open and in
    /// `gc`.
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
            let Some(id) = id_of_entry(&name) else {
                warn!(path = %path.display(), "unknown entry in the staging area");
                continue;
            };
            let lock_path = self.layout.lock(&id);
            let lock = LockFile::open(&lock_path, false).with_path(&lock_path)?;
            let dead = match &lock {
                None => true,
                Some(lock) => lock.try_exclusive().with_path(&lock_path)?,
            };
            if dead {
                let trash = self.layout.unique(&self.layout.trash, Some(&id));
                match fs::rename(&path, &trash) {
                    Ok(()) => {
                        debug!(id = %id, path = %path.display(), "removing a dead writer's staging directory");
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => warn!(path = %path.display(), error = %err, "cannot move to trash"),
                }
            }
            if let Some(lock) = lock {
                let _ = lock.unlock();
            }
        }
        let trash = &self.layout.trash;
        for entry in fs::read_dir(trash).with_path(trash)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).with_path(trash),
            };
            match tree::remove(&entry.path()) {
                Ok(()) => removed += 1,
                Err(err) => warn!(error = %err, "cannot empty the trash"),
            }
        }
        Ok(removed)
    }
}
