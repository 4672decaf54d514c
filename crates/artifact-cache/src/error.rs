//! [`Error`]: everything that can go wrong in the cache, with the id or path it concerns.

use std::{io, path::PathBuf, time::Duration};

use tarstream::Digest;

use crate::{ArtifactId, ParseIdError};

/// An error from a [`Cache`](crate::Cache) operation.
///
/// Lock conflicts ([`WriteLocked`](Error::WriteLocked), [`ReadLocked`](Error::ReadLocked)) are
/// transient: [`is_retryable`](Error::is_retryable) says so, and the async
/// [`get_wait`](crate::Cache::get_wait) / [`create_or_get`](crate::Cache::create_or_get) wait
/// them out instead of failing.
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path())?;
/// let id: ArtifactId = "abcd".parse()?;
/// let err = cache.get(&id).unwrap_err();
/// assert!(err.is_not_found());
/// assert_eq!(err.to_string(), "artifact abcd not found");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A text or byte string is not a valid [`ArtifactId`].
    #[error(transparent)]
    InvalidId(#[from] ParseIdError),
    /// No committed artifact has this id.
    #[error("artifact {id} not found")]
    NotFound {
        /// The id asked for.
        id: ArtifactId,
    },
    /// The artifact is committed already (ids name immutable content).
    #[error("artifact {id} already exists")]
    Exists {
        /// The id asked for.
        id: ArtifactId,
    },
    /// A writer (or a remover, or eviction) holds the artifact's exclusive lock, in this process
    /// or another.
    #[error("artifact {id} is being written or removed")]
    WriteLocked {
        /// The id asked for.
        id: ArtifactId,
    },
    /// Readers hold the artifact, so it cannot be removed (or re-created) now.
    #[error("artifact {id} is in use by a reader")]
    ReadLocked {
        /// The id asked for.
        id: ArtifactId,
    },
    /// The tree on disk no longer matches the digest recorded when it was committed.
    ///
    /// (The digests are boxed to keep `Error` small: every `Result` of this crate carries it.)
    #[error("artifact {id} is corrupt: its tree digest is {actual}, expected {expected}")]
    Corrupt {
        /// The artifact.
        id: ArtifactId,
        /// The digest recorded at commit.
        expected: Box<Digest>,
        /// The digest of the tree as it is now.
        actual: Box<Digest>,
    },
    /// The file system is (nearly) full: below the free-space floor
    /// ([`Options::min_free_bytes`](crate::Options::min_free_bytes)), or the OS said `ENOSPC`.
    #[error("not enough free space at {path:?}{}", space_suffix(*.free, *.floor, .source.is_some()))]
    DiskFull {
        /// The path whose file system is full.
        path: PathBuf,
        /// Bytes available to us when it was checked (0 when the OS reported `ENOSPC`).
        free: u64,
        /// The configured floor.
        floor: u64,
        /// The OS error, when the OS reported it.
        #[source]
        source: Option<io::Error>,
    },
    /// A waiting call gave up.
    #[error("gave up on artifact {id} after waiting {waited:?}")]
    Timeout {
        /// The artifact waited for.
        id: ArtifactId,
        /// How long it waited.
        waited: Duration,
    },
    /// The cache root cannot be used (see [`RootProblem`]).
    #[error("cache root {path:?} is not usable: {problem}")]
    RootNotUsable {
        /// The root given to [`Cache::open`](crate::Cache::open).
        path: PathBuf,
        /// What is wrong with it.
        problem: RootProblem,
        /// The OS error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },
    /// A file-system operation failed.
    #[error("io error at {path:?}")]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Computing the tree digest of an artifact failed (for example on a socket in the tree).
    #[error("cannot compute the tree digest of artifact {id}")]
    Digest {
        /// The artifact.
        id: ArtifactId,
        /// What went wrong (boxed to keep `Error` small).
        #[source]
        source: Box<tarstream::Error>,
    },
    /// An artifact's metadata file is missing or unreadable although its tree is there.
    #[error("bad metadata file {path:?}: {reason}")]
    BadMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why [`Cache::open`](crate::Cache::open) refused a root directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootProblem {
    /// The path exists and is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// The directory (or its layout) cannot be created or written.
    #[error("not writable")]
    NotWritable,
    /// The directory holds other things and no cache tag, so it is not ours to fill.
    #[error("not empty and not an artifact cache (no CACHEDIR.TAG)")]
    NotACache,
    /// The cache was made by a version of artifact-cache with another on-disk layout.
    #[error("unsupported cache layout {found:?} (this version reads layout 1)")]
    UnknownLayout {
        /// The layout line found in `CACHEDIR.TAG`.
        found: String,
    },
    /// Creating or checking the layout failed for another reason.
    #[error("cannot set up the cache layout")]
    Io,
    /// The root, or a directory of its layout, is gone (deleted or unmounted while in use).
    #[error("missing (deleted or unmounted while in use)")]
    Missing,
}

impl Error {
    /// The artifact is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The artifact is committed already.
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Exists { .. })
    }

    /// Another writer, remover or reader holds the artifact's lock.
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::WriteLocked { .. } | Error::ReadLocked { .. })
    }

    /// The recorded digest does not match the tree.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// The file system is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::DiskFull { .. })
    }

    /// The same call may succeed later without anything else changing: lock conflicts and
    /// timeouts.
    pub fn is_retryable(&self) -> bool {
        self.is_locked() || matches!(self, Error::Timeout { .. })
    }
}

/// What a [`Error::DiskFull`] adds: the free space against the floor when we measured it
/// (when the OS said `ENOSPC`, its error says it all).
fn space_suffix(free: u64, floor: u64, from_os: bool) -> String {
    if from_os { String::new() } else { format!(": {free} bytes free, at least {floor} wanted") }
}

/// Attaches a path to an [`io::Error`], turning `ENOSPC`/`EDQUOT` into [`Error::DiskFull`].
pub(crate) trait IoResultExt<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| io_error(path.into(), source))
    }
}

/// The [`Error`] for an OS error at `path`.
pub(crate) fn io_error(path: PathBuf, source: io::Error) -> Error {
    Error::from_io(path, source)
}

impl Error {
    /// The error for an OS error met at `path` while writing into a cache (for example by
    /// `tarstream::receive` into a writer's tree): [`Error::DiskFull`] for `ENOSPC` and
    /// `EDQUOT`, [`Error::Io`] for the rest.
    ///
    /// ```
    /// use std::io;
    /// let full = io::Error::from_raw_os_error(28); // ENOSPC
    /// assert!(artifact_cache::Error::from_io("/c/tmp/x".into(), full).is_disk_full());
    /// ```
    pub fn from_io(path: PathBuf, source: io::Error) -> Error {
        // std maps ENOSPC to `StorageFull` and EDQUOT to `QuotaExceeded`.
        if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
            Error::DiskFull { path, free: 0, floor: 0, source: Some(source) }
        } else {
            Error::Io { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_disk_full() {
        let err =
            Err::<(), _>(io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()))
                .with_path("/x")
                .unwrap_err();
        assert!(err.is_disk_full(), "{err:?}");
        let err = Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied))
            .with_path("/x")
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn error_stays_small() {
        // Every `Result` of the crate (and of its users) carries an `Error`.
        assert!(std::mem::size_of::<Error>() <= 96, "{}", std::mem::size_of::<Error>());
    }

    #[test]
    fn predicates() {
        let id: ArtifactId = "00".parse().unwrap();
        assert!(Error::WriteLocked { id }.is_retryable());
        assert!(Error::ReadLocked { id }.is_locked());
        assert!(!Error::NotFound { id }.is_retryable());
        assert!(Error::Exists { id }.is_exists());
    }
}
