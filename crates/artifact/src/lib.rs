//! Cache build and CI outputs on disk and move them between machines as tar streams over HTTP.
//!
//! This facade re-exports the workspace's library crates under short names; the `artifact`
//! binary is the command-line face of the same code.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`tar`] | `tarstream` | directory <-> tar stream, with a tree digest |
//! | [`cache`] | `artifact-cache` | the on-disk cache |
//! | `http` | `artifact-http` | server and client (feature `http`) |
//! | `store` | `artifact-store` | the shared tier in an object store (feature `store`) |
//! | `jobs` | `artifact-jobs` | transfer jobs: queue, scheduler, `/jobs` API (feature `http`) |
//!
//! Features (all on by default): `http`, `zstd` (zstd on the wire), `store`, and `tls` (HTTPS for
//! the server and the clients: rustls with aws-lc-rs).

pub use artifact_cache as cache;
#[cfg(feature = "http")]
pub use artifact_http as http;
#[cfg(feature = "http")]
pub use artifact_jobs as jobs;
#[cfg(feature = "store")]
pub use artifact_store as store;
pub use tarstream as tar;
