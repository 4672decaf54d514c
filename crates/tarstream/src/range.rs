//! `send_range`: any byte range of a tree's canonical stream, produced from its [`Index`]
//! by seeking, never by producing and discarding what comes before.

use std::{
    ffi::OsStr,
    fs::File,
    io::Write,
    ops::Range,
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::Path,
};

use rustix::{
    fd::{AsFd, BorrowedFd},
    fs::{FileType, Mode, OFlags, ResolveFlags},
    io::Errno,
};

use crate::{
    Error, Index,
    error::entry_path,
    header::BLOCK,
    index::EntryKind,
    send::{OUT_BUF, Out},
    walk,
};

/// Writes bytes `range` of the canonical stream of the tree at `dir` (the stream
/// [`send`](crate::send) writes) to `out`, using the tree's `index`, and returns the number of
/// bytes written (`range.end - range.start`).
///
/// It starts at the entry that holds `range.start` (a binary search of the index), encodes
/// that entry's headers, reads file data with positioned reads from the offset the range
/// asks for, and continues with the following entries until `range.end`: the cost is that
/// of the bytes sent, wherever the range lies. Files are opened by their path below `dir`
/// without following any symlink.
///
/// # Errors
///
/// [`Error::BadRange`] when the range is reversed or ends beyond the stream;
/// [`Error::FileChanged`] when a file the range covers is gone, is no longer a regular file,
/// or no longer has the size the index records (the bytes written so far are then the
/// stream's, and it stops there); [`Error::Io`] when reading the tree fails;
/// [`Error::Write`] when `out` fails.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), vec![b'a'; 3000])?;
/// let index = tarstream::index_dir(dir.path())?;
///
/// let mut whole = Vec::new();
/// tarstream::send(dir.path(), &mut whole)?;
/// let mut part = Vec::new();
/// tarstream::send_range(dir.path(), &index, 700..2600, &mut part)?;
/// assert_eq!(part, whole[700..2600]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_range(
    dir: &Path,
    index: &Index,
    range: Range<u64>,
    out: impl Write,
) -> Result<u64, Error> {
    let len = range.end.saturating_sub(range.start);
    let buf_size = usize::try_from(len).unwrap_or(OUT_BUF).clamp(4 * BLOCK, OUT_BUF);
    send_range_buffered(dir, index, range, out, &mut vec![0; buf_size])
}

/// Like [`send_range`], through the caller's output buffer `buf`, as
/// [`send_without_digest_buffered`](crate::send_without_digest_buffered) does for a whole
/// stream: no allocation per range, and `buf`'s length is the largest write `out` gets.
///
/// # Errors
///
/// As for [`send_range`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), vec![b'a'; 30_000])?;
/// let index = tarstream::index_dir(dir.path())?;
/// let mut buf = vec![0; 4096];
///
/// let mut whole = Vec::new();
/// tarstream::send_range(dir.path(), &index, 0..index.stream_len(), &mut whole)?;
/// let mut part = Vec::new();
/// tarstream::send_range_buffered(dir.path(), &index, 700..26_000, &mut part, &mut buf)?;
/// assert_eq!(part, whole[700..26_000]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_range_buffered(
    dir: &Path,
    index: &Index,
    range: Range<u64>,
    out: impl Write,
    buf: &mut Vec<u8>,
) -> Result<u64, Error> {
    let Range { start, end } = range;
    let len = index.stream_len();
    if start > end || end > len {
        return Err(Error::BadRange { start, end, len });
    }
    let span = tracing::debug_span!("send_range", path = %dir.display(), start, end);
    let _enter = span.enter();
    let root = walk::open_root(dir)?;
    let mut out = Out::with_buf(out, std::mem::take(buf));
    let sent = write_range(dir, root.as_fd(), index, range, &mut out);
    *buf = out.into_buf();
    sent
}

/// The body of [`send_range_buffered`], once the range is checked and the root open.
fn write_range<W: Write>(
    dir: &Path,
    root: BorrowedFd<'_>,
    index: &Index,
    Range { start, end }: Range<u64>,
    out: &mut Out<W>,
) -> Result<u64, Error> {
    let mut scratch = Vec::with_capacity(3 * BLOCK);
    let mut name = Vec::with_capacity(256);
    let mut pos = start;
    if let Some(first) = index.find(start) {
        for i in first..index.len() {
            if pos >= end {
                break;
            }
            let entry = index.entry(i);
            let data = entry.data_offset();
            if pos < data {
                scratch.clear();
                index.encode_header(i, &mut name, &mut scratch);
                let from = (pos - entry.offset) as usize;
                let to = (end.min(data) - entry.offset) as usize;
                out.put(&scratch[from..to])?;
                pos = entry.offset + to as u64;
            }
            let EntryKind::File { size, .. } = entry.kind else { continue };
            let path = || dir.join(entry_path(entry.path));
            if pos < end && pos < data + size {
                let file = open_file(root, entry.path, size).map_err(|errno| match errno {
                    Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::XDEV => {
                        Error::FileChanged { path: path() }
                    }
                    errno => Error::Io { path: path(), source: errno.into() },
                })?;
                let file = file.ok_or_else(|| Error::FileChanged { path: path() })?;
                let n = end.min(data + size) - pos;
                out.copy_at(&file, pos - data, n, &path)?;
                pos += n;
            }
            let next = entry.end();
            if pos < end && pos < next {
                let n = end.min(next) - pos;
                out.zeros(n as usize)?;
                pos += n;
            }
        }
    }
    // What is left lies in the end marker.
    out.zeros((end - pos) as usize)?;
    out.flush()?;
    Ok(end - start)
}

/// Opens the regular file at `rel` below `root` without following symlinks; `None` when it
/// is not a regular file of `size` bytes.
fn open_file(root: BorrowedFd<'_>, rel: &[u8], size: u64) -> Result<Option<File>, Errno> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => fd,
        // No openat2 (old kernel, a sandbox), or a path longer than PATH_MAX: one component at
        // a time.
        Err(Errno::NOSYS | Errno::PERM | Errno::NAMETOOLONG) => open_by_components(root, rel)?,
        Err(errno) => return Err(errno),
    };
    let stat = rustix::fs::fstat(&fd)?;
    let regular = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
    Ok((regular && u64::try_from(stat.st_size) == Ok(size)).then(|| File::from(fd)))
}

fn open_by_components(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut parts = rel.split(|&c| c == b'/').peekable();
    let mut dir: Option<OwnedFd> = None;
    while let Some(part) = parts.next() {
        let at = dir.as_ref().map_or(root, |fd| fd.as_fd());
        let name = OsStr::from_bytes(part);
        if parts.peek().is_none() {
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
            return rustix::fs::openat(at, name, flags, Mode::empty());
        }
        dir = Some(rustix::fs::openat(at, name, dir_flags, Mode::empty())?);
    }
    Err(Errno::NOENT)
}
