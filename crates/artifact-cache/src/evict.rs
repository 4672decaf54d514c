//! Size accounting and eviction: the [`Index`] of artifact sizes, `usage`, `gc`, and the
//! least-recently-used eviction after a commit.
//!
//! Opening a cache does no per-artifact work. The index (size and last-used time of every
//! artifact) is built by reading every metadata file the first time it is needed (the first
//! `usage`, `gc`, or commit with a size bound), kept up to date with this process's commits and
//! removals (also those made while a scan runs: see [`IndexSlot`]), and rebuilt when older
//! than [`RESCAN`] so that other processes' changes count.

use std::{
    collections::HashMap,
    fs, io,
    sync::{PoisonError, TryLockError, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use tracing::{info, warn};

use crate::{
    ArtifactId, Cache, Error, GcReport, Usage, cache::Inner, error::IoResultExt, metadata,
};

/// How old the index may get before a need for it rebuilds it.
pub(crate) const RESCAN: Duration = Duration::from_secs(30);

/// What the cache holds, by artifact.
#[derive(Debug)]
pub(crate) struct Index {
    artifacts: HashMap<ArtifactId, Indexed>,
    bytes: u64,
    built: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Indexed {
    size: u64,
    last_used: SystemTime,
}

/// The index, if built, and the changes made while a scan builds its successor.
#[derive(Debug, Default)]
pub(crate) struct IndexSlot {
    index: Option<Index>,
    /// `Some` while a scan runs: this process's commits and removals meanwhile, replayed
    /// onto the scan's result (which may or may not have seen them on disk), in order.
    journal: Option<Vec<(ArtifactId, Option<Indexed>)>>,
}

impl IndexSlot {
    fn record(&mut self, id: ArtifactId, change: Option<Indexed>) {
        if let Some(index) = self.index.as_mut() {
            index.apply(id, change);
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.push((id, change));
        }
    }
}

impl Index {
    fn apply(&mut self, id: ArtifactId, change: Option<Indexed>) {
        match change {
            Some(Indexed { size, last_used }) => self.insert(id, size, last_used),
            None => self.remove(&id),
        }
    }

    fn usage(&self) -> Usage {
        Usage { bytes: self.bytes, artifacts: self.artifacts.len() as u64 }
    }

    fn insert(&mut self, id: ArtifactId, size: u64, last_used: SystemTime) {
        if let Some(old) = self.artifacts.insert(id, Indexed { size, last_used }) {
            self.bytes -= old.size;
        }
        self.bytes += size;
    }

    fn remove(&mut self, id: &ArtifactId) {
        if let Some(old) = self.artifacts.remove(id) {
            self.bytes -= old.size;
        }
    }
}

impl Cache {
    /// How many bytes of file content and how many artifacts the cache holds.
    ///
    /// Exact for everything done through this handle (and its clones); changes made by other
    /// processes are picked up by a rescan of the metadata at most every 30 seconds. The
    /// first call reads every artifact's metadata file.
    pub fn usage(&self) -> Result<Usage, Error> {
        self.inner.with_index(RESCAN, |index| index.usage())
    }

    /// How many artifacts this handle (and its clones) evicted since it was opened, after
    /// commits and in [`gc`](Cache::gc): for metrics.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Collects garbage: deletes leftovers of dead writers and removers and lock files of
    /// absent artifacts, then evicts least recently used artifacts that nobody holds until
    /// the content fits in `max_bytes` (default: the cache's size bound; none: evict nothing).
    ///
    /// Rescans every artifact's metadata, so the sizes are exact at the time of the call.
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// for (i, byte) in [1u8, 2, 3].into_iter().enumerate() {
    ///     let writer = cache.create(&ArtifactId::try_from(&[byte][..])?)?;
    ///     std::fs::write(writer.path().join("data"), vec![0; 100 * (i + 1)])?;
    ///     writer.commit()?;
    /// }
    /// let report = cache.gc(Some(500))?;
    /// assert_eq!(report.evicted, vec![ArtifactId::try_from(&[1u8][..])?]);
    /// assert_eq!(report.usage.bytes, 500);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&self, max_bytes: Option<u64>) -> Result<GcReport, Error> {
        let inner = &self.inner;
        let _span = tracing::info_span!("gc").entered();
        let mut report = GcReport { leftovers_removed: inner.recover()?, ..GcReport::default() };
        report.stale_locks_removed = inner.remove_stale_locks()?;
        report.quarantine_removed = inner.prune_quarantine(0)?;
        let budget = max_bytes.or_else(|| inner.max_bytes());
        let scanned = {
            let _evicting = inner.evicting.lock().unwrap_or_else(PoisonError::into_inner);
            inner.with_index(Duration::ZERO, |_| ()).map(|()| {
                if let Some(budget) = budget {
                    inner.evict(budget, None, &mut report);
                }
            })
        };
        // Commits made meanwhile left their eviction to us.
        inner.serve_evictions();
        scanned?;
        report.usage = inner.with_index(RESCAN, |index| index.usage())?;
        Ok(report)
    }
}

impl Inner {
    pub(crate) fn max_bytes(&self) -> Option<u64> {
        match self.max_bytes.load(Ordering::Relaxed) {
            u64::MAX => None,
            max => Some(max),
        }
    }

    /// Runs `f` on the index, (re)building it first if absent or older than `max_age`.
    fn with_index<R>(
        &self,
        max_age: Duration,
        f: impl FnOnce(&mut Index) -> R,
    ) -> Result<R, Error> {
        let fresh =
            |index: &Option<Index>| index.as_ref().is_some_and(|i| i.built.elapsed() < max_age);
        {
            let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            if fresh(&slot.index) {
                return Ok(f(slot.index.as_mut().expect("checked")));
            }
        }
        // Scan without holding the index, so that commits and removals (which update it) do
        // not wait for a scan of a large cache; one scan at a time.
        let _scanning = self.scanning.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let scan = {
            let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            let already = slot
                .index
                .as_ref()
                .is_some_and(|i| i.built >= started || i.built.elapsed() < max_age);
            if !already {
                slot.journal = Some(Vec::new());
            }
            !already
        };
        let scanned = if scan { Some(self.scan()) } else { None };
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(scanned) = scanned {
            let journal = slot.journal.take().unwrap_or_default();
            let mut scanned = scanned?;
            // A commit or removal made while scanning may or may not be in what the scan
            // read; replayed in order, each ends as it is on disk.
            for (id, change) in journal {
                scanned.apply(id, change);
            }
            slot.index = Some(scanned);
        }
        Ok(f(slot.index.as_mut().expect("built above")))
    }

    /// Reads the size and last-used time of every committed artifact.
    fn scan(&self) -> Result<Index, Error> {
        let started = Instant::now();
        let mut index = Index { artifacts: HashMap::new(), bytes: 0, built: started };
        let objects = &self.layout.objects;
        for entry in fs::read_dir(objects).with_path(objects)? {
            let entry = entry.with_path(objects)?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<ArtifactId>().ok())
            else {
                continue;
            };
            match metadata::read(&self.layout.meta(&id), &id) {
                Ok(Some(meta)) => index.insert(id, meta.size, meta.last_used),
                Ok(None) => {}
                // A damaged artifact counts as empty and least recently used: evicted first.
                Err(err) => {
                    warn!(id = %id, error = %err, "unreadable metadata");
                    index.insert(id, 0, SystemTime::UNIX_EPOCH);
                }
            }
        }
        tracing::debug!(artifacts = index.artifacts.len(), bytes = index.bytes, elapsed = ?started.elapsed(), "scanned the cache");
        Ok(index)
    }

    /// Records a commit in the index (if built).
    pub(crate) fn index_insert(&self, id: &ArtifactId, size: u64, last_used: SystemTime) {
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        slot.record(*id, Some(Indexed { size, last_used }));
    }

    /// Records a removal in the index (if built).
    pub(crate) fn index_remove(&self, id: &ArtifactId) {
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        slot.record(*id, None);
    }

    /// After committing `id`: evict if over the size bound.
    ///
    /// A commit that finds another thread evicting leaves a request for one more pass and
    /// returns; the evicting thread serves it before it lets go, so once the last commit has
    /// returned the content fits in the bound (less what is locked).
    pub(crate) fn evict_after_commit(&self, id: &ArtifactId) {
        if self.max_bytes().is_none() {
            return;
        }
        *self.evict_owed.lock().unwrap_or_else(PoisonError::into_inner) = Some(*id);
        self.serve_evictions();
    }

    /// Runs the eviction passes owed, unless another thread holds `evicting` (it serves them
    /// when it is done: see [`Inner::evict_after_commit`] and [`Cache::gc`]).
    fn serve_evictions(&self) {
        let owed = || self.evict_owed.lock().unwrap_or_else(PoisonError::into_inner).take();
        loop {
            {
                let _evicting = match self.evicting.try_lock() {
                    Ok(guard) => guard,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => return,
                };
                // Taken under `evicting`: a request left after this is served by the next turn.
                while let Some(keep) = owed() {
                    let Some(budget) = self.max_bytes() else { return };
                    match self.with_index(RESCAN, |index| index.bytes > budget) {
                        Ok(true) => self.evict(budget, Some(&keep), &mut GcReport::default()),
                        Ok(false) => {}
                        Err(err) => warn!(error = %err, "cannot check the cache size"),
                    }
                }
            }
            // A commit that left its request after the last look above, and found `evicting`
            // still held, returned trusting us with it: look once more now that it is free
            // (if another thread has taken `evicting` meanwhile, that thread serves it).
            if self.evict_owed.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
                return;
            }
        }
    }

    /// Evicts least recently used artifacts that nobody holds (never `keep`) until the index
    /// says the content fits in `budget`. Hold `self.evicting`.
    fn evict(&self, budget: u64, keep: Option<&ArtifactId>, report: &mut GcReport) {
        let mut candidates: Vec<(SystemTime, ArtifactId, u64)> = {
            let slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(index) = slot.index.as_ref() else { return };
            if index.bytes <= budget {
                return;
            }
            index.artifacts.iter().map(|(id, a)| (a.last_used, *id, a.size)).collect()
        };
        // This process's uses are newer than what the index read from disk.
        for (last_used, id, _) in &mut candidates {
            if let Some(used) = self.table.get(id).and_then(|entry| entry.state().last_used) {
                *last_used = (*last_used).max(used);
            }
        }
        candidates.sort();
        for (_, id, size) in candidates {
            let bytes = self
                .index
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .index
                .as_ref()
                .map_or(0, |i| i.bytes);
            if bytes <= budget {
                break;
            }
            if Some(&id) == keep {
                continue;
            }
            match self.remove(&id) {
                Ok(_) => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    info!(id = %id, bytes = size, "evicted");
                    report.evicted.push(id);
                    report.evicted_bytes += size;
                }
                Err(err) if err.is_locked() => report.skipped_locked += 1,
                Err(err) if err.is_not_found() => self.index_remove(&id),
                Err(err) => warn!(id = %id, error = %err, "cannot evict"),
            }
        }
    }

    /// Deletes the lock files of artifacts that are absent and not locked.
    fn remove_stale_locks(&self) -> Result<u64, Error> {
        let locks = &self.layout.locks;
        let mut removed = 0;
        for entry in fs::read_dir(locks).with_path(locks)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).with_path(locks),
            };
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<ArtifactId>().ok())
            else {
                continue;
            };
            if self.layout.object(&id).exists() {
                continue;
            }
            let table_entry = self.table.entry(&id);
            let mut st = table_entry.state();
            if st.exclusive || st.readers > 0 {
                continue;
            }
            if let crate::cache::Exclusive::Acquired(_) =
                self.acquire_exclusive(&mut st, &id, false)?
            {
                if self.layout.object(&id).exists() {
                    let _ = st.lock.as_ref().map(|l| l.unlock());
                } else {
                    self.release_absent(&mut st, &id);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
