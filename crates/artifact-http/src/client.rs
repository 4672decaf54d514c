//! The client: [`Downloader`] and its [`DownloaderBuilder`], [`Downloaded`], and the one-shot
//! [`download`] and [`upload`].

mod answer;
mod builder;
mod commit;
mod fetch;
mod flight;
mod progress;
mod repair;
mod resume;
mod sources;
#[cfg(feature = "store")]
mod store;
mod upload;

use std::{path::Path, sync::Arc, time::Duration};

use artifact_cache::{ArtifactId, Cache, Metadata, ReadGuard};
use tokio::sync::Semaphore;

pub use builder::DownloaderBuilder;
pub use progress::{Progress, ProgressEvent};
pub use sources::{DEFAULT_CHUNK, DEFAULT_MULTI_SOURCE_THRESHOLD};
pub use upload::{UploadOutcome, Uploaded};

use crate::Error;
use flight::Flights;
use progress::Callback;

/// The default low-speed limit, in bytes per second
/// ([`DownloaderBuilder::low_speed_limit`]).
pub const DEFAULT_LOW_SPEED: u64 = 1024;
/// The default low-speed window ([`DownloaderBuilder::low_speed_limit`]).
pub const DEFAULT_LOW_SPEED_WINDOW: Duration = Duration::from_secs(30);

/// Downloads artifacts into a local [`Cache`] from one or more servers, and uploads them.
///
/// A `Downloader` is cheap to clone (clones share connections, limits and in-flight
/// transfers); make one per set of endpoints and reuse it. For each artifact it:
///
/// - returns at once if the local cache has it, and otherwise becomes its writer through
///   [`Cache::create_or_get`], so one process and one task fetch it while concurrent callers,
///   here or in other processes, wait and share the result (single flight);
/// - tries the endpoints in order: a 404 moves on to the next endpoint; a transient failure
///   (connect error, 5xx, 408/409/429/503 with their `Retry-After`, a body cut short, an idle
///   timeout, a body below the low-speed limit, a digest mismatch) moves on too and is
///   retried in the next round, after an exponential backoff with jitter; other failures
///   (400, 401, a redirect, a hostile stream: one over the size its server announced, or with
///   an entry that cannot be created here) rule the endpoint out; a local failure (the local
///   cache's disk is full, say) ends the download at once, as no endpoint can help with it;
/// - checks the tree digest computed while receiving against the server's
///   `X-Artifact-Digest`, and commits only a whole, verified tree: whatever fails, nothing
///   partial is kept.
///
/// Dropping the future of any method cancels it cleanly: the transfer stops, nothing is
/// committed, no lock is left behind. The same holds when the overall
/// [`timeout`](DownloaderBuilder::timeout) passes, unless the commit had already begun: the
/// download then succeeds.
///
/// ```no_run
/// use std::time::Duration;
/// use artifact_cache::{ArtifactId, Cache};
/// use artifact_http::Downloader;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::open("/var/cache/artifact")?;
/// let downloader = Downloader::builder()
///     .endpoint("http://peer-a:8417")
///     .endpoint("http://peer-b:8417")
///     .timeout(Duration::from_secs(600))
///     .per_endpoint(8)
///     .build()?;
/// let id: ArtifactId = "5eed".parse()?;
/// let downloaded = downloader.download(&cache, &id).await?;
/// println!("{} files in {}", downloaded.metadata().files, downloaded.path().display());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Downloader {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    settings: Settings,
    /// Transfers in flight through this downloader.
    global: Semaphore,
    flights: Flights,
}

/// One server.
struct Endpoint {
    /// The base URL without a trailing slash, as given.
    base: Arc<str>,
    /// Requests in flight to it.
    permits: Semaphore,
    /// The object store it is, for a store endpoint (feature `store`).
    #[cfg(feature = "store")]
    store: Option<artifact_store::Store>,
}

impl Inner {
    /// `eligible` with the store endpoints left out: those a range request may go to.
    fn http_only(&self, eligible: &[bool]) -> Vec<bool> {
        eligible.iter().zip(&self.endpoints).map(|(e, endpoint)| *e && endpoint.is_http()).collect()
    }
}

impl Endpoint {
    /// Whether this is an HTTP peer (which range requests and many-source downloads can use).
    fn is_http(&self) -> bool {
        #[cfg(feature = "store")]
        return self.store.is_none();
        #[cfg(not(feature = "store"))]
        true
    }
}

/// An endpoint as given to the builder.
enum Given {
    Url(String),
    #[cfg(feature = "store")]
    Store(artifact_store::Store),
}

impl Given {
    fn url(&self) -> &str {
        match self {
            Given::Url(url) => url,
            #[cfg(feature = "store")]
            Given::Store(store) => store.url(),
        }
    }
}

#[derive(Clone)]
struct Settings {
    connect_timeout: Duration,
    idle_timeout: Duration,
    timeout: Option<Duration>,
    rounds: u32,
    backoff: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    concurrency: usize,
    per_endpoint: usize,
    lock_wait: Duration,
    max_bytes: u64,
    /// (bytes per second, window): abandon a body slower than that over a whole window.
    low_speed: Option<(u64, Duration)>,
    token: Option<String>,
    zstd: bool,
    progress: Option<Callback>,
    throttle: Option<Throttle>,
    require_digest: bool,
    sources: usize,
    multi_source_threshold: u64,
    chunk: u64,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.inner.endpoints.iter().map(|e| &*e.base).collect();
        f.debug_struct("Downloader").field("endpoints", &endpoints).finish_non_exhaustive()
    }
}

/// The type of [`DownloaderBuilder::throttle`]'s function.
type Throttle = Arc<dyn Fn(u64) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Passes `chunk` on once `throttle` allows its bytes.
async fn pace(
    throttle: Option<Throttle>,
    chunk: std::io::Result<bytes::Bytes>,
) -> std::io::Result<bytes::Bytes> {
    if let (Some(throttle), Ok(bytes)) = (&throttle, &chunk) {
        throttle(bytes.len() as u64).await;
    }
    chunk
}

impl Downloader {
    /// A builder with the defaults.
    pub fn builder() -> DownloaderBuilder {
        DownloaderBuilder::default()
    }

    /// The endpoints, in the order they are tried.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.inner.endpoints.iter().map(|e| &*e.base)
    }

    /// Downloads `ids` into `cache`, at most [`concurrency`](DownloaderBuilder::concurrency)
    /// at a time (and at most [`per_endpoint`](DownloaderBuilder::per_endpoint) requests per
    /// endpoint), and returns one result per id, in the order given.
    pub async fn download_many(
        &self,
        cache: &Cache,
        ids: impl IntoIterator<Item = ArtifactId>,
    ) -> Vec<(ArtifactId, Result<Downloaded, Error>)> {
        use futures_util::StreamExt;
        let mut results: Vec<(usize, ArtifactId, Result<Downloaded, Error>)> =
            futures_util::stream::iter(ids.into_iter().enumerate())
                .map(|(index, id)| async move { (index, id, self.download(cache, &id).await) })
                .buffer_unordered(self.inner.settings.concurrency)
                .collect()
                .await;
        results.sort_by_key(|(index, ..)| *index);
        results.into_iter().map(|(_, id, result)| (id, result)).collect()
    }
}

/// An artifact in the local cache after [`Downloader::download`], held under a read lock
/// (it cannot be evicted or removed while this lives).
#[derive(Debug)]
pub struct Downloaded {
    reader: ReadGuard,
    fetched: Option<Fetched>,
}

/// How a downloaded artifact got here.
#[derive(Debug, Clone)]
struct Fetched {
    endpoint: Arc<str>,
    attempts: u32,
    stream_bytes: u64,
    elapsed: Duration,
    sources: Vec<(Arc<str>, u64)>,
    refetched: u64,
    resumes: u32,
    verified: bool,
}

impl Downloaded {
    /// The artifact's directory (read-only files).
    pub fn path(&self) -> &Path {
        self.reader.path()
    }

    /// The artifact's metadata.
    pub fn metadata(&self) -> &Metadata {
        self.reader.metadata()
    }

    /// The read guard.
    pub fn reader(&self) -> &ReadGuard {
        &self.reader
    }

    /// The read guard, to keep the artifact locked beyond this value.
    pub fn into_reader(self) -> ReadGuard {
        self.reader
    }

    /// True if this call transferred it; false if the cache had it (or another task or
    /// process fetched it meanwhile).
    pub fn transferred(&self) -> bool {
        self.fetched.is_some()
    }

    /// The endpoint it came from, if this call transferred it.
    pub fn endpoint(&self) -> Option<&str> {
        self.fetched.as_ref().map(|f| &*f.endpoint)
    }

    /// Attempts made (over all endpoints), if this call transferred it.
    pub fn attempts(&self) -> u32 {
        self.fetched.as_ref().map_or(0, |f| f.attempts)
    }

    /// Body bytes received by the successful attempt (compressed, with zstd), over all the
    /// answers it was spliced from.
    pub fn stream_bytes(&self) -> u64 {
        self.fetched.as_ref().map_or(0, |f| f.stream_bytes)
    }

    /// The body bytes of the successful attempt each endpoint served, in the order first
    /// used: one endpoint, unless a cut was resumed elsewhere or the stream came from many
    /// sources.
    pub fn sources(&self) -> &[(Arc<str>, u64)] {
        self.fetched.as_ref().map_or(&[], |f| &f.sources)
    }

    /// Body bytes received and then not used: those of failed attempts, and of chunks a
    /// many-source download had to fetch again.
    pub fn refetched_bytes(&self) -> u64 {
        self.fetched.as_ref().map_or(0, |f| f.refetched)
    }

    /// How many times a body cut short was continued with a range request.
    pub fn resumes(&self) -> u32 {
        self.fetched.as_ref().map_or(0, |f| f.resumes)
    }

    /// False when the artifact was accepted without a digest announced by its server
    /// ([`DownloaderBuilder::require_digest`]`(false)`): it was committed with the digest
    /// computed on receipt. True otherwise (and when the cache already had it).
    pub fn verified(&self) -> bool {
        self.fetched.as_ref().is_none_or(|f| f.verified)
    }

    /// How long the transfer took, retries included.
    pub fn elapsed(&self) -> Duration {
        self.fetched.as_ref().map_or(Duration::ZERO, |f| f.elapsed)
    }
}

/// Downloads `id` from `endpoint` into `cache` with the default settings (see [`Downloader`]
/// for several endpoints, retries and limits, and to reuse connections).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = artifact_cache::Cache::open("/var/cache/artifact")?;
/// let id = "5eed".parse()?;
/// let downloaded = artifact_http::download("http://cache.example:8417", &cache, &id).await?;
/// println!("{}", downloaded.path().display());
/// # Ok(())
/// # }
/// ```
pub async fn download(endpoint: &str, cache: &Cache, id: &ArtifactId) -> Result<Downloaded, Error> {
    Downloader::builder().endpoint(endpoint).build()?.download(cache, id).await
}

/// Uploads `id` from `cache` to `endpoint` with the default settings (see
/// [`Downloader::upload`]).
pub async fn upload(endpoint: &str, cache: &Cache, id: &ArtifactId) -> Result<Uploaded, Error> {
    Downloader::builder().endpoint(endpoint).build()?.upload(cache, id).await
}
