//! `receive`: the strict read loop that turns one tar stream into a tree inside a directory,
//! hashing entries into the tree digest as they arrive.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::AsFd,
    path::Path,
};

use crate::{
    Error, Index, IndexBuilder, ReceiveOptions, Summary, TreeHasher, bigfile,
    dest::Dest,
    direct::Direct,
    error::{IoResultExt, Limit, Section, entry_path},
    header::{self, BLOCK, DecodeError, Kind},
    input::{Input, Short},
    links::{self, Symlinks},
    walk_digest,
};

/// The largest PAX extended header accepted (records for one entry, or global ones).
const MAX_PAX: u64 = 1 << 20;

/// Reads one tar stream from `input` and materialises it inside `dir`, with the default
/// [`ReceiveOptions`]. See [`receive_with`].
///
/// ```
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("hello.txt"), b"hello\n")?;
/// let mut stream = Vec::new();
/// let sent = tarstream::send(src.path(), &mut stream)?;
///
/// let dst = tempfile::tempdir()?;
/// let got = tarstream::receive(&dst.path().join("copy"), &stream[..])?;
/// assert_eq!(got.digest, sent.digest);
/// assert_eq!(std::fs::read(dst.path().join("copy/hello.txt"))?, b"hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive(dir: &Path, input: impl Read) -> Result<Summary, Error> {
    receive_with(dir, input, &ReceiveOptions::default())
}

/// Reads one tar stream from `input` and materialises it inside `dir`, which is created (one
/// level) if absent and must otherwise be an empty directory.
///
/// Accepts ustar, GNU and PAX archives (as GNU tar, bsdtar and Python's `tarfile` write them)
/// holding regular files, directories, symlinks and hard links, within the safety rules of
/// `docs/protocol.md`: no absolute names, no `..`, nothing written through a symlink, no
/// symlink resolving outside the tree, hard links only to earlier regular files, no devices,
/// fifos or sparse files, strict header checksums and numbers, the end-of-archive marker
/// required and nothing but zeros after it (at most
/// [`ReceiveOptions::max_trailing_zeros`]). Modes are normalised (0644/0755, or 0444/0555
/// with [`ReceiveOptions::read_only`]; directories 0755) whatever the umask; owners and times
/// are not restored.
///
/// The digest is computed as the bytes pass when the stream lists entries in canonical order
/// (as [`send`](crate::send) does); for a foreign archive in another order, or with hard
/// links, it is computed afterwards by [`digest_dir`](crate::digest_dir) over the result.
///
/// On error, `dir` may hold part of the tree (never anything outside it): the caller deletes
/// it.
pub fn receive_with(
    dir: &Path,
    input: impl Read,
    options: &ReceiveOptions,
) -> Result<Summary, Error> {
    let ledger = Ledger::Hash(TreeHasher::new());
    receive_listed(dir, Input::new(input), options, ledger).map(|(summary, _)| summary)
}

/// Like [`receive_with`], under the same rules, without computing the tree digest: for a
/// receiver that has no use for it (`artifact unpack` without `--json`). Hashing is most of
/// the CPU time of receiving large files. Returns the number of bytes of stream read.
///
/// # Errors
///
/// As for [`receive_with`].
///
/// ```
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("a.txt"), b"hello")?;
/// let mut stream = Vec::new();
/// tarstream::send(src.path(), &mut stream)?;
///
/// let dst = tempfile::tempdir()?;
/// let options = tarstream::ReceiveOptions::default();
/// let read = tarstream::receive_without_digest(&dst.path().join("copy"), &stream[..], &options)?;
/// assert_eq!(read, stream.len() as u64);
/// assert_eq!(std::fs::read(dst.path().join("copy/a.txt"))?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive_without_digest(
    dir: &Path,
    input: impl Read,
    options: &ReceiveOptions,
) -> Result<u64, Error> {
    receive_listed(dir, Input::new(input), options, Ledger::Off)
        .map(|(summary, _)| summary.stream_bytes)
}

/// Like [`receive_without_digest`], from a file descriptor: where `input` is a pipe, the data
/// of large files moves from it to the new files with `splice(2)`, and where it is a regular
/// file, with `copy_file_range(2)`, instead of being read into memory and written out again.
/// Headers, small files and padding are read through the 1 MiB buffer as usual, with every
/// rule of [`receive_with`] applied; anything else (a socket, a terminal) is only read, as is
/// input that the kernel refuses to copy. Returns the number of bytes of stream read.
///
/// `artifact unpack` reads its standard input this way.
///
/// # Errors
///
/// As for [`receive_with`]: a stream that ends inside a file's data is
/// [`Error::Truncated`] at the same offset whichever way the data came.
///
/// ```
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("big"), vec![7u8; 1 << 20])?;
/// let mut file = tempfile::tempfile()?;
/// let sent = tarstream::send_to_fd(src.path(), &file)?;
/// std::io::Seek::rewind(&mut file)?;
///
/// let dst = tempfile::tempdir()?;
/// let options = tarstream::ReceiveOptions::default();
/// let read = tarstream::receive_from_fd(&dst.path().join("copy"), &file, &options)?;
/// assert_eq!(read, sent);
/// assert_eq!(std::fs::read(dst.path().join("copy/big"))?, vec![7u8; 1 << 20]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive_from_fd(
    dir: &Path,
    input: impl AsFd,
    options: &ReceiveOptions,
) -> Result<u64, Error> {
    let input = File::from(
        input.as_fd().try_clone_to_owned().map_err(|source| Error::Read { offset: 0, source })?,
    );
    let direct = Direct::new(&input);
    receive_listed(dir, Input::new(&input).direct(direct), options, Ledger::Off)
        .map(|(summary, _)| summary.stream_bytes)
}

/// Like [`receive_with`], and also returns the received tree's [`Index`] (the entry index of
/// its canonical stream, with each file's hash), built from the same records as the digest:
/// for a sender that will serve byte ranges of what it received. The index costs memory in
/// proportion to the number of entries (about 100 bytes each).
///
/// # Errors
///
/// As for [`receive_with`].
///
/// ```
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("a.txt"), b"hello")?;
/// let mut stream = Vec::new();
/// tarstream::send(src.path(), &mut stream)?;
///
/// let dst = tempfile::tempdir()?;
/// let options = tarstream::ReceiveOptions::default();
/// let (got, index) =
///     tarstream::receive_with_index(&dst.path().join("copy"), &stream[..], &options)?;
/// assert_eq!(index.digest(), got.digest);
/// assert_eq!(index.stream_len(), stream.len() as u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive_with_index(
    dir: &Path,
    input: impl Read,
    options: &ReceiveOptions,
) -> Result<(Summary, Index), Error> {
    let ledger = Ledger::Index(IndexBuilder::new());
    let (summary, index) = receive_listed(dir, Input::new(input), options, ledger)?;
    Ok((summary, index.expect("an index ledger gives an index")))
}

fn receive_listed<R: Read>(
    dir: &Path,
    input: Input<R>,
    options: &ReceiveOptions,
    ledger: Ledger,
) -> Result<(Summary, Option<Index>), Error> {
    let span = tracing::debug_span!("receive", path = %dir.display());
    let _enter = span.enter();
    let dest = Dest::open(dir, options.read_only)?;
    let indexing = matches!(ledger, Ledger::Index(_));
    let mut rx = Receiver {
        input,
        dest,
        book: Book {
            tree: ledger,
            summary: Summary::empty(),
            entries: 0,
            streaming: true,
            max_entries: options.max_entries,
        },
        options,
        symlinks: Symlinks::default(),
        pending: Pending::default(),
        name: Vec::with_capacity(256),
        path: Vec::with_capacity(256),
        link: Vec::with_capacity(256),
    };
    rx.run()?;
    rx.symlinks.check(rx.dest.root(), dir)?;
    let stream_bytes = rx.input.offset();
    let (mut summary, index) = if rx.book.streaming {
        let mut summary = rx.book.summary;
        match rx.book.tree {
            Ledger::Hash(tree) => {
                summary.digest = tree.finish();
                (summary, None)
            }
            Ledger::Index(builder) => {
                let index = builder.finish();
                summary.digest = index.digest();
                (summary, Some(index))
            }
            Ledger::Off => (summary, None),
        }
    } else if matches!(rx.book.tree, Ledger::Off) {
        (rx.book.summary, None)
    } else {
        tracing::debug!("stream not in canonical order; hashing the received tree");
        if indexing {
            let mut builder = IndexBuilder::new();
            walk_digest::walk_root(rx.dest.root(), dir, &mut builder)?;
            let index = builder.finish();
            (index.summary(), Some(index))
        } else {
            (walk_digest::digest_root(rx.dest.root(), dir)?, None)
        }
    };
    summary.stream_bytes = stream_bytes;
    tracing::debug!(bytes = stream_bytes, entries = summary.entries(), "received");
    Ok((summary, index))
}

/// What the records of the tree go into as they arrive: the digest alone, the index (which
/// computes the digest too), or nothing.
enum Ledger {
    Hash(TreeHasher),
    Index(IndexBuilder),
    /// No digest: file contents are not hashed, and the summary's digest is that of an empty
    /// tree, not to be used.
    Off,
}

impl Ledger {
    /// Each returns whether the record was taken (false: out of canonical order).
    fn dir(&mut self, path: &[u8]) -> bool {
        match self {
            Ledger::Hash(tree) => tree.dir(path).is_ok(),
            Ledger::Index(index) => index.dir(path).is_ok(),
            Ledger::Off => true,
        }
    }

    fn file(&mut self, path: &[u8], executable: bool, size: u64, hash: &[u8; 32]) -> bool {
        match self {
            Ledger::Hash(tree) => tree.file(path, executable, size, hash).is_ok(),
            Ledger::Index(index) => index.file(path, executable, size, hash).is_ok(),
            Ledger::Off => true,
        }
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> bool {
        match self {
            Ledger::Hash(tree) => tree.symlink(path, target).is_ok(),
            Ledger::Index(index) => index.symlink(path, target).is_ok(),
            Ledger::Off => true,
        }
    }
}

/// Extended header values waiting for the entry they apply to.
#[derive(Default)]
struct Pending {
    /// A PAX header came for the next entry (a second one is an error).
    pax_seen: bool,
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn any(&self) -> bool {
        self.pax_seen || self.long_name.is_some() || self.long_link.is_some()
    }
}

/// The running digest (or index), counts and entry limit.
struct Book {
    tree: Ledger,
    summary: Summary,
    entries: u64,
    /// Still hashing in stream order (false once a record came out of order, or a hard link).
    streaming: bool,
    max_entries: u64,
}

impl Book {
    fn admit(&mut self, entry: &[u8]) -> Result<(), Error> {
        if self.entries >= self.max_entries {
            return Err(Error::LimitExceeded {
                limit: Limit::Entries(self.max_entries),
                entry: Some(entry_path(entry)),
            });
        }
        self.entries += 1;
        Ok(())
    }

    /// Books a directory created implicitly as a parent, or by its own entry.
    fn dir(&mut self, path: &[u8]) -> Result<(), Error> {
        self.admit(path)?;
        if self.streaming && !self.tree.dir(path) {
            self.streaming = false;
        }
        self.summary.dirs += 1;
        Ok(())
    }
}

struct Receiver<'o, R> {
    input: Input<R>,
    dest: Dest,
    book: Book,
    options: &'o ReceiveOptions,
    symlinks: Symlinks,
    pending: Pending,
    /// The raw name of the current entry.
    name: Vec<u8>,
    /// Its normalised path.
    path: Vec<u8>,
    /// Its raw link target.
    link: Vec<u8>,
}

impl<R: Read> Receiver<'_, R> {
    fn run(&mut self) -> Result<(), Error> {
        loop {
            let offset = self.input.offset();
            let block = match self.input.block()? {
                Ok(block) => block,
                Err(Short { got, zeros }) => {
                    let within = if zeros && !self.pending.any() {
                        Section::EndMarker
                    } else {
                        Section::Header
                    };
                    return Err(Error::Truncated { offset: offset + got, entry: None, within });
                }
            };
            if header::is_zero_block(&block) {
                return self.end(offset);
            }
            let header = header::decode(&block).map_err(|err| match err {
                DecodeError::Checksum => Error::BadChecksum { offset },
                DecodeError::Malformed(reason) => Error::BadHeader { offset, entry: None, reason },
            })?;
            match header.kind {
                Kind::PaxLocal => {
                    if self.pending.pax_seen {
                        return Err(ext_error(offset, "two PAX headers for one entry"));
                    }
                    self.pending.pax_seen = true;
                    let data =
                        self.extended(header.size, MAX_PAX, Limit::ExtendedHeader(MAX_PAX))?;
                    self.pax(offset, &data, false)?;
                }
                Kind::PaxGlobal => {
                    let data =
                        self.extended(header.size, MAX_PAX, Limit::ExtendedHeader(MAX_PAX))?;
                    self.pax(offset, &data, true)?;
                }
                Kind::GnuLongName | Kind::GnuLongLink => {
                    let long_name = header.kind == Kind::GnuLongName;
                    let slot =
                        if long_name { &self.pending.long_name } else { &self.pending.long_link };
                    if slot.is_some() {
                        return Err(ext_error(offset, "two GNU long names for one entry"));
                    }
                    let max = self.options.max_path_len as u64 + 1;
                    let limit = Limit::PathLength(self.options.max_path_len);
                    let mut data = self.extended(header.size, max, limit)?;
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    if data.is_empty() || data.contains(&0) {
                        return Err(ext_error(offset, "GNU long name empty or with a NUL inside"));
                    }
                    if long_name {
                        self.pending.long_name = Some(data);
                    } else {
                        self.pending.long_link = Some(data);
                    }
                }
                _ => {
                    self.name.clear();
                    match self.pending.path.take().or(self.pending.long_name.take()) {
                        Some(name) => self.name.extend_from_slice(&name),
                        None => header.name.write_to(&mut self.name),
                    }
                    self.link.clear();
                    match self.pending.link.take().or(self.pending.long_link.take()) {
                        Some(link) => self.link.extend_from_slice(&link),
                        None => self.link.extend_from_slice(header.link),
                    }
                    let size = self.pending.size.take().unwrap_or(header.size);
                    self.pending = Pending::default();
                    self.entry(offset, header.kind, header.mode, size)?;
                }
            }
        }
    }

    /// After the first zero block at `offset`: the second must follow, then only zeros.
    fn end(&mut self, offset: u64) -> Result<(), Error> {
        if self.pending.any() {
            return Err(ext_error(offset, "end of archive right after an extended header"));
        }
        match self.input.block()? {
            Err(Short { got, .. }) => {
                let offset = offset + BLOCK as u64 + got;
                return Err(Error::Truncated { offset, entry: None, within: Section::EndMarker });
            }
            Ok(block) if !header::is_zero_block(&block) => {
                return Err(Error::BadHeader {
                    offset: offset + BLOCK as u64,
                    entry: None,
                    reason: "a single zero block before more entries",
                });
            }
            Ok(_) => {}
        }
        let zeros_end = self.input.offset().saturating_add(self.options.max_trailing_zeros);
        let limit = if zeros_end < self.options.max_bytes {
            Limit::TrailingZeros(self.options.max_trailing_zeros)
        } else {
            Limit::Bytes(self.options.max_bytes)
        };
        match self.input.rest_is_zero(zeros_end.min(self.options.max_bytes))? {
            Ok(None) => Ok(()),
            Ok(Some(offset)) => Err(Error::TrailingData { offset }),
            Err(_) => Err(Error::LimitExceeded { limit, entry: None }),
        }
    }

    /// Checks that an entry of `size` data bytes fits the byte limit.
    fn check_bytes(&self, size: u64, entry: Option<&[u8]>) -> Result<(), Error> {
        let end = size
            .checked_add(header::padding(size) as u64)
            .and_then(|n| n.checked_add(self.input.offset()));
        if end.is_none_or(|end| end > self.options.max_bytes) {
            return Err(Error::LimitExceeded {
                limit: Limit::Bytes(self.options.max_bytes),
                entry: entry.map(entry_path),
            });
        }
        Ok(())
    }

    /// Reads the data of an extended header (at most `max` bytes, else `limit` is exceeded).
    fn extended(&mut self, size: u64, max: u64, limit: Limit) -> Result<Vec<u8>, Error> {
        if size > max {
            return Err(Error::LimitExceeded { limit, entry: None });
        }
        self.check_bytes(size, None)?;
        let mut data = Vec::with_capacity(size as usize);
        let read = self.input.data(size, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        if read.is_err() {
            return Err(truncated(&self.input, None, Section::ExtendedHeader));
        }
        skip_padding(&mut self.input, size, None)?;
        Ok(data)
    }

    /// Applies the records of a PAX header: local ones to the next entry; global ones are
    /// checked and ignored, unless they would change how entries are read.
    fn pax(&mut self, offset: u64, data: &[u8], global: bool) -> Result<(), Error> {
        for record in header::pax_records(data) {
            let record = record.map_err(|reason| ext_error(offset, reason))?;
            let key = record.key;
            let value = record.value;
            if key.starts_with(b"GNU.sparse.") {
                return Err(ext_error(offset, "GNU sparse files are not supported"));
            }
            if !matches!(key, b"path" | b"linkpath" | b"size") {
                continue;
            }
            if global {
                return Err(ext_error(offset, "a global PAX header sets path, linkpath or size"));
            }
            match key {
                b"size" => {
                    let size =
                        header::pax_size(value).map_err(|reason| ext_error(offset, reason))?;
                    self.pending.size = Some(size);
                }
                _ => {
                    if value.is_empty() || value.contains(&0) {
                        return Err(ext_error(offset, "empty path or linkpath, or one with a NUL"));
                    }
                    let slot = if key == b"path" {
                        &mut self.pending.path
                    } else {
                        &mut self.pending.link
                    };
                    *slot = Some(value.to_vec());
                }
            }
        }
        Ok(())
    }

    fn entry(&mut self, offset: u64, kind: Kind, mode: u32, size: u64) -> Result<(), Error> {
        if let Kind::Other(flag) = kind {
            return Err(Error::UnsupportedEntryType {
                offset,
                entry: entry_path(&self.name),
                flag: char::from(flag),
                kind: describe_type(flag),
            });
        }
        let bad = |entry: &[u8], reason| Error::BadHeader {
            offset,
            entry: Some(entry_path(entry)),
            reason,
        };
        normalise(&self.name, &mut self.path)
            .map_err(|reason| Error::UnsafePath { entry: entry_path(&self.name), reason })?;
        if self.path.is_empty() {
            // The root itself (`./`): accepted as a directory, nothing to create.
            if kind == Kind::Dir && size == 0 {
                return Ok(());
            }
            return Err(Error::UnsafePath { entry: entry_path(&self.name), reason: "empty name" });
        }
        let max_path = self.options.max_path_len;
        let too_long = |entry: &[u8]| Error::LimitExceeded {
            limit: Limit::PathLength(max_path),
            entry: Some(entry_path(entry)),
        };
        if self.path.len() > max_path {
            return Err(too_long(&self.name));
        }
        if kind == Kind::File {
            if self.name.ends_with(b"/") {
                return Err(bad(&self.name, "a regular file entry named like a directory"));
            }
            self.check_bytes(size, Some(&self.path))?;
        } else if size != 0 {
            return Err(bad(&self.name, "a directory or link entry with data"));
        }
        let Receiver { dest, book, path, link, input, symlinks, .. } = self;
        let (path, link) = (&path[..], &link[..]);
        match kind {
            Kind::Dir => {
                if dest.mkdir(path, &mut |prefix| book.dir(prefix))? {
                    book.dir(path)?;
                }
            }
            Kind::Symlink => {
                if link.len() > max_path {
                    return Err(too_long(path));
                }
                if links::lexical_escape(path, link) {
                    let target = entry_path(link);
                    return Err(Error::SymlinkEscape { entry: entry_path(path), target });
                }
                book.admit(path)?;
                dest.symlink(path, link, &mut |prefix| book.dir(prefix))?;
                if book.streaming && !book.tree.symlink(path, link) {
                    book.streaming = false;
                }
                book.summary.symlinks += 1;
                symlinks.push(path);
            }
            Kind::HardLink => {
                let mut target = Vec::new();
                normalise(link, &mut target).map_err(|reason| Error::BadHardLink {
                    entry: entry_path(path),
                    target: entry_path(link),
                    reason,
                })?;
                book.admit(path)?;
                dest.hard_link(path, &target, &mut |prefix| book.dir(prefix))?;
                // The digest needs the target's content hash: hash the tree afterwards.
                book.streaming = false;
                book.summary.files += 1;
            }
            Kind::File => {
                let executable = mode & 0o100 != 0;
                book.admit(path)?;
                let mut file =
                    dest.create_file(path, executable, &mut |prefix| book.dir(prefix))?;
                let on_disk = || dest.on_disk(path);
                let read = if matches!(book.tree, Ledger::Off) {
                    input.write_to(&mut file, size, &on_disk)?.map(|()| None)
                } else if size >= bigfile::MIN_SIZE {
                    bigfile::write_hashed(input, &mut file, size, &on_disk)?.map(Some)
                } else {
                    let mut hasher = blake3::Hasher::new();
                    input
                        .data(size, |chunk| {
                            hasher.update(chunk);
                            file.write_all(chunk).with_path(on_disk())
                        })?
                        .map(|()| Some(hasher.finalize()))
                };
                drop(file);
                let hash = read.map_err(|_| truncated(input, Some(path), Section::Data))?;
                skip_padding(input, size, Some(path))?;
                if let Some(hash) = hash
                    && book.streaming
                    && !book.tree.file(path, executable, size, hash.as_bytes())
                {
                    book.streaming = false;
                }
                book.summary.files += 1;
                book.summary.file_bytes += size;
            }
            Kind::PaxLocal
            | Kind::PaxGlobal
            | Kind::GnuLongName
            | Kind::GnuLongLink
            | Kind::Other(_) => {
                unreachable!("handled by the caller and above")
            }
        }
        Ok(())
    }
}

/// The error for a stream that ended early.
fn truncated<R: Read>(input: &Input<R>, entry: Option<&[u8]>, within: Section) -> Error {
    Error::Truncated { offset: input.offset(), entry: entry.map(entry_path), within }
}

/// Skips the padding after `size` bytes of data.
fn skip_padding<R: Read>(
    input: &mut Input<R>,
    size: u64,
    entry: Option<&[u8]>,
) -> Result<(), Error> {
    match input.skip(header::padding(size) as u64)? {
        Ok(()) => Ok(()),
        Err(_) => Err(truncated(input, entry, Section::Padding)),
    }
}

fn ext_error(offset: u64, reason: &'static str) -> Error {
    Error::BadExtendedHeader { offset, reason }
}

/// What an unsupported typeflag means.
fn describe_type(flag: u8) -> &'static str {
    match flag {
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "fifo",
        b'S' => "GNU sparse file",
        b'M' => "GNU multi-volume continuation",
        b'V' => "GNU volume label",
        b'D' => "GNU dump directory",
        b'N' => "GNU old long name",
        b'A'..=b'Z' => "vendor extension",
        _ => "unknown type",
    }
}

/// Normalises an entry name into `out`: drops empty and `.` components (so `./a//b/` becomes
/// `a/b`); refuses NUL, absolute names and `..`. The root itself normalises to empty.
pub(crate) fn normalise(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.contains(&0) {
        return Err("NUL in name");
    }
    if raw[0] == b'/' {
        return Err("absolute path");
    }
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("'..' component"),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_or_are_refused() {
        let ok: &[(&[u8], &[u8])] = &[
            (b"a", b"a"),
            (b"./a", b"a"),
            (b"././a/", b"a"),
            (b"a//b/./c", b"a/b/c"),
            (b"./", b""),
            (b".", b""),
            (b"..a/b..", b"..a/b.."),
        ];
        for (raw, want) in ok {
            let mut out = Vec::new();
            normalise(raw, &mut out).unwrap();
            assert_eq!(&out[..], *want, "{raw:?}");
        }
        for raw in [&b""[..], b"/a", b"a/../b", b"..", b"a/..", b"a\0b", b"//a"] {
            assert!(normalise(raw, &mut Vec::new()).is_err(), "{raw:?}");
        }
    }
}
