//! [`Progress`] events of a transfer, delivered to the callback given to
//! [`DownloaderBuilder::progress`](crate::DownloaderBuilder::progress).

use std::{sync::Arc, time::Duration};

use artifact_cache::ArtifactId;

use crate::Error;

/// Where a transfer stands: one event per attempt start, per chunk received, per failed
/// attempt, and at the end.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// use artifact_http::{Downloader, ProgressEvent};
///
/// let received = Arc::new(AtomicU64::new(0));
/// let seen = received.clone();
/// let downloader = Downloader::builder()
///     .endpoint("http://cache.example:8417")
///     .progress(move |progress| {
///         if let ProgressEvent::Received = progress.event {
///             seen.store(progress.bytes, Ordering::Relaxed);
///         }
///     })
///     .build()?;
/// # Ok::<(), artifact_http::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Progress {
    /// The artifact.
    pub id: ArtifactId,
    /// The endpoint of this attempt.
    pub endpoint: Arc<str>,
    /// The attempt, counted from 1 over all endpoints.
    pub attempt: u32,
    /// Body bytes received (downloads) or sent (uploads) in this attempt, as they go over the
    /// wire (compressed, with zstd).
    pub bytes: u64,
    /// The body's length if the server announced it (`Content-Length`).
    pub total: Option<u64>,
    /// The artifact's file content in bytes (`X-Artifact-Size`): a good estimate of the
    /// stream's length when `total` is unknown (tar adds 512 bytes per entry).
    pub tree_bytes: Option<u64>,
    /// For [`ProgressEvent::Received`]: the bytes of this attempt that `endpoint` served
    /// (less than `bytes` once a cut was resumed elsewhere, or with many sources).
    pub source_bytes: u64,
    /// Bytes received in this download and thrown away so far (failed attempts, chunks
    /// fetched again).
    pub refetched: u64,
    /// What happened.
    pub event: ProgressEvent,
}

/// What a [`Progress`] event reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// An attempt got its response headers; the body follows.
    Started,
    /// More body bytes moved ([`Progress::bytes`] is the running count).
    Received,
    /// The attempt failed; `retry_in` is the pause before the next round of attempts, if
    /// this was the last endpoint of the round and another round follows.
    Failed {
        /// Why.
        error: Error,
        /// The pause before the next round.
        retry_in: Option<Duration>,
    },
    /// The transfer succeeded (the artifact is committed).
    Finished,
}

/// The callback type.
pub(crate) type Callback = Arc<dyn Fn(&Progress) + Send + Sync>;
