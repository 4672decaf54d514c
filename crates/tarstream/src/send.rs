//! `send`: walks a directory in canonical order and writes one deterministic tar stream,
//! hashing file contents into the tree digest as they are copied.

use std::{
    fs::File,
    io::{self, Read, Write},
    path::Path,
};

use rustix::fd::AsFd;

use crate::{
    Error, Summary, TreeHasher,
    direct::{self, Direct, MoveError},
    error::entry_path,
    header::{self, BLOCK, EntryHeader},
    links::{self, Symlinks},
    walk::{self, Files, Item},
};

/// The output buffer: big enough that large files move in few system calls, small enough
/// for the memory bound.
pub(crate) const OUT_BUF: usize = 1 << 20;

/// Writes the tree at `dir` to `out` as one tar stream, and returns what it sent with the tree
/// digest computed on the way.
///
/// The stream is deterministic: entries in canonical order (see [`canonical_cmp`]), regular
/// files mode 0644 or 0755 (the owner's executable bit decides), directories 0755, symlinks
/// 0777, mtime 0, uid and gid 0, empty user and group names; ustar headers, with a PAX header
/// before an entry whose path or link target is longer than 100 bytes or whose size is 8 GiB
/// or more. Hard links in the tree are sent as separate regular files. The stream ends with
/// the end-of-archive marker (two zero blocks) and no record padding. `docs/protocol.md`
/// specifies it.
///
/// `out` gets large writes (up to 1 MiB); it needs no buffering of its own.
///
/// # Errors
///
/// [`Error::UnsupportedFileType`] for a socket, fifo or device in the tree (naming it);
/// [`Error::SymlinkEscape`] for a symlink that [`receive`](crate::receive) would refuse
/// (absolute, or resolving outside the tree), in which case the stream is left without its
/// end marker so that no reader takes it for complete; [`Error::Io`] when reading the tree
/// fails; [`Error::Write`] when `out` fails; [`Error::FileChanged`] when a file shrinks while
/// it is read.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("bin"))?;
/// std::fs::write(dir.path().join("bin/tool"), b"#!/bin/sh\n")?;
///
/// let mut stream = Vec::new();
/// let sent = tarstream::send(dir.path(), &mut stream)?;
/// assert_eq!((sent.dirs, sent.files), (1, 1));
/// assert_eq!(sent.stream_bytes, stream.len() as u64);
/// assert_eq!(sent.digest, tarstream::digest_dir(dir.path())?.digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`canonical_cmp`]: crate::canonical_cmp
pub fn send(dir: &Path, out: impl Write) -> Result<Summary, Error> {
    send_buffered(dir, out, OUT_BUF, Hashing::On)
}

/// Like [`send`], byte for byte the same stream, without hashing file contents: for a sender
/// that knows the tree digest already (a cache serving a committed artifact, whose metadata
/// holds it) or has no use for it. Hashing is about a quarter of `send`'s CPU time. Returns
/// the number of bytes written.
///
/// # Errors
///
/// As for [`send`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("f"), b"data")?;
/// let (mut hashed, mut plain) = (Vec::new(), Vec::new());
/// tarstream::send(dir.path(), &mut hashed)?;
/// let written = tarstream::send_without_digest(dir.path(), &mut plain)?;
/// assert!(hashed == plain, "the same stream");
/// assert_eq!(written, 512 + 512 + 1024); // header, data block, end marker
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_without_digest(dir: &Path, out: impl Write) -> Result<u64, Error> {
    send_buffered(dir, out, OUT_BUF, Hashing::Off).map(|summary| summary.stream_bytes)
}

/// Like [`send_without_digest`], byte for byte the same stream, into a file descriptor: where
/// `out` is a pipe, the data of large files moves into it with `splice(2)` (for a file system
/// that keeps files in the page cache, the pipe then refers to the file's pages: no copy at
/// all), and where it is a regular file, with `copy_file_range(2)`. Headers, small files and
/// padding go through the 1 MiB buffer as usual, and anything else (a socket, a terminal) gets
/// only buffered writes, as does a file system that refuses the kernel's copy. Returns the
/// number of bytes written.
///
/// As with `sendfile(2)`, spliced data is read from the file's pages when the reader drains
/// the pipe, which may be after this returns: a file rewritten in place meanwhile shows its new
/// bytes. A tree that changes while it is sent gives no consistent stream on any path.
///
/// `artifact pack` writes its standard output this way.
///
/// # Errors
///
/// As for [`send`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("big"), vec![7u8; 1 << 20])?;
/// let mut plain = Vec::new();
/// tarstream::send_without_digest(dir.path(), &mut plain)?;
///
/// // Into a regular file: the file's data is copied by the kernel.
/// let mut out = tempfile::tempfile()?;
/// let written = tarstream::send_to_fd(dir.path(), &out)?;
/// assert_eq!(written, plain.len() as u64);
/// let mut sent = Vec::new();
/// std::io::Seek::rewind(&mut out)?;
/// std::io::Read::read_to_end(&mut out, &mut sent)?;
/// assert!(sent == plain, "the same stream");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_to_fd(dir: &Path, out: impl AsFd) -> Result<u64, Error> {
    let out = File::from(
        out.as_fd().try_clone_to_owned().map_err(|source| Error::Write { offset: 0, source })?,
    );
    let direct = Direct::new(&out);
    send_through(dir, Out::new(&out, OUT_BUF).direct(direct), &mut Vec::new(), Hashing::Off)
        .map(|summary| summary.stream_bytes)
}

/// Like [`send_without_digest`], through the caller's output buffer `buf`: a sender of many
/// streams keeps a few buffers and sends each stream through one of them, with no allocation
/// (and no zeroing of a fresh one) per stream, and chooses their size, which is the largest
/// write `out` gets. `buf` is used at its length (grown with zeros to 2 KiB if it is shorter),
/// keeps that length, and holds no meaningful content on return.
///
/// # Errors
///
/// As for [`send`].
///
/// # Example
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("f"), vec![1; 100_000])?;
/// let mut buf = vec![0; 64 << 10];
/// let (mut plain, mut through) = (Vec::new(), Vec::new());
/// tarstream::send_without_digest(dir.path(), &mut plain)?;
/// tarstream::send_without_digest_buffered(dir.path(), &mut through, &mut buf)?;
/// assert!(plain == through, "the same stream");
/// assert_eq!(buf.len(), 64 << 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_without_digest_buffered(
    dir: &Path,
    out: impl Write,
    buf: &mut Vec<u8>,
) -> Result<u64, Error> {
    send_through(dir, Out::with_buf(out, std::mem::take(buf)), buf, Hashing::Off)
        .map(|summary| summary.stream_bytes)
}

/// Whether [`send_buffered`] computes the tree digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hashing {
    On,
    /// The summary's digest is then that of an empty tree, and must not be used.
    Off,
}

/// [`send`] with an output buffer of `buf_size` bytes (the largest write `out` gets).
pub(crate) fn send_buffered(
    dir: &Path,
    out: impl Write,
    buf_size: usize,
    hashing: Hashing,
) -> Result<Summary, Error> {
    send_through(dir, Out::new(out, buf_size), &mut Vec::new(), hashing)
}

/// [`send`] through `out`; its buffer is put in `buf` whatever the outcome.
fn send_through<W: Write>(
    dir: &Path,
    out: Out<W>,
    buf: &mut Vec<u8>,
    hashing: Hashing,
) -> Result<Summary, Error> {
    let span = tracing::debug_span!("send", path = %dir.display());
    let _enter = span.enter();
    let root = walk::open_root(dir)?;
    let mut sender = Sender {
        out,
        tree: (hashing == Hashing::On).then(TreeHasher::new),
        summary: Summary::empty(),
        symlinks: Symlinks::default(),
        scratch: Vec::with_capacity(3 * BLOCK),
        name: Vec::with_capacity(256),
    };
    let sent = (|| {
        walk::walk(root.as_fd(), dir, Files::Open, |rel, item| sender.entry(dir, rel, item))?;
        sender.symlinks.check(root.as_fd(), dir)?;
        sender.out.put(&[0; 2 * BLOCK])?;
        sender.out.flush()
    })();
    *buf = std::mem::take(&mut sender.out.buf);
    sent?;
    let mut summary = sender.summary;
    if let Some(tree) = sender.tree {
        summary.digest = tree.finish();
    }
    summary.stream_bytes = sender.out.written;
    tracing::debug!(bytes = summary.stream_bytes, entries = summary.entries(), "sent");
    Ok(summary)
}

struct Sender<W> {
    out: Out<W>,
    /// `None` without hashing.
    tree: Option<TreeHasher>,
    summary: Summary,
    symlinks: Symlinks,
    /// Encoded headers.
    scratch: Vec<u8>,
    /// A directory's name with its trailing `/`.
    name: Vec<u8>,
}

impl<W: Write> Sender<W> {
    fn entry(&mut self, root: &Path, rel: &[u8], item: Item<'_>) -> Result<(), Error> {
        const ORDER: &str = "the walk visits entries in canonical order";
        match item {
            Item::Dir => {
                self.name.clear();
                self.name.extend_from_slice(rel);
                self.name.push(b'/');
                let entry =
                    EntryHeader { flag: b'5', path: &self.name, link: b"", size: 0, mode: 0o755 };
                put_header(&mut self.out, &mut self.scratch, &entry)?;
                if let Some(tree) = &mut self.tree {
                    tree.dir(rel).expect(ORDER);
                }
                self.summary.dirs += 1;
            }
            Item::Symlink { target } => {
                if links::lexical_escape(rel, target) {
                    return Err(Error::SymlinkEscape {
                        entry: entry_path(rel),
                        target: entry_path(target),
                    });
                }
                let entry =
                    EntryHeader { flag: b'2', path: rel, link: target, size: 0, mode: 0o777 };
                put_header(&mut self.out, &mut self.scratch, &entry)?;
                if let Some(tree) = &mut self.tree {
                    tree.symlink(rel, target).expect(ORDER);
                }
                self.symlinks.push(rel);
                self.summary.symlinks += 1;
            }
            Item::File { file, size, executable } => {
                let file = file.expect("the walk opens files for send");
                let mode = if executable { 0o755 } else { 0o644 };
                let entry = EntryHeader { flag: b'0', path: rel, link: b"", size, mode };
                put_header(&mut self.out, &mut self.scratch, &entry)?;
                let path = || root.join(entry_path(rel));
                match &mut self.tree {
                    Some(tree) => {
                        let mut hasher = blake3::Hasher::new();
                        self.out.copy_file(file, size, Some(&mut hasher), &path)?;
                        tree.file(rel, executable, size, hasher.finalize().as_bytes())
                            .expect(ORDER);
                    }
                    None => self.out.copy_file(file, size, None, &path)?,
                }
                self.summary.files += 1;
                self.summary.file_bytes += size;
            }
        }
        Ok(())
    }
}

fn put_header<W: Write>(
    out: &mut Out<W>,
    scratch: &mut Vec<u8>,
    entry: &EntryHeader<'_>,
) -> Result<(), Error> {
    scratch.clear();
    header::encode(entry, scratch);
    out.put(scratch)
}

/// A big output buffer in front of the writer, which file data is read into directly.
pub(crate) struct Out<W> {
    inner: W,
    buf: Vec<u8>,
    pos: usize,
    written: u64,
    /// Where the data of large unhashed files goes past the buffer, straight to `inner`'s
    /// file descriptor.
    direct: Option<Direct>,
}

impl<W: Write> Out<W> {
    /// An output buffer of `buf_size` bytes (at least four blocks) in front of `inner`.
    pub(crate) fn new(inner: W, buf_size: usize) -> Self {
        Out::with_buf(inner, vec![0; buf_size])
    }

    /// An output buffer in front of `inner` that is `buf`, grown to four blocks if shorter
    /// (the caller's, taken back with [`Out::into_buf`]).
    pub(crate) fn with_buf(inner: W, mut buf: Vec<u8>) -> Self {
        if buf.len() < 4 * BLOCK {
            buf.resize(4 * BLOCK, 0);
        }
        Out { inner, buf, pos: 0, written: 0, direct: None }
    }

    /// The buffer, for the caller's next stream.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// Moves the data of large files that are not hashed with `direct` (the file descriptor
    /// `inner` writes to).
    fn direct(mut self, direct: Option<Direct>) -> Self {
        self.direct = direct;
        self
    }

    pub(crate) fn put(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            if self.pos == self.buf.len() {
                self.flush_buf()?;
            }
            let n = bytes.len().min(self.buf.len() - self.pos);
            self.buf[self.pos..self.pos + n].copy_from_slice(&bytes[..n]);
            self.pos += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    pub(crate) fn zeros(&mut self, mut n: usize) -> Result<(), Error> {
        while n > 0 {
            if self.pos == self.buf.len() {
                self.flush_buf()?;
            }
            let k = n.min(self.buf.len() - self.pos);
            self.buf[self.pos..self.pos + k].fill(0);
            self.pos += k;
            n -= k;
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of `file` (then its padding) into the stream, hashing them
    /// into `hasher` if there is one.
    fn copy_file(
        &mut self,
        mut file: File,
        size: u64,
        mut hasher: Option<&mut blake3::Hasher>,
        path: &dyn Fn() -> std::path::PathBuf,
    ) -> Result<(), Error> {
        let mut left = size;
        if hasher.is_none() && size >= direct::MIN_DIRECT {
            left = self.move_file(&file, size, path)?;
        }
        while left > 0 {
            if self.pos == self.buf.len() {
                self.flush_buf()?;
            }
            let room = (self.buf.len() - self.pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            let chunk = &mut self.buf[self.pos..self.pos + room];
            let n = match file.read(chunk) {
                Ok(0) => return Err(Error::FileChanged { path: path() }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Io { path: path(), source }),
            };
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(&chunk[..n]);
            }
            self.pos += n;
            left -= n as u64;
        }
        self.zeros(header::padding(size))
    }

    /// Moves `size` bytes of `file` (from its current offset) into the stream through the
    /// kernel, after what is buffered, where there is a route; returns how many bytes are left
    /// for the buffered copy: all of them without a route, the rest if the kernel refused it
    /// part way (the file's offset has then moved past what went).
    fn move_file(
        &mut self,
        file: &File,
        size: u64,
        path: &dyn Fn() -> std::path::PathBuf,
    ) -> Result<u64, Error> {
        if self.direct.is_none() {
            return Ok(size);
        }
        // The walk opens files non-blocking (a fifo raced into place must not hang it), and
        // `splice` from a non-blocking file gives up when the pipe is full: clear the flag,
        // or keep to the buffered copy if that fails.
        if rustix::fs::fcntl_setfl(file, rustix::fs::OFlags::empty()).is_err() {
            return Ok(size);
        }
        self.flush_buf()?;
        let mut left = size;
        while left > 0 {
            let Some(direct) = &self.direct else { break };
            match direct.write_from(file, left) {
                Ok(0) => return Err(Error::FileChanged { path: path() }),
                Ok(n) => {
                    left -= n as u64;
                    self.written += n as u64;
                }
                Err(MoveError::Unsupported) => self.direct = None,
                Err(MoveError::Failed(source)) if direct::is_stream_write_error(&source) => {
                    return Err(Error::Write { offset: self.written, source });
                }
                Err(MoveError::Failed(source)) => return Err(Error::Io { path: path(), source }),
            }
        }
        Ok(left)
    }

    /// Copies `len` bytes of `file` from offset `from` into the stream with positioned reads
    /// (no padding).
    pub(crate) fn copy_at(
        &mut self,
        file: &File,
        mut from: u64,
        len: u64,
        path: &dyn Fn() -> std::path::PathBuf,
    ) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let mut left = len;
        while left > 0 {
            if self.pos == self.buf.len() {
                self.flush_buf()?;
            }
            let room = (self.buf.len() - self.pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read_at(&mut self.buf[self.pos..self.pos + room], from) {
                Ok(0) => return Err(Error::FileChanged { path: path() }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Io { path: path(), source }),
            };
            self.pos += n;
            from += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), Error> {
        let result = self.inner.write_all(&self.buf[..self.pos]);
        if let Err(source) = result {
            return Err(Error::Write { offset: self.written, source });
        }
        self.written += self.pos as u64;
        self.pos = 0;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        self.flush_buf()?;
        self.inner.flush().map_err(|source| Error::Write { offset: self.written, source })
    }
}
