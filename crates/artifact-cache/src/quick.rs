//! [`Cache::get_quick`]: a read lock taken without blocking and without reading any file but
//! the lock file, for callers on an async runtime's worker threads; [`Cache::stat_quick`]: the
//! same lookup without the lock, for callers that read none of the artifact's files.

use std::{path::Path, sync::Arc, time::SystemTime};

use crate::{ArtifactId, Cache, Metadata, ReadGuard, lockfile::TOMBSTONE, table::Entry};

/// What [`Cache::get_quick`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Quick {
    /// The read lock, as [`Cache::get`] gives it.
    Ready(ReadGuard),
    /// The artifact is not committed (`objects/` has no entry for it).
    Absent,
    /// Taking the lock needs more than a quick call may do (open the lock file, read the
    /// metadata, record the last use, meet a writer or remover): call [`Cache::get`] where
    /// blocking is fine.
    Slow,
}

/// What [`Cache::stat_quick`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum QuickStat {
    /// The artifact is committed, as this metadata describes (`last_used` is now).
    Committed(Metadata),
    /// The artifact is not committed (`objects/` has no entry for it).
    Absent,
    /// Telling needs more than a quick call may do: call [`Cache::stat`] or [`Cache::get`]
    /// where blocking is fine.
    Slow,
}

/// Whether a quick lookup takes the read lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locking {
    Shared,
    None,
}

/// What a quick lookup found: the artifact's table entry, metadata and directory.
struct Found {
    entry: Arc<Entry>,
    meta: Metadata,
    tree: Arc<Path>,
}

/// Why a quick lookup found nothing.
enum Missed {
    Absent,
    Slow,
}

impl Cache {
    /// Takes the read lock on `id` if it can be done at once from what this process already
    /// knows, with no system call when another reader of this process holds it and at most two
    /// on the open lock file otherwise (`flock` and an 8-byte `pread` of its generation).
    /// When this process has not opened the artifact's lock file, it answers [`Quick::Absent`]
    /// if the artifact is not committed, from one lookup of its path or, on Linux, for an id
    /// found absent before, from the cache's inotify watch of the objects directory (one `read`
    /// of its queue; the kernel queues a commit's event before the commit's `rename` returns,
    /// so a commit that returned before the call is always seen, whichever process made it);
    /// everything else is [`Quick::Slow`]. The watch is set up by the first call that needs it.
    ///
    /// The guard is the same as [`get`](Cache::get)'s, under the same rules: while it is held
    /// nothing removes or evicts the artifact.
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache, Quick};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "0a".parse()?;
    /// assert!(matches!(cache.get_quick(&id), Quick::Absent));
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("f"), "x")?;
    /// writer.commit()?;
    /// // The commit left what it wrote in memory: no file needs reading.
    /// let Quick::Ready(reader) = cache.get_quick(&id) else { panic!("not quick") };
    /// assert_eq!(reader.metadata().size, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_quick(&self, id: &ArtifactId) -> Quick {
        match self.quick(id, Locking::Shared) {
            Ok(Found { entry, meta, tree }) => Quick::Ready(ReadGuard::new(entry, meta, tree)),
            Err(Missed::Absent) => Quick::Absent,
            Err(Missed::Slow) => Quick::Slow,
        }
    }

    /// The metadata of `id` if it is committed now, found as [`get_quick`](Cache::get_quick)
    /// finds it but without taking the read lock: for a caller that needs none of the
    /// artifact's files, such as a server answering from a copy of its stream kept in memory.
    /// When no reader of this process holds the lock, it reads the lock file's generation (one
    /// 8-byte `pread`) and answers [`QuickStat::Committed`] only if it is the one this process
    /// saw committed; a removal or a new commit, in this process or another, changes it. The
    /// read counts as a use of the artifact, as `get` does.
    ///
    /// What it answers was true at some moment during the call; nothing stops a remover after
    /// it, which is why the files must not be read on its word.
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache, QuickStat};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "0b".parse()?;
    /// assert!(matches!(cache.stat_quick(&id), QuickStat::Absent));
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("f"), "xy")?;
    /// let committed = writer.commit()?;
    /// let QuickStat::Committed(meta) = cache.stat_quick(&id) else { panic!("not quick") };
    /// assert_eq!((meta.size, meta.digest), (2, committed.digest));
    /// // No lock is held: a remover is not kept waiting.
    /// cache.remove(&id)?;
    /// assert!(!matches!(cache.stat_quick(&id), QuickStat::Committed(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stat_quick(&self, id: &ArtifactId) -> QuickStat {
        match self.quick(id, Locking::None) {
            Ok(Found { meta, .. }) => QuickStat::Committed(meta),
            Err(Missed::Absent) => QuickStat::Absent,
            Err(Missed::Slow) => QuickStat::Slow,
        }
    }

    /// What `get_quick` and `stat_quick` share: the artifact as this process knows it, if
    /// the lock file's generation says it is still committed, with a read lock taken if
    /// `locking` asks for one (and counted among this process's readers).
    fn quick(&self, id: &ArtifactId, locking: Locking) -> Result<Found, Missed> {
        let inner = &self.inner;
        let shared = locking == Locking::Shared;
        if inner.condemned.contains(id) {
            return Err(Missed::Slow);
        }
        let Some(entry) = inner.table.get(id) else { return Err(self.absent_or_slow(id)) };
        let mut st = entry.state();
        if st.exclusive {
            return Err(Missed::Slow);
        }
        let now = SystemTime::now();
        let persist_due = st.persisted.is_none_or(|persisted| {
            now.duration_since(persisted).unwrap_or_default() >= inner.options.last_used_resolution
        });
        if persist_due {
            return Err(Missed::Slow);
        }
        // A reader of this process holds the shared lock: nothing can have changed.
        if st.readers == 0 {
            let (Some(lock), Some(committed)) = (&st.lock, &st.committed) else {
                drop(st);
                return Err(self.absent_or_slow(id));
            };
            if shared && !matches!(lock.try_shared(), Ok(true)) {
                return Err(Missed::Slow);
            }
            // Generation 0 is an empty lock file, which may be a remover's last-resort
            // tombstone: only `get` can tell.
            match lock.generation() {
                Ok(generation)
                    if generation == committed.generation
                        && generation != 0
                        && generation != TOMBSTONE => {}
                _ => {
                    if shared && let Err(err) = lock.unlock() {
                        tracing::warn!(id = %id, error = %err, "cannot unlock");
                    }
                    return Err(Missed::Slow);
                }
            }
        }
        if shared {
            st.readers += 1;
        }
        st.last_used = Some(now);
        let committed = st.committed.as_ref().expect("a reader holds a committed artifact");
        let mut meta = committed.meta.clone();
        meta.last_used = now;
        let tree = committed.tree.clone();
        drop(st);
        Ok(Found { entry, meta, tree })
    }

    /// [`Quick::Absent`] when the artifact is not committed (see `absent.rs`: no lookup at all
    /// for an id found absent before, while nothing new appeared in `objects/`).
    fn absent_or_slow(&self, id: &ArtifactId) -> Missed {
        if self.inner.absences.absent(&self.inner.layout, id) {
            Missed::Absent
        } else {
            Missed::Slow
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Options;

    fn committed(cache: &Cache, id: &ArtifactId, content: &str) {
        let writer = cache.create(id).unwrap();
        std::fs::write(writer.path().join("f"), content).unwrap();
        writer.commit().unwrap();
    }

    #[test]
    fn quick_reads_share_the_lock_rules_of_get() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let id: ArtifactId = "01".parse().unwrap();
        assert!(matches!(cache.get_quick(&id), Quick::Absent));
        committed(&cache, &id, "one");
        let Quick::Ready(first) = cache.get_quick(&id) else { panic!("not ready") };
        let Quick::Ready(second) = cache.get_quick(&id) else { panic!("not ready") };
        assert!(cache.remove(&id).unwrap_err().is_locked());
        drop((first, second));
        // Unlocked again: a remover can have it, and afterwards it is absent.
        cache.remove(&id).unwrap();
        assert!(matches!(cache.get_quick(&id), Quick::Absent | Quick::Slow));
        assert!(cache.get(&id).unwrap_err().is_not_found());
        // Added again: the new metadata, never the old.
        committed(&cache, &id, "second");
        let Quick::Ready(again) = cache.get_quick(&id) else { panic!("not ready") };
        assert_eq!(again.metadata().size, 6);
    }

    #[test]
    fn another_process_view_needs_the_slow_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        let writer = Cache::open(&root).unwrap();
        let reader = Cache::open(&root).unwrap();
        let id: ArtifactId = "02".parse().unwrap();
        committed(&writer, &id, "one");
        // A handle that never read it has no lock file open: the slow path opens it.
        assert!(matches!(reader.get_quick(&id), Quick::Slow));
        drop(reader.get(&id).unwrap());
        let Quick::Ready(guard) = reader.get_quick(&id) else { panic!("not ready") };
        assert_eq!(guard.metadata().size, 3);
        drop(guard);
        // Removed and added again through the other handle: the generation this handle
        // remembers no longer matches, so it goes the slow way and sees the new artifact.
        writer.remove(&id).unwrap();
        committed(&writer, &id, "second");
        assert!(matches!(reader.get_quick(&id), Quick::Slow));
        assert_eq!(reader.get(&id).unwrap().metadata().size, 6);
    }

    #[test]
    fn stat_quick_takes_no_lock_and_never_answers_for_a_removed_or_replaced_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        let cache = Cache::open(&root).unwrap();
        let other = Cache::open(&root).unwrap();
        let id: ArtifactId = "04".parse().unwrap();
        assert!(matches!(cache.stat_quick(&id), QuickStat::Absent));
        committed(&cache, &id, "one");
        let QuickStat::Committed(first) = cache.stat_quick(&id) else { panic!("not quick") };
        assert_eq!(first.size, 3);
        // It holds nothing: another process removes the artifact at once, and this handle,
        // whose table still remembers it, sees the tombstone and answers nothing quick.
        other.remove(&id).unwrap();
        assert!(matches!(cache.stat_quick(&id), QuickStat::Slow));
        assert!(cache.get(&id).unwrap_err().is_not_found());
        assert!(matches!(cache.stat_quick(&id), QuickStat::Absent | QuickStat::Slow));
        // Added again by the other process: the new generation, so never the old metadata.
        committed(&other, &id, "second");
        assert!(!matches!(cache.stat_quick(&id), QuickStat::Committed(_)));
        assert_eq!(cache.get(&id).unwrap().metadata().size, 6);
        let QuickStat::Committed(again) = cache.stat_quick(&id) else { panic!("not quick") };
        assert_eq!((again.size, again.digest), (6, cache.stat(&id).unwrap().digest));
        assert_ne!(again.digest, first.digest);
    }

    #[test]
    fn stat_quick_never_answers_for_a_condemned_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let id: ArtifactId = "05".parse().unwrap();
        committed(&cache, &id, "one");
        // A reader of this process holds the lock: answered without a system call.
        let reader = cache.get(&id).unwrap();
        assert!(matches!(cache.stat_quick(&id), QuickStat::Committed(_)));
        // Found corrupt while that reader still reads: condemned until it lets go, and
        // from then on nothing is answered for it quickly.
        assert!(cache.quarantine(&id, "test").unwrap_err().is_locked());
        assert!(matches!(cache.stat_quick(&id), QuickStat::Slow));
        drop(reader);
        cache.quarantine(&id, "test").unwrap();
        assert!(matches!(cache.stat_quick(&id), QuickStat::Absent | QuickStat::Slow));
        assert!(cache.get(&id).unwrap_err().is_not_found());
    }

    #[test]
    fn a_due_last_use_record_takes_the_slow_path() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().last_used_resolution(Duration::ZERO);
        let cache = Cache::open_with(dir.path().join("c"), options).unwrap();
        let id: ArtifactId = "03".parse().unwrap();
        committed(&cache, &id, "one");
        assert!(matches!(cache.get_quick(&id), Quick::Slow));
    }
}
