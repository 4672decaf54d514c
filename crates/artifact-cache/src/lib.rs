//! An on-disk cache of artifact directories that threads and processes share safely.
//!
//! An *artifact* is a directory tree (files, directories, symlinks) produced by a build or CI
//! job and named by an [`ArtifactId`] that the build system computes, so once committed it
//! never changes. A [`Cache`] keeps artifacts under one root directory: a writer fills a
//! staging directory and commits it atomically; readers share it; nothing removes or evicts an
//! artifact while it is read. The rules hold between threads and between processes (OS file
//! locks under an in-process table), and across crashes: after `kill -9` at any point, every
//! artifact is whole or absent and no lock is stuck.
//!
//! # Example
//!
//! ```
//! use artifact_cache::{ArtifactId, Cache, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::open_with(dir.path().join("cache"), Options::default().max_bytes(Some(1 << 30)))?;
//! let id: ArtifactId = "5eed".parse()?;
//!
//! let writer = cache.create(&id)?;
//! std::fs::write(writer.path().join("hello.txt"), "hello")?;
//! let meta = writer.commit()?;
//! println!("{id}: {} bytes, digest {}", meta.size, meta.digest);
//!
//! let reader = cache.get(&id)?;
//! assert_eq!(std::fs::read_to_string(reader.path().join("hello.txt"))?, "hello");
//! assert_eq!(cache.verify(&id)?.digest, meta.digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Main types
//!
//! - [`Cache`]: [`open`](Cache::open), [`create`](Cache::create) → [`WriteGuard`],
//!   [`get`](Cache::get) → [`ReadGuard`] (or [`get_quick`](Cache::get_quick) → [`Quick`] on
//!   an async worker), [`remove`](Cache::remove), [`list`](Cache::list) →
//!   [`List`], [`stat`](Cache::stat) / [`verify`](Cache::verify) → [`Metadata`],
//!   [`usage`](Cache::usage), [`gc`](Cache::gc) → [`GcReport`].
//! - Corrupt artifacts: [`verify_with`](Cache::verify_with) (paced reads),
//!   [`quarantine`](Cache::quarantine) → [`Quarantined`], [`quarantined`](Cache::quarantined).
//! - Async waiting: [`get_wait`](Cache::get_wait) and the single-flight
//!   [`create_or_get`](Cache::create_or_get) → [`Fill`].
//! - [`Options`] (size bound, free-space floor, [`Durability`]) and [`Error`].
//!
//! The on-disk layout, the locking protocol and the crash-recovery rules are in
//! `docs/operations.md`.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tokio` | yes | [`Cache::get_wait`], [`Cache::create_or_get`] and [`Fill`] |

mod absent;
mod cache;
mod error;
mod evict;
mod guard;
mod health;
mod id;
mod index;
mod layout;
mod list;
mod lockfile;
mod metadata;
mod options;
mod quarantine;
mod quick;
mod recover;
mod table;
mod tree;
#[cfg(feature = "tokio")]
mod wait;

pub use cache::Cache;
pub use error::{Error, RootProblem};
pub use guard::{ReadGuard, WriteGuard};
pub use id::{ArtifactId, MAX_ID_BYTES, ParseIdError};
pub use list::List;
pub use metadata::{GcReport, Metadata, Usage};
pub use options::{Durability, Options};
pub use quarantine::Quarantined;
pub use quick::{Quick, QuickStat};
#[cfg(feature = "tokio")]
pub use wait::Fill;
