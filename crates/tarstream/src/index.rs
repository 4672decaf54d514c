//! [`Index`]: the entry index of a tree's canonical stream (where each entry starts, what it
//! is, each file's hash), its file format, and [`index_dir`].
//!
//! The stream `send` writes is a function of the tree's canonical listing, so the offset of
//! every entry follows from the listing alone: an index is built from the same records as the
//! tree digest, costs no read of its own, and can be checked against that digest when it is
//! loaded. [`send_range`](crate::send_range) uses it to produce any byte range of the stream
//! without producing what comes before.

use std::{
    io::{self, Read, Write},
    path::Path,
};

use crate::{
    Digest, Error, Summary, TreeHasher,
    header::{self, BLOCK, EntryHeader},
    walk_digest,
};

/// The first bytes of an index file.
const MAGIC: &[u8; 8] = b"artindex";
/// The version of the file format this code reads and writes.
const VERSION: u32 = 1;
/// The end-of-archive marker: two zero blocks.
pub(crate) const END_MARKER: u64 = 2 * BLOCK as u64;
/// The longest path or symlink target an index file may hold (far above what `receive`
/// accepts by default).
const MAX_NAME: usize = 1 << 20;

/// What one entry of a tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind<'a> {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Whether the owner's executable bit is set.
        executable: bool,
        /// The plain BLAKE3 hash of its content.
        hash: &'a [u8; 32],
    },
    /// A symbolic link.
    Symlink {
        /// Its target, byte for byte.
        target: &'a [u8],
    },
}

/// One entry of an [`Index`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Where the entry's first header block (its PAX header, when it has one) starts in the
    /// stream.
    pub offset: u64,
    /// Bytes of header blocks before the entry's data (512, or more with a PAX header).
    pub header_len: u64,
    /// The entry's relative path, `/`-separated, without a trailing `/`.
    pub path: &'a [u8],
    /// What it is.
    pub kind: EntryKind<'a>,
}

impl Entry<'_> {
    /// Where the entry's data starts in the stream (for a file; for other kinds, where the
    /// next entry starts).
    pub fn data_offset(&self) -> u64 {
        self.offset + self.header_len
    }

    /// Where the next entry (or the end marker) starts.
    pub fn end(&self) -> u64 {
        match self.kind {
            EntryKind::File { size, .. } => {
                self.data_offset() + size + header::padding(size) as u64
            }
            _ => self.data_offset(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { size: u64, executable: bool, hash: [u8; 32] },
    Symlink { target: (usize, usize) },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    offset: u64,
    header_len: u64,
    path: (usize, usize),
    kind: Kind,
}

/// The entry index of a tree's canonical stream: for each entry in stream order, its offset,
/// path and kind, and for a file its size, executable bit and BLAKE3 hash; with the tree
/// digest and the stream's exact length.
///
/// Build one with [`index_dir`], or with an [`IndexBuilder`] fed the same records as a
/// [`TreeHasher`]. [`Index::write_to`] and [`Index::read_from`] store it; reading recomputes
/// every offset and the digest from the records, so a loaded index is checked against the
/// digest it claims.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"hello")?;
/// let index = tarstream::index_dir(dir.path())?;
///
/// let mut stream = Vec::new();
/// let sent = tarstream::send(dir.path(), &mut stream)?;
/// assert_eq!(index.stream_len(), stream.len() as u64);
/// assert_eq!(index.digest(), sent.digest);
///
/// let file = index.entries().next().unwrap();
/// assert_eq!(file.path, b"a.txt");
/// let data = file.data_offset() as usize;
/// assert_eq!(&stream[data..data + 5], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    digest: Digest,
    stream_len: u64,
    records: Vec<Record>,
    /// Paths and symlink targets, back to back.
    names: Vec<u8>,
}

impl Index {
    /// The tree digest of the tree the index describes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The exact length of the tree's canonical stream, end marker included.
    pub fn stream_len(&self) -> u64 {
        self.stream_len
    }

    /// The number of entries (files, directories and symlinks).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The entries in stream order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        (0..self.records.len()).map(|i| self.entry(i))
    }

    /// The `i`-th entry in stream order.
    ///
    /// # Panics
    ///
    /// If `i` is not below [`len`](Self::len).
    pub fn entry(&self, i: usize) -> Entry<'_> {
        let record = &self.records[i];
        let name = |(start, len): (usize, usize)| &self.names[start..start + len];
        Entry {
            offset: record.offset,
            header_len: record.header_len,
            path: name(record.path),
            kind: match &record.kind {
                Kind::Dir => EntryKind::Dir,
                Kind::File { size, executable, hash } => {
                    EntryKind::File { size: *size, executable: *executable, hash }
                }
                Kind::Symlink { target } => EntryKind::Symlink { target: name(*target) },
            },
        }
    }

    /// The position of the entry whose bytes (headers, data, padding) contain stream offset
    /// `offset`, or `None` when `offset` lies in the end marker or beyond.
    pub fn find(&self, offset: u64) -> Option<usize> {
        if offset >= self.stream_len - END_MARKER {
            return None;
        }
        // The first record starts at 0, so at least one record has an offset <= `offset`.
        Some(self.records.partition_point(|r| r.offset <= offset) - 1)
    }

    /// What the tree holds, as [`digest_dir`](crate::digest_dir) would report it, with
    /// `stream_bytes` the stream's length.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::empty();
        for record in &self.records {
            match record.kind {
                Kind::Dir => summary.dirs += 1,
                Kind::File { size, .. } => {
                    summary.files += 1;
                    summary.file_bytes += size;
                }
                Kind::Symlink { .. } => summary.symlinks += 1,
            }
        }
        summary.digest = self.digest;
        summary.stream_bytes = self.stream_len;
        summary
    }

    /// Writes the index in its file format (version 1, little-endian): the magic
    /// `artindex`, the version, the digest, the stream length, the entry count, then per
    /// entry its kind (`d`, `f`, `l`), executable bit, path length, for a file its size and
    /// hash, for a symlink its target's length and the target, and the path.
    ///
    /// # Errors
    ///
    /// The writer's error.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(self.digest.as_bytes());
        buf.extend_from_slice(&self.stream_len.to_le_bytes());
        buf.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        for entry in self.entries() {
            let (kind, executable) = match entry.kind {
                EntryKind::Dir => (b'd', false),
                EntryKind::File { executable, .. } => (b'f', executable),
                EntryKind::Symlink { .. } => (b'l', false),
            };
            buf.push(kind);
            buf.push(u8::from(executable));
            buf.extend_from_slice(&(entry.path.len() as u32).to_le_bytes());
            match entry.kind {
                EntryKind::Dir => {}
                EntryKind::File { size, hash, .. } => {
                    buf.extend_from_slice(&size.to_le_bytes());
                    buf.extend_from_slice(hash);
                }
                EntryKind::Symlink { target } => {
                    buf.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    buf.extend_from_slice(target);
                }
            }
            buf.extend_from_slice(entry.path);
            if buf.len() >= 60 * 1024 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)?;
        out.flush()
    }

    /// Reads an index written by [`write_to`](Self::write_to), recomputing every offset and
    /// the tree digest from its records.
    ///
    /// # Errors
    ///
    /// [`Error::BadIndex`] when the bytes are not an index of this format, a record breaks a
    /// rule (order, path shape, lengths), the data ends early or goes on after the last
    /// record, or the recomputed digest or stream length differ from the stored ones;
    /// [`Error::Read`] when the reader fails.
    pub fn read_from(input: impl Read) -> Result<Index, Error> {
        let mut input = Input { inner: input, offset: 0 };
        let mut head = [0u8; 8 + 4 + 4 + 32 + 8 + 8];
        input.exact(&mut head)?;
        if &head[..8] != MAGIC {
            return Err(bad_index(0, "not an index file (bad magic)"));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad_index(8, "unsupported index version"));
        }
        if head[12..16] != [0; 4] {
            return Err(bad_index(12, "reserved bytes are not zero"));
        }
        let digest = Digest::from(<[u8; 32]>::try_from(&head[16..48]).expect("32 bytes"));
        let stream_len = u64::from_le_bytes(head[48..56].try_into().expect("8 bytes"));
        let count = u64::from_le_bytes(head[56..64].try_into().expect("8 bytes"));

        let mut builder = IndexBuilder::new();
        let mut path = Vec::new();
        let mut target = Vec::new();
        for _ in 0..count {
            let at = input.offset;
            let mut fixed = [0u8; 6];
            input.exact(&mut fixed)?;
            let executable = match fixed[1] {
                0 => false,
                1 => true,
                _ => return Err(bad_index(at, "executable flag is neither 0 nor 1")),
            };
            let path_len = u32::from_le_bytes(fixed[2..6].try_into().expect("4 bytes")) as usize;
            match fixed[0] {
                b'd' | b'l' if executable => {
                    return Err(bad_index(at, "only files carry an executable bit"));
                }
                b'd' => {
                    input.name(&mut path, path_len, at)?;
                    builder.dir(&path)?;
                }
                b'f' => {
                    let mut rest = [0u8; 40];
                    input.exact(&mut rest)?;
                    let size = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                    let hash = <[u8; 32]>::try_from(&rest[8..]).expect("32 bytes");
                    input.name(&mut path, path_len, at)?;
                    builder.file(&path, executable, size, &hash)?;
                }
                b'l' => {
                    let mut len = [0u8; 4];
                    input.exact(&mut len)?;
                    input.name(&mut target, u32::from_le_bytes(len) as usize, at)?;
                    input.name(&mut path, path_len, at)?;
                    builder.symlink(&path, &target)?;
                }
                _ => return Err(bad_index(at, "unknown entry kind")),
            }
        }
        let mut one = [0u8; 1];
        match input.inner.read(&mut one) {
            Ok(0) => {}
            Ok(_) => return Err(bad_index(input.offset, "data after the last record")),
            Err(source) => return Err(Error::Read { offset: input.offset, source }),
        }
        let index = builder.finish();
        if index.digest != digest {
            return Err(bad_index(16, "the records do not have the stored tree digest"));
        }
        if index.stream_len != stream_len {
            return Err(bad_index(48, "the records do not give the stored stream length"));
        }
        Ok(index)
    }
}

fn bad_index(offset: u64, reason: &'static str) -> Error {
    Error::BadIndex { offset, reason }
}

/// The reader of [`Index::read_from`], counting bytes for error messages.
struct Input<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Input<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(bad_index(self.offset, "the index ends early"))
            }
            Err(source) => Err(Error::Read { offset: self.offset, source }),
        }
    }

    /// Reads a name of `len` bytes into `into`, refusing lengths no tree can have before
    /// allocating for them.
    fn name(&mut self, into: &mut Vec<u8>, len: usize, at: u64) -> Result<(), Error> {
        if len > MAX_NAME {
            return Err(bad_index(at, "a name is longer than 1 MiB"));
        }
        into.resize(len, 0);
        self.exact(into)
    }
}

/// Builds an [`Index`] from records fed in canonical order, like a [`TreeHasher`] (which it
/// runs alongside, so the index knows its digest).
///
/// ```
/// let mut builder = tarstream::IndexBuilder::new();
/// builder.dir(b"bin")?;
/// builder.file(b"bin/tool", true, 5, blake3::hash(b"#!sh\n").as_bytes())?;
/// builder.symlink(b"latest", b"bin/tool")?;
/// let index = builder.finish();
/// // Three headers, one data block, the end marker.
/// assert_eq!(index.stream_len(), 3 * 512 + 512 + 1024);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct IndexBuilder {
    tree: TreeHasher,
    records: Vec<Record>,
    names: Vec<u8>,
    offset: u64,
    scratch: Vec<u8>,
    dir_name: Vec<u8>,
}

impl IndexBuilder {
    /// An empty index (of an empty directory, until records are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory.
    ///
    /// # Errors
    ///
    /// [`Error::BadIndex`] when the path is not a clean relative path or comes out of
    /// canonical order.
    pub fn dir(&mut self, path: &[u8]) -> Result<(), Error> {
        check_path(path, self.offset)?;
        self.tree.dir(path).map_err(|_| out_of_order(self.offset))?;
        self.push(path, Kind::Dir, 0)
    }

    /// Adds a regular file of `size` bytes whose content hashes (plain BLAKE3) to `hash`.
    ///
    /// # Errors
    ///
    /// As for [`dir`](Self::dir).
    pub fn file(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        hash: &[u8; 32],
    ) -> Result<(), Error> {
        check_path(path, self.offset)?;
        self.tree.file(path, executable, size, hash).map_err(|_| out_of_order(self.offset))?;
        self.push(path, Kind::File { size, executable, hash: *hash }, size)
    }

    /// Adds a symbolic link with the given target.
    ///
    /// # Errors
    ///
    /// As for [`dir`](Self::dir); also when the target is empty or holds a NUL byte.
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error> {
        check_path(path, self.offset)?;
        if target.is_empty() || target.contains(&0) {
            return Err(bad_index(self.offset, "a symlink target is empty or holds a NUL"));
        }
        self.tree.symlink(path, target).map_err(|_| out_of_order(self.offset))?;
        let start = self.names.len();
        self.names.extend_from_slice(target);
        self.push(path, Kind::Symlink { target: (start, target.len()) }, 0)
    }

    /// The index of everything added.
    pub fn finish(self) -> Index {
        Index {
            digest: self.tree.finish(),
            stream_len: self.offset + END_MARKER,
            records: self.records,
            names: self.names,
        }
    }

    fn push(&mut self, path: &[u8], kind: Kind, size: u64) -> Result<(), Error> {
        let start = self.names.len();
        self.names.extend_from_slice(path);
        let mut record =
            Record { offset: self.offset, header_len: 0, path: (start, path.len()), kind };
        self.scratch.clear();
        let header_len =
            encode_header(&self.names, &record, &mut self.dir_name, &mut self.scratch) as u64;
        record.header_len = header_len;
        self.offset = self
            .offset
            .checked_add(header_len + size + header::padding(size) as u64)
            .ok_or_else(|| bad_index(self.offset, "the stream would be longer than 2^64 bytes"))?;
        self.records.push(record);
        Ok(())
    }
}

fn out_of_order(offset: u64) -> Error {
    bad_index(offset, "an entry is out of canonical order")
}

/// A path an index may hold: relative, non-empty components, none `.` or `..`, no NUL.
fn check_path(path: &[u8], offset: u64) -> Result<(), Error> {
    let clean = !path.is_empty()
        && path.len() <= MAX_NAME
        && !path.contains(&0)
        && path.split(|&c| c == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..");
    if clean {
        Ok(())
    } else {
        Err(bad_index(offset, "an entry's path is not a clean relative path"))
    }
}

/// Appends the header block(s) `send` writes for `record` to `out` and returns their length;
/// `name` is scratch space for a directory's name with its trailing `/`.
fn encode_header(names: &[u8], record: &Record, name: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    let (start, len) = record.path;
    let path = &names[start..start + len];
    let entry = match record.kind {
        Kind::Dir => {
            name.clear();
            name.extend_from_slice(path);
            name.push(b'/');
            EntryHeader { flag: b'5', path: name, link: b"", size: 0, mode: 0o755 }
        }
        Kind::File { size, executable, .. } => EntryHeader {
            flag: b'0',
            path,
            link: b"",
            size,
            mode: if executable { 0o755 } else { 0o644 },
        },
        Kind::Symlink { target: (start, len) } => {
            EntryHeader { flag: b'2', path, link: &names[start..start + len], size: 0, mode: 0o777 }
        }
    };
    header::encode(&entry, out)
}

impl Index {
    /// Appends the header block(s) of entry `i` to `out` (for `send_range`).
    pub(crate) fn encode_header(&self, i: usize, name: &mut Vec<u8>, out: &mut Vec<u8>) {
        encode_header(&self.names, &self.records[i], name, out);
    }
}

/// Builds the [`Index`] of the directory `dir` by walking it and hashing every file, as
/// [`digest_dir`](crate::digest_dir) does.
///
/// # Errors
///
/// As for [`digest_dir`](crate::digest_dir).
pub fn index_dir(dir: &Path) -> Result<Index, Error> {
    let mut builder = IndexBuilder::new();
    walk_digest::walk_records(dir, &mut builder)?;
    Ok(builder.finish())
}

impl walk_digest::Listing for IndexBuilder {
    fn dir(&mut self, path: &[u8]) -> Result<(), Error> {
        IndexBuilder::dir(self, path)
    }

    fn file(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        hash: &[u8; 32],
    ) -> Result<(), Error> {
        IndexBuilder::file(self, path, executable, size, hash)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error> {
        IndexBuilder::symlink(self, path, target)
    }
}
