//! [`Error`]: everything that can go wrong while sending, receiving or hashing a tree.

use std::{io, path::PathBuf};

/// An error from `send`, `receive` or
/// [`digest_dir`](crate::digest_dir), naming the entry and the rule broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the file system failed.
    #[error("io error at {path:?}")]
    Io {
        /// The path on disk the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tree holds something a tar stream of ours cannot carry (a socket, a device...).
    #[error("unsupported file type at {path:?}")]
    UnsupportedFileType {
        /// The path on disk.
        path: PathBuf,
    },
}

/// Attaches a path to an [`io::Error`].
pub(crate) trait IoResultExt<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Io { path: path.into(), source })
    }
}
