//! The shared tier of the artifact cache: artifacts kept as tar objects in an object store
//! (S3 and what speaks its API, GCS, Azure, a shared directory) behind each machine's local
//! [`artifact_cache::Cache`].
//!
//! Each artifact is one object, `PREFIX/ID.tar`: exactly the canonical tar stream of
//! `tarstream::send`, with the tree digest, size and file count in the object's own user
//! metadata, so one atomic create makes one self-describing object. Uploads create only if
//! absent (the first writer wins, later ones learn it exists); downloads are checked end to
//! end against the digest in the metadata, and nothing partial or damaged is ever committed to
//! the local cache.
//!
//! # Example
//!
//! ```
//! use artifact_cache::{ArtifactId, Cache};
//! use artifact_store::{Store, UploadOutcome};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let bucket = dir.path().join("bucket");
//! std::fs::create_dir(&bucket)?;
//! let store = Store::open(&format!("file://{}", bucket.display()))?;
//!
//! // A worker builds an artifact and shares it.
//! let here = Cache::open(dir.path().join("here"))?;
//! let id: ArtifactId = "5eed".parse()?;
//! let writer = here.create(&id)?;
//! std::fs::write(writer.path().join("hello.txt"), "hello")?;
//! writer.commit()?;
//! assert_eq!(store.upload(&here, &id).await?.outcome, UploadOutcome::Created);
//! assert_eq!(store.upload(&here, &id).await?.outcome, UploadOutcome::Exists);
//!
//! // Another one, with its own cache, fetches it.
//! let there = Cache::open(dir.path().join("there"))?;
//! assert_eq!(store.head(&id).await?.map(|info| info.files), Some(1));
//! let reader = store.download(&there, &id).await?;
//! assert_eq!(std::fs::read_to_string(reader.path().join("hello.txt"))?, "hello");
//! assert_eq!(store.list().await?, vec![id]);
//! # Ok(())
//! # }
//! ```
//!
//! # Main types
//!
//! - [`Store`]: [`open`](Store::open) a URL (`s3://BUCKET[/PREFIX]`, `gs://…`, `az://…`,
//!   `file:///DIR`), then [`head`](Store::head) → [`ObjectInfo`], [`download`](Store::download)
//!   / [`download_into`](Store::download_into) into a cache ([`receive_into`](Store::receive_into)
//!   when the caller commits), [`upload`](Store::upload) →
//!   [`Uploaded`], [`delete`](Store::delete), [`list`](Store::list), [`check`](Store::check);
//!   [`stats`](Store::stats) → [`Stats`].
//! - [`StoreOptions`]: part size and parallelism of large transfers, retries, timeouts.
//! - [`Error`], with [`is_retryable`](Error::is_retryable), [`is_not_found`](Error::is_not_found),
//!   [`is_auth`](Error::is_auth), [`is_corrupt`](Error::is_corrupt) and
//!   [`is_remote`](Error::is_remote).
//!
//! `s3://` reads the usual AWS environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` (for S3-compatible servers such as MinIO, Ceph RGW, Garage
//! or R2) and `AWS_ALLOW_HTTP=true` (for plain-HTTP ones). A local directory keeps no user
//! metadata with its files, so `file://` stores it in a small `ID.tar.meta` object written
//! before the `ID.tar` object.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `s3` | yes | `s3://` URLs (`object_store`'s `aws`; builds a C crypto library) |
//! | `gcs` | no | `gs://` URLs |
//! | `azure` | no | `az://` URLs |

mod download;
mod error;
mod location;
mod meta;
mod store;
mod upload;

pub use error::Error;
pub use meta::{DIGEST_KEY, FILES_KEY, ObjectInfo, SIZE_KEY};
pub use store::{Stats, Store, StoreOptions};
pub use upload::{UploadOutcome, Uploaded};

/// The `object_store` crate this one is built on, for [`Store::from_backend`].
pub use object_store;
