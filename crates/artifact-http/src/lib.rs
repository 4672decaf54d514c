//! Serve and fetch `artifact-cache` entries as tar streams over HTTP: an axum server and a
//! reqwest client that retries, fails over between peers and verifies what it receives.
//!
//! # Example
//!
//! A server with a cache, and a client that downloads an artifact from it into another cache:
//!
//! ```
//! use artifact_cache::{ArtifactId, Cache};
//! use artifact_http::{Downloader, ServerConfig, serve};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let remote = Cache::open(dir.path().join("remote"))?;
//! let id: ArtifactId = "5eed".parse()?;
//! let writer = remote.create(&id)?;
//! std::fs::write(writer.path().join("hello.txt"), "hello")?;
//! writer.commit()?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, remote, ServerConfig::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let local = Cache::open(dir.path().join("local"))?;
//! let downloader = Downloader::builder().endpoint(&url).build()?;
//! let downloaded = downloader.download(&local, &id).await?;
//! assert_eq!(std::fs::read_to_string(downloaded.path().join("hello.txt"))?, "hello");
//!
//! let absent: ArtifactId = "dead".parse()?;
//! assert!(downloader.download(&local, &absent).await.unwrap_err().is_not_found());
//! # drop(downloaded);
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Main types
//!
//! - Server: [`router`] (mount it in an axum app) and [`serve`] (run it, with limits and
//!   graceful shutdown on [`shutdown_signal`]; [`serve_router`] for an app of one's own, and
//!   [`serve_endpoints`] for one that merges [`Endpoints`]' router at its root and keeps the
//!   hot path of `GET /artifact`), configured by [`ServerConfig`]; HTTPS with `TlsConfig`
//!   (feature `tls`); the background [`Scrubber`] ([`ScrubConfig`], [`ScrubReport`]), which
//!   re-verifies the cache at a bounded read rate, quarantines corrupt artifacts and repairs
//!   them.
//! - Client: [`Downloader`] (built by [`DownloaderBuilder`]): [`download`](Downloader::download),
//!   [`download_many`](Downloader::download_many), [`upload`](Downloader::upload),
//!   [`repair`](Downloader::repair) (a quarantined artifact fetched again), with
//!   [`Progress`] events; the one-shot [`download`] and [`upload`] functions.
//! - [`Error`], whose [`is_remote`](Error::is_remote) lets a build system treat any remote
//!   failure as a cache miss.
//! - [`protocol`]: the paths and headers (the HTTP section of `docs/protocol.md` describes the
//!   exchange).
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | [`router`], [`serve`], [`ServerConfig`] (axum, hyper) |
//! | `client` | yes | [`Downloader`], [`download`], [`upload`] (reqwest, plain HTTP) |
//! | `tls` | no | HTTPS: `https://` endpoints for the client, `ServerConfig::tls` and `TlsConfig` for the server (rustls with aws-lc-rs; a C crypto build) |
//! | `zstd` | no | zstd transfer encoding: `Accept-Encoding`/`Content-Encoding: zstd` |
//! | `store` | no | object stores (artifact-store): the server reads and writes through one (`ServerConfig::store`); with `client`, a [`Downloader`]'s endpoints may be stores (`DownloaderBuilder::store`, or `s3://`, `gs://`, `az://`, `file://` URLs), mixed with peers in one ordered list |

// Every error names its `ArtifactId`, which artifact-cache keeps inline (up to 64 bytes), so
// errors are large; they are also cold (one per failed transfer), so boxing buys nothing.
#![allow(clippy::result_large_err)]

#[cfg(any(feature = "server", feature = "client"))]
mod bridge;
#[cfg(feature = "client")]
mod client;
#[cfg(all(feature = "zstd", any(feature = "server", feature = "client")))]
mod compress;
mod error;
pub mod protocol;
#[cfg(feature = "server")]
mod server;

#[cfg(feature = "client")]
pub use client::{
    DEFAULT_CHUNK, DEFAULT_LOW_SPEED, DEFAULT_LOW_SPEED_WINDOW, DEFAULT_MULTI_SOURCE_THRESHOLD,
    Downloaded, Downloader, DownloaderBuilder, Progress, ProgressEvent, UploadOutcome, Uploaded,
    download, upload,
};
pub use error::{Error, TimeoutKind};
#[cfg(all(feature = "server", feature = "tls"))]
pub use server::TlsConfig;
#[cfg(feature = "server")]
pub use server::{
    EndpointStatus, Endpoints, JobSummary, JobsSource, JobsStatus, JobsStatusFuture,
    STATUS_JOBS_LISTED, ScrubConfig, ScrubReport, Scrubber, ServerConfig, router, serve,
    serve_endpoints, serve_router, shutdown_signal,
};
