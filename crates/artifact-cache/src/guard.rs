//! [`ReadGuard`] and [`WriteGuard`]: holding an artifact's lock, and committing or aborting.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use tracing::{debug, info, warn};

use crate::{
    ArtifactId, Durability, Error, Metadata,
    cache::{Inner, release_reader},
    error::IoResultExt,
    metadata,
    table::{Committed, Entry},
    tree,
};

/// A shared read lock on a committed artifact; dropping it unlocks.
///
/// It owns what it needs (no borrow of the [`Cache`](crate::Cache)), so it can move into a
/// spawned task or a response body stream and unlock when that ends. Cloning it adds a reader.
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path().join("cache"))?;
/// let id: ArtifactId = "0042".parse()?;
/// let writer = cache.create(&id)?;
/// std::fs::write(writer.path().join("a.txt"), "a")?;
/// writer.commit()?;
///
/// let reader = cache.get(&id)?;
/// let thread = std::thread::spawn(move || std::fs::read_to_string(reader.path().join("a.txt")));
/// assert_eq!(thread.join().unwrap()?, "a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadGuard {
    entry: Arc<Entry>,
    meta: Metadata,
    tree: Arc<Path>,
}

impl ReadGuard {
    pub(crate) fn new(entry: Arc<Entry>, meta: Metadata, tree: Arc<Path>) -> ReadGuard {
        ReadGuard { entry, meta, tree }
    }

    /// The artifact's id.
    pub fn id(&self) -> &ArtifactId {
        &self.entry.id
    }

    /// The artifact's directory (read-only on disk).
    pub fn path(&self) -> &Path {
        &self.tree
    }

    /// The artifact's metadata; `last_used` is the time of this `get`.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }
}

impl Clone for ReadGuard {
    fn clone(&self) -> Self {
        self.entry.state().readers += 1;
        ReadGuard { entry: self.entry.clone(), meta: self.meta.clone(), tree: self.tree.clone() }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        release_reader(&self.entry);
    }
}

/// The write lock on an artifact being created, and its staging directory.
///
/// Fill [`path`](WriteGuard::path), then [`commit`](WriteGuard::commit) (publishes the
/// artifact atomically) or [`abort`](WriteGuard::abort) (deletes what was written). Both
/// consume the guard, so nothing can change the artifact afterwards; dropping the guard without
/// committing aborts. Dropping and aborting delete files: from async code, do it inside
/// `spawn_blocking` when the tree may be large.
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path().join("cache"))?;
/// let id: ArtifactId = "77".parse()?;
/// let writer = cache.create(&id)?;
/// std::fs::write(writer.path().join("partial"), "...")?;
/// writer.abort()?;
/// assert!(cache.get(&id).unwrap_err().is_not_found());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WriteGuard {
    inner: Arc<Inner>,
    entry: Arc<Entry>,
    /// `tmp/<hex>/<pid>.<n>`: becomes `objects/<hex>` at commit.
    staging: PathBuf,
    /// `staging/tree`: what the caller fills.
    tree: PathBuf,
    /// The lock file's generation when the lock was taken.
    generation: u64,
    /// Committed or aborted: the lock is released and the staging directory gone.
    done: bool,
}

impl WriteGuard {
    pub(crate) fn new(
        inner: Arc<Inner>,
        entry: Arc<Entry>,
        staging: PathBuf,
        tree: PathBuf,
        generation: u64,
    ) -> WriteGuard {
        WriteGuard { inner, entry, staging, tree, generation, done: false }
    }

    /// The artifact's id.
    pub fn id(&self) -> &ArtifactId {
        &self.entry.id
    }

    /// The (initially empty) directory to fill.
    pub fn path(&self) -> &Path {
        &self.tree
    }

    /// Publishes the artifact: computes its tree digest and entry index (see
    /// [`ReadGuard::index`]), makes it read-only, records its metadata and renames it into
    /// place in one atomic step. Afterwards, if the cache is over
    /// its size bound, evicts least recently used artifacts (never this one).
    ///
    /// On error nothing is published and the staging directory is deleted. Errors:
    /// [`Error::DiskFull`] below the free-space floor (or on `ENOSPC`), [`Error::Digest`] if
    /// the tree holds something other than files, directories and symlinks, [`Error::Io`].
    pub fn commit(self) -> Result<Metadata, Error> {
        self.publish(Listed::Walk)
    }

    /// Like [`commit`](WriteGuard::commit), but trusts `summary` (the digest and counts that
    /// `tarstream::receive` computed while the bytes arrived) instead of reading the tree
    /// again. The artifact's entry index is then built on first need.
    pub fn commit_with(self, summary: &tarstream::Summary) -> Result<Metadata, Error> {
        self.publish(Listed::Summary(summary))
    }

    /// Like [`commit_with`](WriteGuard::commit_with), with the tree's entry index (from
    /// `tarstream::receive_with_index`), which is kept with the artifact so that it never
    /// has to be built by reading the tree again (see [`ReadGuard::index`]).
    pub fn commit_with_index(self, index: &tarstream::Index) -> Result<Metadata, Error> {
        self.publish(Listed::Index(index))
    }

    /// Deletes everything written and releases the lock.
    pub fn abort(mut self) -> Result<(), Error> {
        self.discard()
    }

    fn publish(mut self, listed: Listed<'_>) -> Result<Metadata, Error> {
        let id = *self.id();
        let _span = tracing::debug_span!("commit", id = %id).entered();
        // On error the guard drops here and `Drop` aborts.
        let meta = self.seal_and_rename(listed)?;
        self.done = true;
        let inner = self.inner.clone();
        inner.unstage(&id);
        let mut st = self.entry.state();
        let generation = self.generation.wrapping_add(1) % crate::lockfile::TOMBSTONE;
        let lock = st.lock.as_ref().expect("a writer holds the lock file");
        if let Err(err) = lock.set_generation(generation) {
            warn!(id = %id, error = %err, "cannot bump the lock generation");
        }
        st.committed =
            Some(Committed { generation, meta: meta.clone(), tree: inner.layout.tree(&id).into() });
        st.last_used = Some(meta.last_used);
        st.persisted = Some(meta.last_used);
        st.exclusive = false;
        let lock = st.lock.as_ref().expect("a writer holds the lock file");
        if let Err(err) = lock.unlock() {
            warn!(id = %id, error = %err, "cannot unlock");
        }
        drop(st);
        self.entry.notify();
        info!(id = %id, bytes = meta.size, files = meta.files, "committed");
        inner.index_insert(&id, meta.size, meta.last_used);
        inner.evict_after_commit(&id);
        Ok(meta)
    }

    /// Everything up to and including the rename into `objects/`.
    fn seal_and_rename(&mut self, listed: Listed<'_>) -> Result<Metadata, Error> {
        let inner = &self.inner;
        let id = *self.id();
        let fsync = inner.options.durability == Durability::Fsync;
        inner.check_floor()?;
        tree::seal(&self.tree, fsync)?;
        let summary = match listed {
            Listed::Summary(summary) => *summary,
            Listed::Index(index) => {
                crate::index::write(&self.staging.join("index"), index, fsync)?;
                index.summary()
            }
            Listed::Walk => {
                // The same walk as the digest's, keeping each entry's record: the index.
                let index = tarstream::index_dir(&self.tree)
                    .map_err(|source| Error::Digest { id, source: Box::new(source) })?;
                crate::index::write(&self.staging.join("index"), &index, fsync)?;
                index.summary()
            }
        };
        let now = SystemTime::now();
        let meta = Metadata {
            id,
            size: summary.file_bytes,
            files: summary.files,
            dirs: summary.dirs,
            symlinks: summary.symlinks,
            digest: summary.digest,
            created: now,
            last_used: now,
        };
        metadata::write(&self.staging.join("meta"), &meta, fsync)?;
        if fsync {
            tree::sync(&self.staging)?;
        }
        let object = inner.layout.object(&id);
        match fs::rename(&self.staging, &object) {
            Ok(()) => {}
            Err(err)
                if err.kind() == io::ErrorKind::DirectoryNotEmpty
                    || err.kind() == io::ErrorKind::AlreadyExists =>
            {
                // Cannot happen while we hold the lock, unless someone bypassed it.
                return Err(Error::Exists { id });
            }
            Err(err) => return Err(err).with_path(&object),
        }
        if fsync {
            // The new name must be durable; the old one's removal is part of the same rename.
            if let Err(err) = tree::sync(&inner.layout.objects) {
                // Not durable: take it back so that an error means "not committed".
                self.staging = inner.layout.unique(&inner.layout.staging_dir(&id), None);
                if fs::rename(&object, &self.staging).is_err() {
                    self.staging = object;
                }
                return Err(err);
            }
        }
        Ok(meta)
    }

    /// Deletes the staging directory and releases the lock (as an absent artifact).
    fn discard(&mut self) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let inner = &self.inner;
        let id = *self.id();
        // Move the staging directory out of the way first, so the lock can go at once and a
        // crash during the deletion leaves only trash.
        let trash = inner.layout.unique(&inner.layout.trash, Some(&id));
        let doomed = match fs::rename(&self.staging, &trash) {
            Ok(()) => trash,
            Err(_) => self.staging.clone(),
        };
        let deleted_in_place = doomed == self.staging;
        let result = if deleted_in_place { tree::remove(&doomed) } else { Ok(()) };
        inner.unstage(&id);
        let mut st = self.entry.state();
        inner.release_absent(&mut st, &id);
        st.exclusive = false;
        drop(st);
        self.entry.notify();
        debug!(id = %id, "writer aborted");
        if deleted_in_place { result } else { tree::remove(&doomed) }
    }
}

/// What a commit knows of the tree already.
#[derive(Clone, Copy)]
enum Listed<'a> {
    /// Nothing: walk it.
    Walk,
    /// Its digest and counts.
    Summary(&'a tarstream::Summary),
    /// Its index (digest and counts included).
    Index(&'a tarstream::Index),
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if !self.done
            && let Err(err) = self.discard()
        {
            warn!(id = %self.id(), error = %err, "aborting a dropped writer failed (recovery will finish)");
        }
    }
}
