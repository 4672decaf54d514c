//! Deterministic, hostile-input-safe conversion between a directory tree and a tar stream.
//!
//! NOTE: under construction (issue 2). What is here now: the tree digest
//! ([`Digest`], [`TreeHasher`], [`digest_dir`]) and [`Summary`].

mod digest;
mod error;
mod summary;

pub use digest::{Digest, OutOfOrder, ParseDigestError, TreeHasher, canonical_cmp};
pub use error::Error;
pub use summary::Summary;

use std::path::Path;

/// Computes the tree digest of the directory `dir` by walking it (no tar encoding).
pub fn digest_dir(dir: &Path) -> Result<Summary, Error> {
    walk_digest::digest_dir(dir)
}

mod walk_digest;
