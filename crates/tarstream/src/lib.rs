//! Deterministic, hostile-input-safe conversion between a directory tree and a tar stream,
//! with a BLAKE3 tree digest computed as the bytes pass.
//!
//! # Example
//!
//! ```
//! use tarstream::ReceiveOptions;
//!
//! let src = tempfile::tempdir()?;
//! std::fs::create_dir(src.path().join("bin"))?;
//! std::fs::write(src.path().join("bin/tool"), b"#!/bin/sh\necho hi\n")?;
//! std::os::unix::fs::symlink("bin/tool", src.path().join("latest"))?;
//!
//! // Walk the tree into a tar stream (any `Write`: a pipe, a socket, a Vec).
//! let mut stream = Vec::new();
//! let sent = tarstream::send(src.path(), &mut stream)?;
//!
//! // Materialise it elsewhere, refusing anything unsafe; the digests match end to end.
//! let dst = tempfile::tempdir()?;
//! let options = ReceiveOptions::default().max_bytes(1 << 30);
//! let got = tarstream::receive_with(&dst.path().join("copy"), &stream[..], &options)?;
//! assert_eq!(got.digest, sent.digest);
//! assert_eq!(tarstream::digest_dir(&dst.path().join("copy"))?.digest, sent.digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Main items
//!
//! - [`send`] writes a directory as one deterministic tar stream: entries in canonical order,
//!   normalised modes (0644/0755 files, 0755 directories), no times or owners, PAX headers
//!   only where ustar fields are too small. GNU tar, bsdtar and Python's `tarfile` read it.
//! - [`receive`] and [`receive_with`] read one tar stream (ours, or ustar, GNU and PAX archives
//!   from other tools) into a directory, strictly: nothing is created, changed or followed
//!   outside it, and every rule broken is a typed [`Error`] naming the entry.
//!   [`ReceiveOptions`] sets limits (bytes, entries, path length) and read-only files.
//! - Where nobody needs the digest: [`send_without_digest`] and [`receive_without_digest`], and
//!   [`send_to_fd`] and [`receive_from_fd`], which also let the kernel move large files' data
//!   between a pipe (or a regular file) and the tree with `splice` or `copy_file_range`.
//! - [`digest_dir`] computes the same [`Digest`] by walking a directory; [`TreeHasher`] is the
//!   digest itself, for other producers of tree listings. Each call returns a [`Summary`].
//! - [`Index`] (from [`index_dir`] or an [`IndexBuilder`]) records where each entry starts in
//!   the stream, with each file's hash; [`send_range`] uses it to write any byte range of the
//!   stream by seeking, for ranged and resumed transfers.
//! - Async adapters (feature `tokio`): [`send_async`] into an `AsyncWrite`, [`send_stream`] as a
//!   `Stream` of `Bytes` for an HTTP body (with a guard dropped when the stream ends),
//!   [`receive_async`] from an `AsyncRead`, [`receive_stream`] from a `Stream` of `Bytes`.
//!   The file system work runs on Tokio's blocking pool; dropping the future or stream stops
//!   it.
//!
//! `docs/protocol.md` in the repository specifies the stream, the receive rules and the tree
//! digest byte for byte, with test vectors.
//!
//! Unix only: paths are bytes, and the destination is written with `openat`-style calls
//! relative to directory file descriptors.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tokio` | yes | the async adapters ([`send_async`], [`send_stream`], [`receive_async`], [`receive_stream`]) |

#[cfg(feature = "tokio")]
mod asyncio;
mod bigfile;
mod dest;
mod digest;
mod direct;
mod error;
mod header;
mod index;
mod input;
mod links;
mod options;
mod range;
mod receive;
mod send;
mod summary;
mod walk;
mod walk_digest;

#[cfg(feature = "tokio")]
pub use asyncio::{
    SendStream, SummaryHandle, receive_async, receive_stream, send_async, send_stream,
};
pub use digest::{Digest, OutOfOrder, ParseDigestError, TreeHasher, canonical_cmp};
pub use error::{Error, Limit, Section};
pub use index::{Entry, EntryKind, Index, IndexBuilder, index_dir};
pub use options::ReceiveOptions;
pub use range::{send_range, send_range_buffered};
pub use receive::{
    receive, receive_from_fd, receive_with, receive_with_index, receive_without_digest,
};
pub use send::{send, send_to_fd, send_without_digest, send_without_digest_buffered};
pub use summary::Summary;
pub use walk_digest::{digest_dir, digest_dir_with};

/// Entry points for the fuzz targets in the repository's `fuzz/` directory: the header and PAX
/// decoders that [`receive`] uses. Not part of the API: it may change in any release.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes one header block as [`receive`](crate::receive) does; `Some((type flag, size,
    /// mode))` when it is a valid header.
    pub fn decode_header(block: &[u8; 512]) -> Option<(u8, u64, u32)> {
        let header = crate::header::decode(block).ok()?;
        Some((block[156], header.size, header.mode))
    }

    /// One PAX record: keyword and value.
    pub type Record<'a> = (&'a [u8], &'a [u8]);

    /// Parses PAX extended header data as [`receive`](crate::receive) does: the well-formed
    /// records before the first malformed one, and whether one was malformed.
    pub fn pax_records(data: &[u8]) -> (Vec<Record<'_>>, bool) {
        let mut records = Vec::new();
        for record in crate::header::pax_records(data) {
            match record {
                Ok(record) => {
                    // A `size` record is parsed where it is met.
                    if record.key == b"size" {
                        let _ = crate::header::pax_size(record.value);
                    }
                    records.push((record.key, record.value));
                }
                Err(_) => return (records, true),
            }
        }
        (records, false)
    }
}
