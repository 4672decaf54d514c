//! [`Cache`]: opening a root, and the locking operations `get`, `create`, `remove`, `stat`.

use std::{
    fs, io,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tracing::{debug, warn};

use crate::{
    ArtifactId, Durability, Error, Metadata, Options, ReadGuard, WriteGuard,
    absent::Absences,
    error::{IoResultExt, io_error},
    evict::IndexSlot,
    layout::Layout,
    lockfile::{LockFile, TOMBSTONE},
    metadata,
    quarantine::Condemned,
    table::{Committed, Entry, State, Table},
    tree,
};

/// How often a lock acquisition retries after meeting a tombstone before giving up as
/// [`Error::WriteLocked`].
const TOMBSTONE_RETRIES: usize = 8;

/// An on-disk cache of artifact directories, shared by threads (clone it) and processes (open
/// the same root).
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path().join("cache"))?;
/// let id: ArtifactId = "1234abcd".parse()?;
///
/// // A writer fills a staging directory, then publishes it atomically.
/// let writer = cache.create(&id)?;
/// std::fs::create_dir(writer.path().join("bin"))?;
/// std::fs::write(writer.path().join("bin/tool"), b"#!/bin/sh\n")?;
/// let meta = writer.commit()?;
/// assert_eq!(meta.files, 1);
///
/// // Readers share it; while one holds it, it cannot be removed.
/// let reader = cache.get(&id)?;
/// assert_eq!(std::fs::read(reader.path().join("bin/tool"))?, b"#!/bin/sh\n");
/// assert!(cache.remove(&id).unwrap_err().is_locked());
/// drop(reader);
/// cache.remove(&id)?;
/// assert!(cache.get(&id).unwrap_err().is_not_found());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

/// The state every clone of a [`Cache`] shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) options: Options,
    /// The size bound, `u64::MAX` for none (adjustable at run time).
    pub(crate) max_bytes: AtomicU64,
    pub(crate) min_free_bytes: AtomicU64,
    pub(crate) table: Table,
    /// Sizes and last-used times of all artifacts, built on first need (see `evict.rs`).
    pub(crate) index: Mutex<IndexSlot>,
    /// Held by whoever is evicting.
    pub(crate) evicting: Mutex<()>,
    /// An eviction pass owed to a commit that found `evicting` held, and the id it committed
    /// (kept by that pass); see `evict.rs`.
    pub(crate) evict_owed: Mutex<Option<ArtifactId>>,
    /// Held by whoever is scanning the metadata to build the index.
    pub(crate) scanning: Mutex<()>,
    /// Artifacts evicted through this handle (and its clones) since open.
    pub(crate) evictions: AtomicU64,
    /// The ids this process condemned (see `quarantine.rs`).
    pub(crate) condemned: Condemned,
    /// Ids quick lookups found not committed, while nothing new appeared (see `absent.rs`).
    pub(crate) absences: Absences,
}

/// The outcome of trying to take an id's exclusive lock.
pub(crate) enum Exclusive {
    /// Taken; the lock file's generation.
    Acquired(u64),
    /// Someone else holds the lock.
    Busy,
    /// There is no lock file (and we were not to create one).
    NoLockFile,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("root", &self.root()).finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens (creating if needed) the cache at `root` with default [`Options`].
    ///
    /// Creates the layout, checks that `root` is a writable directory that is empty or already
    /// a cache, and recovers from processes that died: their staging directories and
    /// half-deleted artifacts are removed. Opening does no work per artifact, so it stays fast
    /// however many the cache holds.
    pub fn open(root: impl AsRef<Path>) -> Result<Cache, Error> {
        Cache::open_with(root, Options::default())
    }

    /// Opens the cache at `root` with `options`.
    pub fn open_with(root: impl AsRef<Path>, options: Options) -> Result<Cache, Error> {
        let root = root.as_ref();
        let _span = tracing::debug_span!("open", path = %root.display()).entered();
        let layout = Layout::new(root.to_path_buf());
        layout.init()?;
        let inner = Inner {
            layout,
            max_bytes: AtomicU64::new(options.max_bytes.unwrap_or(u64::MAX)),
            min_free_bytes: AtomicU64::new(options.min_free_bytes),
            options,
            table: Table::new(),
            index: Mutex::new(IndexSlot::default()),
            evicting: Mutex::new(()),
            evict_owed: Mutex::new(None),
            scanning: Mutex::new(()),
            evictions: AtomicU64::new(0),
            condemned: Condemned::default(),
            absences: Absences::default(),
        };
        let cache = Cache { inner: Arc::new(inner) };
        let recovered = cache.inner.recover()?;
        if recovered > 0 {
            tracing::info!(leftovers = recovered, "removed leftovers of dead writers and removers");
        }
        Ok(cache)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// The options the cache was opened with (the limits as given at open; see
    /// [`set_max_bytes`](Cache::set_max_bytes)).
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Bytes free for unprivileged users on the file system of the cache's root (what the
    /// free-space floor is checked against).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = artifact_cache::Cache::open(dir.path())?;
    /// assert!(cache.free_bytes()? > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn free_bytes(&self) -> Result<u64, Error> {
        self.inner.free_bytes()
    }

    /// Changes the size bound for every clone of this handle; takes effect at the next
    /// commit or [`gc`](Cache::gc).
    pub fn set_max_bytes(&self, max_bytes: Option<u64>) {
        self.inner.max_bytes.store(max_bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Changes the free-space floor for every clone of this handle, writers already under
    /// way included (their commit checks it).
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.inner.min_free_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Takes the write lock on `id` and returns a guard whose [`path`](WriteGuard::path) the
    /// caller fills; [`commit`](WriteGuard::commit) publishes it.
    ///
    /// Errors: [`Error::Exists`] if it is committed already; [`Error::WriteLocked`] while
    /// another writer (or a remover) holds it, or for a moment while a process opening the
    /// cache checks a staging directory of `id` for a dead writer's leftovers;
    /// [`Error::ReadLocked`] in the rare case that readers hold the lock of an absent artifact
    /// (or a holder let go between the two tries that tell them apart); [`Error::DiskFull`]
    /// below the free-space floor. Both lock errors are [retryable](Error::is_retryable):
    /// [`create_or_get`](Cache::create_or_get) waits them out.
    pub fn create(&self, id: &ArtifactId) -> Result<WriteGuard, Error> {
        let inner = &self.inner;
        if inner.condemned.contains(id) {
            // Condemned and still there: a quarantine is waiting for its readers.
            if inner.layout.object(id).exists() {
                return Err(Error::WriteLocked { id: *id });
            }
            inner.condemned.remove(id);
        }
        let entry = inner.table.entry(id);
        let mut st = entry.state();
        if st.exclusive {
            return Err(Error::WriteLocked { id: *id });
        }
        if st.readers > 0 {
            return Err(Error::Exists { id: *id });
        }
        let generation = match inner.acquire_exclusive(&mut st, id, true)? {
            Exclusive::Acquired(generation) => generation,
            Exclusive::Busy => return Err(inner.classify_create_conflict(&st, id)),
            Exclusive::NoLockFile => unreachable!("the lock file is created"),
        };
        let lock = st.lock.as_ref().expect("locked");
        let exists = match &st.committed {
            Some(c) if c.generation == generation => true,
            _ => inner.layout.object(id).exists(),
        };
        if exists {
            let _ = lock.unlock();
            return Err(Error::Exists { id: *id });
        }
        let staged = inner.check_floor().and_then(|()| inner.stage(id));
        let (staging, tree) = match staged {
            Ok(paths) => paths,
            Err(err) => {
                inner.release_absent(&mut st, id);
                drop(st);
                entry.notify();
                return Err(err);
            }
        };
        st.exclusive = true;
        drop(st);
        debug!(id = %id, staging = %staging.display(), "writer started");
        Ok(WriteGuard::new(self.inner.clone(), entry, staging, tree, generation))
    }

    /// Takes a shared read lock on the committed artifact `id`.
    ///
    /// Many readers, in any threads and processes, may hold it at once; while any does, it
    /// cannot be removed or evicted. Dropping the guard unlocks.
    ///
    /// Errors: [`Error::NotFound`] if it is not committed (or this process condemned it: see
    /// [`quarantine`](Cache::quarantine)); [`Error::WriteLocked`] while a writer or remover
    /// holds it (see [`get_wait`](Cache::get_wait) to wait instead).
    pub fn get(&self, id: &ArtifactId) -> Result<ReadGuard, Error> {
        let inner = &self.inner;
        if inner.condemned.contains(id) {
            return Err(Error::NotFound { id: *id });
        }
        let entry = inner.table.entry(id);
        let mut st = entry.state();
        if st.exclusive {
            return Err(Error::WriteLocked { id: *id });
        }
        if st.readers == 0 {
            inner.acquire_shared(&mut st, id)?;
        }
        st.readers += 1;
        let now = SystemTime::now();
        st.last_used = Some(now);
        let committed = st.committed.as_ref().expect("a reader holds a committed artifact");
        let mut meta = committed.meta.clone();
        meta.last_used = now;
        let tree = committed.tree.clone();
        let stale = st.persisted.is_none_or(|persisted| {
            now.duration_since(persisted).unwrap_or_default() >= inner.options.last_used_resolution
        });
        if stale {
            inner.persist_last_used(id, now);
            st.persisted = Some(now);
        }
        drop(st);
        Ok(ReadGuard::new(entry, meta, tree))
    }

    /// Removes the committed artifact `id`.
    ///
    /// The artifact disappears atomically (renamed into `trash/`), then its files are deleted.
    /// Errors: [`Error::NotFound`]; [`Error::ReadLocked`] while readers hold it;
    /// [`Error::WriteLocked`] while another remover (or eviction) holds it.
    pub fn remove(&self, id: &ArtifactId) -> Result<(), Error> {
        let _span = tracing::debug_span!("remove", id = %id).entered();
        self.inner.remove(id).map(drop)
    }

    /// The metadata of the committed artifact `id`, without locking it.
    pub fn stat(&self, id: &ArtifactId) -> Result<Metadata, Error> {
        let inner = &self.inner;
        let mut meta =
            metadata::read(&inner.layout.meta(id), id)?.ok_or(Error::NotFound { id: *id })?;
        if let Some(used) = inner.table.get(id).and_then(|entry| entry.state().last_used) {
            meta.last_used = meta.last_used.max(used);
        }
        Ok(meta)
    }

    /// Recomputes the tree digest of `id` (under a read lock) and compares it with the one
    /// recorded at commit: [`Error::Corrupt`] if they differ.
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "ab".parse()?;
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("f"), "data")?;
    /// writer.commit()?;
    /// assert_eq!(cache.verify(&id)?.size, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, id: &ArtifactId) -> Result<Metadata, Error> {
        self.verify_with(id, |_| Ok(()))
    }

    /// [`verify`](Cache::verify), calling `before_read` with the size of each read of file
    /// content before it is made (see `tarstream::digest_dir_with`): a hook to pace the reads
    /// with a rate limit, or to stop early by failing.
    ///
    /// The read lock is held for the whole walk, pauses included: readers are never held up
    /// by it, but a remover, an eviction or a quarantine of this artifact is refused (or
    /// waits) until it ends. An error of `before_read` comes back as [`Error::Digest`].
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "ab".parse()?;
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("f"), "data")?;
    /// writer.commit()?;
    /// let mut read = 0;
    /// cache.verify_with(&id, |bytes| {
    ///     read += bytes;
    ///     Ok(())
    /// })?;
    /// assert_eq!(read, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_with(
        &self,
        id: &ArtifactId,
        before_read: impl FnMut(u64) -> io::Result<()>,
    ) -> Result<Metadata, Error> {
        let _span = tracing::debug_span!("verify", id = %id).entered();
        let guard = self.get(id)?;
        let summary = tarstream::digest_dir_with(guard.path(), before_read)
            .map_err(|source| Error::Digest { id: *id, source: Box::new(source) })?;
        let meta = guard.metadata().clone();
        if summary.digest != meta.digest {
            warn!(id = %id, expected = %meta.digest, actual = %summary.digest, "artifact is corrupt");
            return Err(Error::Corrupt {
                id: *id,
                expected: Box::new(meta.digest),
                actual: Box::new(summary.digest),
            });
        }
        Ok(meta)
    }
}

impl Inner {
    /// Takes this process's shared OS lock on `id` and makes sure `st.committed` describes it.
    /// Call with no reader or writer of this process holding the entry.
    fn acquire_shared(&self, st: &mut State, id: &ArtifactId) -> Result<(), Error> {
        for _ in 0..TOMBSTONE_RETRIES {
            if st.lock.is_none() {
                let path = self.layout.lock(id);
                let lock = match LockFile::open(&path, false).with_path(&path)? {
                    Some(lock) => lock,
                    // No lock file means no writer. A committed artifact normally has one, but
                    // tolerate its loss rather than hide the artifact.
                    None if self.layout.meta(id).exists() => {
                        LockFile::open(&path, true).with_path(&path)?.expect("created")
                    }
                    None => return Err(Error::NotFound { id: *id }),
                };
                st.lock = Some(lock);
            }
            let lock = st.lock.as_ref().expect("opened above");
            // (The path is only made on error: this is the hot path of `get`.)
            if !lock.try_shared().map_err(|e| io_error(self.layout.lock(id), e))? {
                return Err(Error::WriteLocked { id: *id });
            }
            let generation = match lock.locked_generation(|| self.layout.lock(id)) {
                Ok(generation) => generation,
                Err(err) => {
                    let _ = lock.unlock();
                    return Err(io_error(self.layout.lock(id), err));
                }
            };
            if generation == TOMBSTONE {
                self.settle_tombstone(st, id);
                continue;
            }
            if matches!(&st.committed, Some(c) if c.generation == generation) {
                return Ok(());
            }
            match metadata::read(&self.layout.meta(id), id) {
                Ok(Some(meta)) => {
                    st.persisted =
                        Some(st.persisted.map_or(meta.last_used, |p| p.max(meta.last_used)));
                    let tree = self.layout.tree(id).into();
                    st.committed = Some(Committed { generation, meta, tree });
                    return Ok(());
                }
                result => {
                    let _ = lock.unlock();
                    st.committed = None;
                    return Err(result.err().unwrap_or(Error::NotFound { id: *id }));
                }
            }
        }
        Err(Error::WriteLocked { id: *id })
    }

    /// Tries to take this process's exclusive OS lock on `id` (opening or, with `create`,
    /// creating the lock file). Call with no reader or writer of this process holding it.
    pub(crate) fn acquire_exclusive(
        &self,
        st: &mut State,
        id: &ArtifactId,
        create: bool,
    ) -> Result<Exclusive, Error> {
        let path = self.layout.lock(id);
        for _ in 0..TOMBSTONE_RETRIES {
            if st.lock.is_none() {
                match LockFile::open(&path, create).with_path(&path)? {
                    Some(lock) => st.lock = Some(lock),
                    None => return Ok(Exclusive::NoLockFile),
                }
            }
            let lock = st.lock.as_ref().expect("opened above");
            if !lock.try_exclusive().with_path(&path)? {
                return Ok(Exclusive::Busy);
            }
            match lock.locked_generation(|| path.clone()) {
                Ok(TOMBSTONE) => self.settle_tombstone(st, id),
                Ok(generation) => return Ok(Exclusive::Acquired(generation)),
                Err(err) => {
                    let _ = lock.unlock();
                    return Err(err).with_path(&path);
                }
            }
        }
        Err(Error::WriteLocked { id: *id })
    }

    /// Our (locked) lock file turned out to be a tombstone: unlock and forget it. If the path
    /// still names it, a remover died between writing the tombstone and unlinking; finish its
    /// job under the root's repair lock, so that no two processes unlink different files.
    fn settle_tombstone(&self, st: &mut State, id: &ArtifactId) {
        let lock = st.lock.take().expect("a lock file was read");
        st.committed = None;
        let _ = lock.unlock();
        let path = self.layout.lock(id);
        if !lock.is_at(&path).unwrap_or(false) {
            return;
        }
        let repair = fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.layout.repair_lock);
        let Ok(repair) = repair else { return };
        if repair.lock().is_err() {
            return;
        }
        if lock.is_at(&path).unwrap_or(false) && lock.generation().ok() == Some(TOMBSTONE) {
            warn!(id = %id, "removing the lock file of a remover that died");
            let _ = fs::remove_file(&path);
        }
        let _ = repair.unlock();
    }

    /// While holding the exclusive lock on an absent artifact: retire the lock file
    /// (tombstone, unlink) and unlock, so that lock files exist only for live artifacts.
    pub(crate) fn release_absent(&self, st: &mut State, id: &ArtifactId) {
        self.condemned.remove(id);
        let Some(lock) = st.lock.take() else { return };
        st.committed = None;
        self.retire(id, lock);
    }

    /// Tombstones, unlinks and unlocks `lock`, the exclusively locked lock file of `id`.
    ///
    /// When the tombstone cannot be written (a full disk, where even 8 bytes need a block),
    /// the file is emptied instead, which needs no space and tells whoever locks it next to
    /// check its path (see [`LockFile::locked_generation`]).
    pub(crate) fn retire(&self, id: &ArtifactId, lock: LockFile) {
        let marked = lock.set_generation(TOMBSTONE).or_else(|err| {
            debug!(id = %id, error = %err, "cannot write the tombstone; emptying the lock file");
            lock.clear()
        });
        match marked {
            Ok(()) => {
                let path = self.layout.lock(id);
                if let Err(err) = fs::remove_file(&path) {
                    warn!(id = %id, error = %err, "cannot remove lock file");
                }
            }
            Err(err) => warn!(id = %id, error = %err, "cannot retire lock file"),
        }
        let _ = lock.unlock();
    }

    /// Why `create` could not take the exclusive lock.
    fn classify_create_conflict(&self, st: &State, id: &ArtifactId) -> Error {
        if self.layout.object(id).exists() {
            return Error::Exists { id: *id };
        }
        self.classify_conflict(st, id)
    }

    /// Readers or a writer? Someone holds the lock we could not take exclusively: if a shared
    /// lock is available, it is readers.
    pub(crate) fn classify_conflict(&self, st: &State, id: &ArtifactId) -> Error {
        let lock = st.lock.as_ref().expect("a lock file was tried");
        match lock.try_shared() {
            Ok(true) => {
                let _ = lock.unlock();
                Error::ReadLocked { id: *id }
            }
            _ => Error::WriteLocked { id: *id },
        }
    }

    /// Removes `id`; returns the size of what was removed.
    pub(crate) fn remove(&self, id: &ArtifactId) -> Result<u64, Error> {
        let (size, trash) = self.move_out(id, &self.layout.trash, |st| {
            match st.committed.as_ref().map(|c| c.meta.size) {
                Some(size) => size,
                None => match metadata::read(&self.layout.meta(id), id) {
                    Ok(meta) => meta.map_or(0, |m| m.size),
                    Err(_) => 0,
                },
            }
        })?;
        debug!(id = %id, "removed");
        if let Err(err) = tree::remove(&trash) {
            warn!(id = %id, error = %err, "cannot delete a removed artifact (recovery will)");
        }
        Ok(size)
    }

    /// Takes the exclusive lock on the committed artifact `id` (without waiting: errors
    /// `ReadLocked`, `WriteLocked`, `NotFound`), calls `look` under it, renames
    /// `objects/<hex>` to a fresh name in `dir` (`trash/` or `quarantine/`) and retires the
    /// lock: the artifact is gone from that rename on. Returns what `look` found and the new
    /// path.
    pub(crate) fn move_out<T>(
        &self,
        id: &ArtifactId,
        dir: &Path,
        look: impl FnOnce(&State) -> T,
    ) -> Result<(T, std::path::PathBuf), Error> {
        let entry = self.table.entry(id);
        let mut st = entry.state();
        if st.exclusive {
            return Err(Error::WriteLocked { id: *id });
        }
        if st.readers > 0 {
            return Err(Error::ReadLocked { id: *id });
        }
        let object = self.layout.object(id);
        let mut acquired = self.acquire_exclusive(&mut st, id, false)?;
        if let Exclusive::NoLockFile = acquired {
            if !object.exists() {
                return Err(Error::NotFound { id: *id });
            }
            acquired = self.acquire_exclusive(&mut st, id, true)?;
        }
        match acquired {
            Exclusive::Acquired(_) => {}
            Exclusive::Busy => return Err(self.classify_conflict(&st, id)),
            Exclusive::NoLockFile => unreachable!("the lock file is created"),
        }
        let found = look(&st);
        let dest = self.layout.unique(dir, Some(id));
        let renamed = match fs::rename(&object, &dest) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).with_path(&object),
        };
        let renamed = renamed.and_then(|renamed| {
            if renamed && self.options.durability == Durability::Fsync {
                tree::sync(&self.layout.objects)?;
            }
            Ok(renamed)
        });
        match renamed {
            Ok(renamed) => {
                self.release_absent(&mut st, id);
                drop(st);
                entry.notify();
                self.index_remove(id);
                if !renamed {
                    return Err(Error::NotFound { id: *id });
                }
            }
            Err(err) => {
                let _ = st.lock.as_ref().map(LockFile::unlock);
                return Err(err);
            }
        }
        Ok((found, dest))
    }

    /// Bytes free for unprivileged users on the cache's file system.
    pub(crate) fn free_bytes(&self) -> Result<u64, Error> {
        let root = &self.layout.root;
        let stat = rustix::fs::statvfs(root).map_err(io::Error::from).with_path(root)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Fails with [`Error::DiskFull`] when the file system is below the free-space floor.
    pub(crate) fn check_floor(&self) -> Result<(), Error> {
        let floor = self.min_free_bytes.load(Ordering::Relaxed);
        if floor == 0 {
            return Ok(());
        }
        let root = &self.layout.root;
        let free = self.free_bytes()?;
        if free < floor {
            warn!(free, floor, "cache file system is below its free-space floor");
            return Err(Error::DiskFull { path: root.clone(), free, floor, source: None });
        }
        Ok(())
    }

    /// Writes `time` as the persisted last-used time of `id` (the mtime of its meta file).
    fn persist_last_used(&self, id: &ArtifactId, time: SystemTime) {
        let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let stamp = |tv_nsec| rustix::fs::Timespec { tv_sec: since.as_secs() as i64, tv_nsec };
        let times = rustix::fs::Timestamps {
            last_access: stamp(rustix::fs::UTIME_OMIT),
            last_modification: stamp(i64::from(since.subsec_nanos())),
        };
        let path = self.layout.meta(id);
        let done =
            rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::empty());
        if let Err(err) = done {
            debug!(id = %id, error = %err, "cannot record last use");
        }
    }
}

/// Removes `entry`'s reader; unlocks when it was the last one.
pub(crate) fn release_reader(entry: &Entry) {
    let mut st = entry.state();
    st.readers -= 1;
    if st.readers == 0 {
        if let Some(lock) = &st.lock
            && let Err(err) = lock.unlock()
        {
            warn!(id = %entry.id, error = %err, "cannot unlock");
        }
        drop(st);
        entry.notify();
    }
}
