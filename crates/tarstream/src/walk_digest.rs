//! `digest_dir`: the tree digest of a directory on disk, from the same walk as `send`; and the
//! [`Listing`] walk that `index_dir` shares with it.

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

/// [`digest_dir`] with a hook called before each read of file content, with the number of
/// bytes about to be read (at most 256 KiB at a time; every byte of every file is announced
/// exactly once, so the calls add up to `file_bytes` of the [`Summary`]).
///
/// The hook may block to pace the reads (a rate limit), or fail to stop the walk: its error
/// is returned as [`Error::Io`] naming the file being read.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"abc")?;
/// let mut announced = 0;
/// let summary = tarstream::digest_dir_with(dir.path(), |bytes| {
///     announced += bytes;
///     Ok(())
/// })?;
/// assert_eq!(announced, summary.file_bytes);
/// assert_eq!(summary.digest, tarstream::digest_dir(dir.path())?.digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn digest_dir_with(
    dir: &Path,
    before_read: impl FnMut(u64) -> io::Result<()>,
) -> Result<Summary, Error> {
    let root = walk::open_root(dir)?;
    let mut listing = Digesting { tree: TreeHasher::new(), summary: Summary::empty() };
    walk_root_with(root.as_fd(), dir, &mut listing, before_read)?;
    let mut summary = listing.summary;
    summary.digest = listing.tree.finish();
    Ok(summary)
}

/// [`digest_dir`] of an open directory (`root_path` names it in errors).
pub(crate) fn digest_root(root: BorrowedFd<'_>, root_path: &Path) -> Result<Summary, Error> {
    let mut listing = Digesting { tree: TreeHasher::new(), summary: Summary::empty() };
    walk_root(root, root_path, &mut listing)?;
    let mut summary = listing.summary;
    summary.digest = listing.tree.finish();
    Ok(summary)
}

/// A consumer of a tree's canonical listing, with each file's content hash.
pub(crate) trait Listing {
    fn dir(&mut self, path: &[u8]) -> Result<(), Error>;
    fn file(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        hash: &[u8; 32],
    ) -> Result<(), Error>;
    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error>;
}

/// The listing behind [`digest_dir`].
struct Digesting {
    tree: TreeHasher,
    summary: Summary,
}

const ORDER: &str = "the walk visits entries in canonical order";

impl Listing for Digesting {
    fn dir(&mut self, path: &[u8]) -> Result<(), Error> {
        self.tree.dir(path).expect(ORDER);
        self.summary.dirs += 1;
        Ok(())
    }

    fn file(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        hash: &[u8; 32],
    ) -> Result<(), Error> {
        self.tree.file(path, executable, size, hash).expect(ORDER);
        self.summary.files += 1;
        self.summary.file_bytes += size;
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error> {
        self.tree.symlink(path, target).expect(ORDER);
        self.summary.symlinks += 1;
        Ok(())
    }
}

/// Walks the directory `dir` in canonical order, hashing each file, into `listing`.
pub(crate) fn walk_records(dir: &Path, listing: &mut impl Listing) -> Result<(), Error> {
    let root = walk::open_root(dir)?;
    walk_root(root.as_fd(), dir, listing)
}

pub(crate) fn walk_root(
    root: BorrowedFd<'_>,
    root_path: &Path,
    listing: &mut impl Listing,
) -> Result<(), Error> {
    walk_root_with(root, root_path, listing, |_| Ok(()))
}

/// [`walk_root`], calling `before_read` with the size of each read of file content first.
fn walk_root_with(
    root: BorrowedFd<'_>,
    root_path: &Path,
    listing: &mut impl Listing,
    mut before_read: impl FnMut(u64) -> io::Result<()>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; 256 * 1024];
    walk::walk(root, root_path, Files::Open, |rel, item| match item {
        Item::Dir => listing.dir(rel),
        Item::Symlink { target } => listing.symlink(rel, target),
        Item::File { file, size, executable } => {
            let mut file = file.expect("the walk opens files");
            let path = || root_path.join(entry_path(rel));
            let mut hasher = blake3::Hasher::new();
            let mut left = size;
            let mut announced = 0usize;
            while left > 0 {
                if announced == 0 {
                    // Short and interrupted reads use up what was announced before asking again.
                    announced = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    before_read(announced as u64)
                        .map_err(|source| Error::Io { path: path(), source })?;
                }
                let want = announced;
                let n = match file.read(&mut buf[..want]) {
                    Ok(0) => return Err(Error::FileChanged { path: path() }),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(Error::Io { path: path(), source }),
                };
                hasher.update(&buf[..n]);
                announced -= n;
                left -= n as u64;
            }
            listing.file(rel, executable, size, hasher.finalize().as_bytes())
        }
    })
}
