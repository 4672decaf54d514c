//! `digest_dir`: the tree digest of a directory on disk, from the same walk as `send`.

use std::{
    io::{self, Read},
    path::Path,
};

use rustix::fd::{AsFd, BorrowedFd};

use crate::{
    Error, Summary, TreeHasher,
    error::entry_path,
    walk::{self, Files, Item},
};

/// Computes the tree digest of the directory `dir` by walking it (no tar encoding involved).
///
/// Gives the same [`Summary`] as [`send`](crate::send) of the same tree, except that
/// `stream_bytes` is zero. Symlinks are hashed as they are (this does not check where they
/// point); sockets, fifos and devices are an error, as for `send`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"a")?;
/// let summary = tarstream::digest_dir(dir.path())?;
/// assert_eq!((summary.files, summary.file_bytes), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn digest_dir(dir: &Path) -> Result<Summary, Error> {
    let root = walk::open_root(dir)?;
    digest_root(root.as_fd(), dir)
}

/// [`digest_dir`] of an open directory (`root_path` names it in errors).
pub(crate) fn digest_root(root: BorrowedFd<'_>, root_path: &Path) -> Result<Summary, Error> {
    const ORDER: &str = "the walk visits entries in canonical order";
    let mut tree = TreeHasher::new();
    let mut summary = Summary::empty();
    let mut buf = vec![0u8; 256 * 1024];
    walk::walk(root, root_path, Files::Open, |rel, item| {
        match item {
            Item::Dir => {
                tree.dir(rel).expect(ORDER);
                summary.dirs += 1;
            }
            Item::Symlink { target } => {
                tree.symlink(rel, target).expect(ORDER);
                summary.symlinks += 1;
            }
            Item::File { file, size, executable } => {
                let mut file = file.expect("the walk opens files");
                let mut hasher = blake3::Hasher::new();
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match file.read(&mut buf[..want]) {
                        Ok(0) => {
                            return Err(Error::FileChanged {
                                path: root_path.join(entry_path(rel)),
                            });
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(Error::Io {
                                path: root_path.join(entry_path(rel)),
                                source,
                            });
                        }
                    };
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                }
                tree.file(rel, executable, size, hasher.finalize().as_bytes()).expect(ORDER);
                summary.files += 1;
                summary.file_bytes += size;
            }
        }
        Ok(())
    })?;
    summary.digest = tree.finish();
    Ok(summary)
}
