//! [`Summary`]: what a transfer moved, and the tree digest computed as it passed.

use crate::{Digest, TreeHasher};

/// What [`send`](crate::send), [`receive`](crate::receive) or
/// [`digest_dir`](crate::digest_dir) saw of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The tree digest (see `docs/protocol.md`).
    pub digest: Digest,
    /// Regular files (a file with several hard links counts once per name).
    pub files: u64,
    /// Directories below the root (the root itself is not counted).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// The sum of the sizes of the regular files.
    pub file_bytes: u64,
    /// Bytes of tar stream written or read, end-of-archive marker and any zero padding after
    /// it included (zero for [`digest_dir`](crate::digest_dir)).
    pub stream_bytes: u64,
}

impl Summary {
    /// Files, directories and symlinks together.
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks
    }

    /// The summary of an empty tree.
    pub(crate) fn empty() -> Summary {
        Summary {
            digest: TreeHasher::new().finish(),
            files: 0,
            dirs: 0,
            symlinks: 0,
            file_bytes: 0,
            stream_bytes: 0,
        }
    }
}
