//! The directory walk shared by `send`, `digest_dir` and the symlink check: entries in
//! canonical order, every path opened relative to its parent's fd without following links.
//!
//! Siblings are read with `getdents64` into one reused buffer, sorted by name bytes, and
//! visited depth first, which is exactly the canonical order of the tree digest. Memory is the
//! sibling lists of the directories on the current path (freed lists are reused), never a
//! list of the whole tree.

use std::{
    ffi::{CStr, OsStr},
    fs::File,
    mem::MaybeUninit,
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use rustix::{
    fd::{AsFd, BorrowedFd},
    fs::{AtFlags, FileType, Mode, OFlags, RawDir},
    io::Errno,
};

use crate::{Error, error::IoResultExt};

/// One entry found by the walk.
pub(crate) enum Item<'a> {
    /// A directory (reported before its contents).
    Dir,
    /// A regular file, opened for reading; `file` is `None` when the walk does not open files.
    File { file: Option<File>, size: u64, executable: bool },
    /// A symbolic link and its target.
    Symlink { target: &'a [u8] },
}

/// What the walk opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Files {
    /// Open and `fstat` every regular file.
    Open,
    /// Report regular files by name only (size 0, not executable): for walks that only care
    /// about the shape of the tree and its symlinks.
    Skip,
}

/// Opens the root directory of a walk (following a symlink at `dir` itself: that is the
/// caller's choice of path).
pub(crate) fn open_root(dir: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_path(dir)
}

/// (start in the names buffer, length without the NUL, type from the directory entry).
type Entry = (usize, usize, FileType);

/// Sibling lists of finished directories, kept for reuse.
type Pool = Vec<(Vec<u8>, Vec<Entry>)>;

struct Level {
    fd: OwnedFd,
    /// NUL-terminated names, back to back.
    names: Vec<u8>,
    entries: Vec<Entry>,
    next: usize,
    /// The length of the relative path of this directory.
    rel_len: usize,
}

/// Walks the tree below `root` (whose path on disk, for error messages, is `root_path`) in
/// canonical order, calling `visit` with each entry's relative `/`-separated path.
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    root_path: &Path,
    files: Files,
    mut visit: impl FnMut(&[u8], Item<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut dirbuf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut pool: Pool = Vec::new();
    let mut rel: Vec<u8> = Vec::with_capacity(256);
    let mut target = Vec::with_capacity(256);
    let root_fd = rustix::fs::openat(
        root,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_path(root_path)?;
    let mut stack = vec![read_level(root_fd, 0, &mut dirbuf, &mut pool, root_path, &rel)?];
    while let Some(top) = stack.last_mut() {
        let Some(&(start, len, dtype)) = top.entries.get(top.next) else {
            let done = stack.pop().expect("the loop saw a top level");
            pool.push((done.names, done.entries));
            continue;
        };
        top.next += 1;
        rel.truncate(top.rel_len);
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&top.names[start..start + len]);
        let name = CStr::from_bytes_with_nul(&top.names[start..=start + len])
            .expect("names are stored NUL-terminated");
        let dir = top.fd.as_fd();
        let path = || root_path.join(OsStr::from_bytes(&rel));
        let kind = match dtype {
            FileType::Unknown => {
                let stat =
                    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).with_path(path())?;
                FileType::from_raw_mode(stat.st_mode)
            }
            known => known,
        };
        match kind {
            FileType::Directory => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| changed_or_io(e, path()))?;
                visit(&rel, Item::Dir)?;
                let level = read_level(fd, rel.len(), &mut dirbuf, &mut pool, root_path, &rel)?;
                stack.push(level);
            }
            FileType::RegularFile if files == Files::Skip => {
                visit(&rel, Item::File { file: None, size: 0, executable: false })?;
            }
            FileType::RegularFile => {
                // O_NONBLOCK: if a racing rename put a fifo here, opening it must not block.
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| changed_or_io(e, path()))?;
                let stat = rustix::fs::fstat(&fd).with_path(path())?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(Error::FileChanged { path: path() });
                }
                let size = u64::try_from(stat.st_size).unwrap_or(0);
                let executable = stat.st_mode & 0o100 != 0;
                visit(&rel, Item::File { file: Some(File::from(fd)), size, executable })?;
            }
            FileType::Symlink => {
                let link = rustix::fs::readlinkat(dir, name, std::mem::take(&mut target))
                    .map_err(|e| changed_or_io(e, path()))?;
                target = link.into_bytes();
                visit(&rel, Item::Symlink { target: &target })?;
            }
            other => {
                let kind = match other {
                    FileType::Fifo => "fifo",
                    FileType::Socket => "socket",
                    FileType::CharacterDevice => "character device",
                    FileType::BlockDevice => "block device",
                    _ => "file of unknown type",
                };
                return Err(Error::UnsupportedFileType { path: path(), kind });
            }
        }
    }
    Ok(())
}

/// An entry that vanished or changed type between listing and opening.
fn changed_or_io(errno: Errno, path: PathBuf) -> Error {
    match errno {
        Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::INVAL => Error::FileChanged { path },
        other => Error::Io { path, source: other.into() },
    }
}

/// Lists a directory into a level, sorted by name bytes.
fn read_level(
    fd: OwnedFd,
    rel_len: usize,
    dirbuf: &mut [MaybeUninit<u8>],
    pool: &mut Pool,
    root_path: &Path,
    rel: &[u8],
) -> Result<Level, Error> {
    let (mut names, mut entries) = pool.pop().unwrap_or_default();
    names.clear();
    entries.clear();
    let mut iter = RawDir::new(&fd, dirbuf);
    while let Some(entry) = iter.next() {
        let entry = entry.with_path(root_path.join(OsStr::from_bytes(rel)))?;
        let name = entry.file_name().to_bytes_with_nul();
        if name == b".\0" || name == b"..\0" {
            continue;
        }
        entries.push((names.len(), name.len() - 1, entry.file_type()));
        names.extend_from_slice(name);
    }
    entries.sort_unstable_by(|a, b| names[a.0..a.0 + a.1].cmp(&names[b.0..b.0 + b.1]));
    Ok(Level { fd, names, entries, next: 0, rel_len })
}
