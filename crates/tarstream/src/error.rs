//! [`Error`]: everything that can go wrong while sending, receiving or hashing a tree.

use std::{fmt, io, path::PathBuf};

/// An error from [`send`](crate::send), [`receive`](crate::receive) or
/// [`digest_dir`](crate::digest_dir), naming the entry and the rule broken.
///
/// Entry names (`entry`) are the paths inside the tree, as the stream spells them (lossless on
/// Unix, printed with `{:?}` so that control characters in hostile names are escaped). Offsets
/// are byte positions in the tar stream.
///
/// ```
/// use tarstream::{Error, ReceiveOptions};
///
/// let dir = tempfile::tempdir()?;
/// // A stream that stops before the end-of-archive marker.
/// let err = tarstream::receive(&dir.path().join("out"), &[][..]).unwrap_err();
/// assert!(err.is_truncated() && err.is_hostile());
/// assert!(matches!(err, Error::Truncated { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the local file system failed.
    #[error("i/o error at {path:?}")]
    Io {
        /// The path on disk the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the input tar stream failed (for the async adapters: the source failed, or the
    /// future was dropped).
    #[error("reading the tar stream failed at byte {offset}")]
    Read {
        /// Bytes of stream read before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the output tar stream failed (for the async adapters: the consumer went away).
    #[error("writing the tar stream failed at byte {offset}")]
    Write {
        /// Bytes of stream written before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `send`: the tree holds something a tar stream of ours cannot carry.
    #[error("cannot send {path:?}: it is a {kind}")]
    UnsupportedFileType {
        /// The path on disk.
        path: PathBuf,
        /// What it is: `socket`, `fifo`, `character device`, `block device`.
        kind: &'static str,
    },
    /// `send_range`: the range asked for is reversed or ends beyond the stream.
    #[error("byte range {start}..{end} is not within the stream's {len} bytes")]
    BadRange {
        /// The first byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The stream's length.
        len: u64,
    },
    /// An index file is malformed, or its records do not give the digest or stream length it
    /// claims.
    #[error("bad entry index at byte {offset}: {reason}")]
    BadIndex {
        /// Where in the index file (or, for a record added to an `IndexBuilder`, the stream
        /// offset the entry would have had).
        offset: u64,
        /// The rule broken.
        reason: &'static str,
    },
    /// `send`: a file shrank while it was being read.
    #[error("{path:?} changed while it was being sent")]
    FileChanged {
        /// The path on disk.
        path: PathBuf,
    },
    /// `receive`: the destination exists and is not an empty directory.
    #[error("destination {path:?} is not an empty directory")]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// The stream ended early (a truncated transfer, or no end-of-archive marker).
    #[error("tar stream truncated {within} at byte {offset}{}", entry_suffix(.entry))]
    Truncated {
        /// Bytes of stream read before it ended.
        offset: u64,
        /// The entry being read, if any.
        entry: Option<PathBuf>,
        /// Which part of the stream was cut.
        within: Section,
    },
    /// A header block's checksum does not match its content.
    #[error("bad header checksum at byte {offset}")]
    BadChecksum {
        /// Where the header starts.
        offset: u64,
    },
    /// A header block is malformed (unknown format, a number that is not strict octal or
    /// base-256, a field that contradicts the entry type...).
    #[error("malformed tar header at byte {offset}{}: {reason}", entry_suffix(.entry))]
    BadHeader {
        /// Where the header starts.
        offset: u64,
        /// The entry, when its name could be read.
        entry: Option<PathBuf>,
        /// The rule broken.
        reason: &'static str,
    },
    /// A PAX extended header (or a GNU long name) is malformed or would change how the stream
    /// is framed in a way we do not accept.
    #[error("bad extended header at byte {offset}: {reason}")]
    BadExtendedHeader {
        /// Where the extended header starts.
        offset: u64,
        /// The rule broken.
        reason: &'static str,
    },
    /// An entry type we never materialise: devices, fifos, GNU sparse files, volume labels,
    /// multi-volume continuations, vendor extensions.
    #[error("entry {entry:?} at byte {offset} has unsupported type {flag:?} ({kind})")]
    UnsupportedEntryType {
        /// Where the entry's header starts.
        offset: u64,
        /// The entry.
        entry: PathBuf,
        /// The typeflag byte, as a character.
        flag: char,
        /// What it means.
        kind: &'static str,
    },
    /// Non-zero bytes follow the end-of-archive marker.
    #[error("data after the end of the archive at byte {offset}")]
    TrailingData {
        /// Where the first non-zero byte after the marker is.
        offset: u64,
    },
    /// An entry name that could write outside the destination or is not a plain relative
    /// path: absolute, `..`, NUL, empty.
    #[error("unsafe entry name {entry:?}: {reason}")]
    UnsafePath {
        /// The entry name as the stream spells it.
        entry: PathBuf,
        /// The rule broken.
        reason: &'static str,
    },
    /// An entry would be written through a symlink that an earlier entry created.
    #[error("entry {entry:?} would be written through the symlink {symlink:?}")]
    ThroughSymlink {
        /// The entry.
        entry: PathBuf,
        /// The symlink in its way.
        symlink: PathBuf,
    },
    /// A symlink's target is absolute or resolves outside the tree.
    #[error("symlink {entry:?} points outside the tree (target {target:?})")]
    SymlinkEscape {
        /// The symlink.
        entry: PathBuf,
        /// Its target.
        target: PathBuf,
    },
    /// A hard link whose target is not an earlier regular file inside the tree.
    #[error("hard link {entry:?} to {target:?}: {reason}")]
    BadHardLink {
        /// The link.
        entry: PathBuf,
        /// Its target as the stream names it.
        target: PathBuf,
        /// The rule broken.
        reason: &'static str,
    },
    /// An entry collides with one already received (a duplicate, or a file where a directory
    /// is needed).
    #[error("entry {entry:?} conflicts with an earlier entry: {reason}")]
    Conflict {
        /// The entry.
        entry: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },
    /// A [`ReceiveOptions`](crate::ReceiveOptions) limit was hit; nothing beyond it was
    /// written or allocated.
    #[error("{limit} exceeded{}", entry_suffix(.entry))]
    LimitExceeded {
        /// The limit.
        limit: Limit,
        /// The entry that would have gone over it, if any.
        entry: Option<PathBuf>,
    },
}

fn entry_suffix(entry: &Option<PathBuf>) -> String {
    match entry {
        Some(entry) => format!(" (entry {entry:?})"),
        None => String::new(),
    }
}

impl Error {
    /// True when local or stream i/o failed ([`Error::Io`], [`Error::Read`],
    /// [`Error::Write`]) rather than the stream breaking a rule.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Read { .. } | Error::Write { .. })
    }

    /// True when the stream itself is at fault: malformed, truncated, unsafe, or over a
    /// limit. Whoever sent it is to blame; retrying the same bytes cannot help.
    pub fn is_hostile(&self) -> bool {
        matches!(
            self,
            Error::Truncated { .. }
                | Error::BadChecksum { .. }
                | Error::BadHeader { .. }
                | Error::BadExtendedHeader { .. }
                | Error::UnsupportedEntryType { .. }
                | Error::TrailingData { .. }
                | Error::UnsafePath { .. }
                | Error::ThroughSymlink { .. }
                | Error::SymlinkEscape { .. }
                | Error::BadHardLink { .. }
                | Error::Conflict { .. }
                | Error::LimitExceeded { .. }
        )
    }

    /// True when the stream ended early ([`Error::Truncated`]): a transfer cut short, which a
    /// retry may fix.
    pub fn is_truncated(&self) -> bool {
        matches!(self, Error::Truncated { .. })
    }

    /// True when a [`ReceiveOptions`](crate::ReceiveOptions) limit was hit.
    pub fn is_limit(&self) -> bool {
        matches!(self, Error::LimitExceeded { .. })
    }

    /// True for a `receive` [`Error::Io`] that the shape of the entry being created explains
    /// (its name too long or not encodable, a file too large, too many links or symlinks on a
    /// path, a kind clash with what the stream made before), not the state of the destination:
    /// it would happen on any healthy disk, so the stream that asked for it is at fault.
    ///
    /// ```
    /// use std::io;
    /// let err = tarstream::Error::Io { path: "x".into(), source: io::Error::from_raw_os_error(36) };
    /// assert!(err.is_entry_fault(), "ENAMETOOLONG: the entry's name");
    /// let err = tarstream::Error::Io { path: "x".into(), source: io::ErrorKind::StorageFull.into() };
    /// assert!(!err.is_entry_fault() && err.is_local(), "a full disk is the destination's");
    /// ```
    pub fn is_entry_fault(&self) -> bool {
        use io::ErrorKind::*;
        let Error::Io { source, .. } = self else { return false };
        matches!(
            source.kind(),
            InvalidFilename
                | FileTooLarge
                | TooManyLinks
                | NotADirectory
                | IsADirectory
                | AlreadyExists
                | DirectoryNotEmpty
                | InvalidInput
        ) || source.raw_os_error().is_some_and(|code| code == EILSEQ || code == ELOOP)
    }

    /// True for an [`Error::Io`] that the destination's state explains (a full disk, a
    /// read-only or unwritable directory), not the stream: another source of the same stream
    /// would fail the same way.
    pub fn is_local(&self) -> bool {
        matches!(self, Error::Io { .. }) && !self.is_entry_fault()
    }
}

/// `EILSEQ`: a name the file system cannot encode.
const EILSEQ: i32 = if cfg!(target_os = "linux") { 84 } else { 92 };
/// `ELOOP`: too many symlinks on a path.
const ELOOP: i32 = if cfg!(target_os = "linux") { 40 } else { 62 };

/// Which part of a tar stream was cut short ([`Error::Truncated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Section {
    /// Inside a header block.
    Header,
    /// Inside a PAX extended header or GNU long name.
    ExtendedHeader,
    /// Inside an entry's data.
    Data,
    /// Inside the zero padding after an entry's data.
    Padding,
    /// At an entry boundary or inside the marker: the end-of-archive marker is missing.
    EndMarker,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "inside a header",
            Section::ExtendedHeader => "inside an extended header",
            Section::Data => "inside file data",
            Section::Padding => "inside padding",
            Section::EndMarker => "before the end-of-archive marker",
        })
    }
}

/// A [`ReceiveOptions`](crate::ReceiveOptions) limit ([`Error::LimitExceeded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Total bytes of tar stream.
    Bytes(u64),
    /// Entries materialised (files, directories, symlinks, hard links).
    Entries(u64),
    /// Bytes in one entry's path (or link target).
    PathLength(usize),
    /// Bytes of one PAX extended header.
    ExtendedHeader(u64),
    /// Zero bytes after the end-of-archive marker.
    TrailingZeros(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Bytes(max) => write!(f, "stream size limit of {max} bytes"),
            Limit::Entries(max) => write!(f, "entry count limit of {max}"),
            Limit::PathLength(max) => write!(f, "path length limit of {max} bytes"),
            Limit::ExtendedHeader(max) => write!(f, "extended header limit of {max} bytes"),
            Limit::TrailingZeros(max) => {
                write!(f, "limit of {max} zero bytes after the end-of-archive marker")
            }
        }
    }
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

impl<T> IoResultExt<T> for rustix::io::Result<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|errno| Error::Io { path: path.into(), source: errno.into() })
    }
}

/// Turns stream bytes into a [`PathBuf`] for an error message, losslessly.
pub(crate) fn entry_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}
