//! Deterministic, hostile-input-safe conversion between a directory tree and a tar stream.
//!
//! NOTE: under construction (issue 2).

mod dest;
mod digest;
mod error;
mod header;
mod input;
mod links;
mod options;
mod receive;
mod send;
mod summary;
mod walk;
mod walk_digest;

pub use digest::{Digest, OutOfOrder, ParseDigestError, TreeHasher, canonical_cmp};
pub use error::{Error, Limit, Section};
pub use options::ReceiveOptions;
pub use receive::{receive, receive_with};
pub use send::send;
pub use summary::Summary;
pub use walk_digest::digest_dir;
