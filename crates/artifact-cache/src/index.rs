//! The entry index of a committed artifact (`objects/<hex>/index`): written at
//! [`commit`](crate::WriteGuard::commit), built on first need for an artifact committed
//! without one, and always checked against the artifact's recorded digest.

use std::{
    fs,
    io::{self, BufReader, BufWriter},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use tarstream::Index;
use tracing::{debug, warn};

use crate::{Error, ReadGuard, error::IoResultExt};

/// The index file of the artifact whose tree is at `tree` (`objects/<hex>/tree`).
pub(crate) fn path_of(tree: &Path) -> PathBuf {
    tree.with_file_name("index")
}

/// Writes `index` to `path`, which must not exist.
pub(crate) fn write(path: &Path, index: &Index, fsync: bool) -> Result<(), Error> {
    let file = fs::File::create_new(path).with_path(path)?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    index.write_to(&mut out).with_path(path)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error).with_path(path)?;
    if fsync {
        file.sync_all().with_path(path)?;
    }
    Ok(())
}

impl ReadGuard {
    /// The entry index of the artifact's canonical stream: where each entry starts in the
    /// stream `tarstream::send` writes of it, each file's size and hash, and the stream's
    /// length, for serving byte ranges with `tarstream::send_range`.
    ///
    /// An artifact committed with [`WriteGuard::commit`](crate::WriteGuard::commit) or
    /// [`commit_with_index`](crate::WriteGuard::commit_with_index) has its index on disk
    /// already. For one committed otherwise (with
    /// [`commit_with`](crate::WriteGuard::commit_with), or by an older version) the first
    /// call builds it by reading the whole tree, and keeps it for later calls where the cache
    /// can be written. Either way the index's tree digest is checked against the artifact's
    /// metadata: an index file that is damaged is rebuilt, and a tree that no longer matches
    /// its digest is an error. Memory grows with the number of entries (about 100 bytes
    /// each), not with the size of the files.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the tree's digest differs from the recorded one;
    /// [`Error::Digest`] when the tree cannot be read; [`Error::Io`] when the index file
    /// cannot be read.
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "1dec".parse()?;
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("a.txt"), "hello")?;
    /// writer.commit()?;
    ///
    /// let reader = cache.get(&id)?;
    /// let index = reader.index()?;
    /// assert_eq!(index.digest(), reader.metadata().digest);
    /// let mut tail = Vec::new();
    /// let len = index.stream_len();
    /// tarstream::send_range(reader.path(), &index, len - 1024..len, &mut tail)?;
    /// assert_eq!(tail, vec![0; 1024]); // the end marker
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn index(&self) -> Result<Index, Error> {
        let id = *self.id();
        let expected = self.metadata().digest;
        let path = path_of(self.path());
        match fs::File::open(&path) {
            Ok(file) => match Index::read_from(BufReader::with_capacity(64 * 1024, file)) {
                Ok(index) if index.digest() == expected => return Ok(index),
                Ok(_) => warn!(id = %id, "the index file belongs to another tree; rebuilding it"),
                Err(err) => warn!(id = %id, error = %err, "unreadable index file; rebuilding it"),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_path(&path),
        }
        let index = tarstream::index_dir(self.path())
            .map_err(|source| Error::Digest { id, source: Box::new(source) })?;
        if index.digest() != expected {
            return Err(Error::Corrupt {
                id,
                expected: Box::new(expected),
                actual: Box::new(index.digest()),
            });
        }
        // Keep it for next time: written aside, then renamed over any damaged one. A cache
        // that cannot be written (a read-only mount) still answers from memory.
        static ASIDE: AtomicU64 = AtomicU64::new(0);
        let n = ASIDE.fetch_add(1, Ordering::Relaxed);
        let aside = path.with_file_name(format!("index.{}.{n}", std::process::id()));
        let kept =
            write(&aside, &index, false).and_then(|()| fs::rename(&aside, &path).with_path(&path));
        match kept {
            Ok(()) => debug!(id = %id, entries = index.len(), "index built"),
            Err(err) => {
                let _ = fs::remove_file(&aside);
                debug!(id = %id, error = %err, "index built but not kept");
            }
        }
        Ok(index)
    }
}
