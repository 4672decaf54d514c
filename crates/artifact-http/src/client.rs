//! The client: [`Downloader`] and its [`DownloaderBuilder`], [`Downloaded`], and the one-shot
//! [`download`] and [`upload`].

mod answer;
mod commit;
mod fetch;
mod flight;
mod progress;
mod resume;
mod sources;
#[cfg(feature = "store")]
mod store;
mod upload;

use std::{path::Path, sync::Arc, time::Duration};

use artifact_cache::{ArtifactId, Cache, Metadata, ReadGuard};
use tokio::sync::Semaphore;

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

/// Configures a [`Downloader`]: endpoints, timeouts, retries, limits.
///
/// ```
/// use std::time::Duration;
/// use artifact_http::Downloader;
///
/// let downloader = Downloader::builder()
///     .endpoints(["http://a:8417", "http://b:8417/cache/"])
///     .connect_timeout(Duration::from_secs(2))
///     .idle_timeout(Duration::from_secs(10))
///     .attempts(5)
///     .concurrency(32)
///     .per_endpoint(4)
///     .build()?;
/// assert_eq!(format!("{downloader:?}"), r#"Downloader { endpoints: ["http://a:8417", "http://b:8417/cache"], .. }"#);
///
/// let err = Downloader::builder().endpoint("ftp://x").build().unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid endpoint "ftp://x": the scheme must be http or https"#);
/// # Ok::<(), artifact_http::Error>(())
/// ```
#[must_use]
pub struct DownloaderBuilder {
    endpoints: Vec<Given>,
    settings: Settings,
    client: Option<reqwest::Client>,
    ca_cert: Option<std::path::PathBuf>,
}

impl Default for DownloaderBuilder {
    fn default() -> Self {
        DownloaderBuilder {
            endpoints: Vec::new(),
            settings: Settings {
                connect_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
                timeout: None,
                rounds: 3,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                max_retry_after: Duration::from_secs(30),
                concurrency: 16,
                per_endpoint: 8,
                lock_wait: Duration::from_secs(600),
                max_bytes: 1 << 40,
                low_speed: Some((DEFAULT_LOW_SPEED, DEFAULT_LOW_SPEED_WINDOW)),
                token: None,
                zstd: false,
                progress: None,
                throttle: None,
                require_digest: true,
                sources: 4,
                multi_source_threshold: DEFAULT_MULTI_SOURCE_THRESHOLD,
                chunk: DEFAULT_CHUNK,
            },
            client: None,
            ca_cert: None,
        }
    }
}

impl DownloaderBuilder {
    /// Adds a server (`http://host:port`, optionally with a path prefix). Endpoints are tried
    /// in the order added. With the `store` feature, an object-store URL (`s3://`, `gs://`,
    /// `az://`, `file://`) adds that store, opened by [`build`](Self::build) (see
    /// [`store`](Self::store)).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(Given::Url(url.into()));
        self
    }

    /// Adds several servers, in order.
    pub fn endpoints<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.endpoints.extend(urls.into_iter().map(|url| Given::Url(url.into())));
        self
    }

    /// How long connecting may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long a response may stay silent: before its headers, or between two chunks of its
    /// body; for uploads, how long the server may leave the body unread (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// A bound on each whole `download`/`upload`, retries and waiting for a concurrent writer
    /// included (default none).
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.timeout = timeout.into();
        self
    }

    /// How many times each endpoint may be tried, in rounds over all endpoints (default 3; at
    /// least 1).
    pub fn attempts(mut self, rounds: u32) -> Self {
        self.settings.rounds = rounds.max(1);
        self
    }

    /// The pause after the first failed round, doubled each round up to `max` (defaults
    /// 100 ms and 5 s). Each pause is drawn at random between half and all of that ("equal
    /// jitter"), and is at least the largest `Retry-After` the round got (itself capped at
    /// 30 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.backoff = first;
        self.settings.max_backoff = max.max(first);
        self
    }

    /// How many transfers may run at once through this downloader, over all endpoints
    /// (default 16). [`Downloader::download_many`] runs that many at a time.
    pub fn concurrency(mut self, transfers: usize) -> Self {
        self.settings.concurrency = transfers.max(1);
        self
    }

    /// How many requests may be in flight to one endpoint at once (default 8).
    pub fn per_endpoint(mut self, requests: usize) -> Self {
        self.settings.per_endpoint = requests.max(1);
        self
    }

    /// How long to wait for another writer of the same id in the local cache (another
    /// process downloading it, say) before failing (default 10 min).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = wait;
        self
    }

    /// The largest tar stream to accept (default 1 TiB). Each answer is also bounded by what
    /// its server announced (`Content-Length`, or the tree's size and entry count): a peer
    /// that sends more is at fault, and the next endpoint is tried.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.settings.max_bytes = bytes;
        self
    }

    /// Abandons a body that brings fewer than `bytes_per_sec` bytes per second over a whole
    /// `window`, like curl's `--speed-limit`/`--speed-time`, for the next endpoint
    /// ([`TimeoutKind::LowSpeed`](crate::TimeoutKind::LowSpeed); it is retried in the next
    /// round like any timeout). The default, 1 KiB/s over 30 s, lets any working link through
    /// and stops a peer that crawls to hold the download; a rate or window of 0 turns the
    /// check off.
    pub fn low_speed_limit(mut self, bytes_per_sec: u64, window: Duration) -> Self {
        self.settings.low_speed =
            (bytes_per_sec > 0 && !window.is_zero()).then_some((bytes_per_sec, window));
        self
    }

    /// A bearer token to present (`Authorization: Bearer <token>`).
    pub fn token(mut self, token: impl Into<Option<String>>) -> Self {
        self.settings.token = token.into();
        self
    }

    /// Ask for zstd-compressed downloads and compress uploads (feature `zstd`; default off:
    /// on a fast network, compression costs more time than it saves).
    #[cfg(feature = "zstd")]
    pub fn zstd(mut self, enabled: bool) -> Self {
        self.settings.zstd = enabled;
        self
    }

    /// Calls `callback` with [`Progress`] events. It runs on the transfer's task, often: keep
    /// it quick (update a counter, a progress bar).
    pub fn progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.settings.progress = Some(Arc::new(callback));
        self
    }

    /// Paces the bytes of bodies: before a chunk of a download's body is taken in, or a chunk
    /// of an upload's body is sent, the transfer awaits the future `throttle(chunk_len)`
    /// returns (a rate limiter's wait for that many bytes, say). Default: no pacing.
    pub fn throttle(
        mut self,
        throttle: impl Fn(u64) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.settings.throttle = Some(Arc::new(throttle));
        self
    }

    /// Whether an answer must announce its tree digest (`X-Artifact-Digest`) to be accepted
    /// (default true). With `false`, a bare tar stream (the original seed server's answer) is
    /// accepted when it is valid and complete, and committed with the digest computed on
    /// receipt ([`Downloaded::verified`] is then false); a 400 whose message says "not found"
    /// then counts as a miss on that endpoint, like a 404.
    ///
    /// ```
    /// let downloader = artifact_http::Downloader::builder()
    ///     .endpoint("http://seed:8080")
    ///     .require_digest(false)
    ///     .build()?;
    /// # Ok::<(), artifact_http::Error>(())
    /// ```
    pub fn require_digest(mut self, required: bool) -> Self {
        self.settings.require_digest = required;
        self
    }

    /// The most endpoints one download reads from at once (default 4; 1 turns many-source
    /// downloads off). When the first answer announces a stream of at least
    /// [`multi_source_threshold`](Self::multi_source_threshold) bytes and at least two
    /// endpoints may serve it, the stream is fetched as disjoint ranges (chunks of
    /// [`DEFAULT_CHUNK`] bytes) from up to this many endpoints at once, each taking the next
    /// chunk when it is done with one (the faster take more), through a reorder buffer of a
    /// few chunks; an endpoint that fails hands its chunk to the others.
    ///
    /// ```
    /// let downloader = artifact_http::Downloader::builder()
    ///     .endpoints(["http://a:8417", "http://b:8417", "http://c:8417"])
    ///     .sources(3)
    ///     .multi_source_threshold(256 << 20)
    ///     .build()?;
    /// # Ok::<(), artifact_http::Error>(())
    /// ```
    pub fn sources(mut self, sources: usize) -> Self {
        self.settings.sources = sources.max(1);
        self
    }

    /// The smallest stream fetched from many sources at once (default
    /// [`DEFAULT_MULTI_SOURCE_THRESHOLD`], 64 MiB).
    pub fn multi_source_threshold(mut self, bytes: u64) -> Self {
        self.settings.multi_source_threshold = bytes;
        self
    }

    /// The size of the ranges a many-source download asks for (default [`DEFAULT_CHUNK`],
    /// 8 MiB; at least 64 KiB).
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.settings.chunk = bytes.max(64 << 10);
        self
    }

    /// Uses `client` (for proxies, custom TLS roots...) instead of building one; the connect
    /// timeout is then the client's. Build it with `redirect(Policy::none())`: a 3xx answer
    /// fails the endpoint either way, but a client that follows redirects asks the place
    /// they point to first.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Trusts the certificate authorities in this PEM file, and only them, for `https://`
    /// endpoints (feature `tls`), like curl's `--cacert`: for servers with a self-signed
    /// certificate or one from a private authority. Without it, the system's trusted
    /// authorities apply. The file is read by [`build`](Self::build); ignored with
    /// [`client`](Self::client).
    #[cfg(feature = "tls")]
    pub fn ca_cert(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// Checks the endpoints and builds the downloader.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`] for an endpoint that is not an `http` URL (or `https`, with
    /// the `tls` feature), or has a query or fragment; also when there are none. With the
    /// `store` feature, a store URL that [`Store::open`](artifact_store::Store::open) refuses
    /// is one too. With the
    /// `tls` feature, `Error::Tls` for a `ca_cert` file that cannot be read
    /// or holds no certificate.
    pub fn build(self) -> Result<Downloader, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidEndpoint {
                url: String::new(),
                reason: "no endpoint given".into(),
            });
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|given| {
                let permits = Semaphore::new(self.settings.per_endpoint);
                // One arm only without the `store` feature.
                #[allow(clippy::infallible_destructuring_match)]
                let url = match given {
                    Given::Url(url) => url,
                    #[cfg(feature = "store")]
                    Given::Store(store) => {
                        let base = store.url().into();
                        return Ok(Endpoint { base, permits, store: Some(store.clone()) });
                    }
                };
                #[cfg(feature = "store")]
                if store::is_store_url(url) {
                    let store = store::open(url)?;
                    return Ok(Endpoint { base: store.url().into(), permits, store: Some(store) });
                }
                Ok(Endpoint {
                    base: check_endpoint(url)?.into(),
                    permits,
                    #[cfg(feature = "store")]
                    store: None,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let http = match self.client {
            Some(client) => client,
            None => trust(
                reqwest::Client::builder()
                    .connect_timeout(self.settings.connect_timeout)
                    .tcp_nodelay(true)
                    // The protocol has no redirects: a 3xx is that endpoint's failure.
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(30)),
                self.ca_cert.as_deref(),
            )?
            .build()
            .map_err(|err| Error::InvalidEndpoint {
                url: self.endpoints[0].url().to_owned(),
                reason: format!("cannot build the HTTP client: {err}"),
            })?,
        };
        Ok(Downloader {
            inner: Arc::new(Inner {
                http,
                endpoints,
                global: Semaphore::new(self.settings.concurrency),
                settings: self.settings,
                flights: Flights::default(),
            }),
        })
    }
}

/// Makes `builder` trust only the authorities in `ca_cert`, when given.
fn trust(
    builder: reqwest::ClientBuilder,
    ca_cert: Option<&Path>,
) -> Result<reqwest::ClientBuilder, Error> {
    let Some(path) = ca_cert else { return Ok(builder) };
    #[cfg(feature = "tls")]
    {
        let bad = |reason: String, source: Option<std::io::Error>| Error::Tls {
            what: "CA certificate",
            path: path.to_owned(),
            reason,
            source: source.map(Arc::new),
        };
        let pem = std::fs::read(path).map_err(|err| bad("cannot read it".into(), Some(err)))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|err| bad(crate::error::error_chain(&err), None))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into(), None));
        }
        Ok(builder.tls_certs_only(certs))
    }
    #[cfg(not(feature = "tls"))]
    Err(Error::InvalidEndpoint {
        url: path.display().to_string(),
        reason: "a CA certificate needs the `tls` feature of artifact-http".into(),
    })
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

/// The endpoint's base URL without a trailing slash, if it is one we can use.
fn check_endpoint(url: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::InvalidEndpoint { url: url.to_owned(), reason: reason.into() };
    let parsed = reqwest::Url::parse(url).map_err(|err| bad(&err.to_string()))?;
    match parsed.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => return Err(bad("https needs the `tls` feature of artifact-http")),
        _ => return Err(bad("the scheme must be http or https")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("an endpoint takes no query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(check_endpoint("http://a:1/").unwrap(), "http://a:1");
        assert_eq!(check_endpoint("http://a/x/y/").unwrap(), "http://a/x/y");
        for bad in ["", "a:1", "ftp://a", "http://a/?x=1", "http://a/#f", "http://"] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
        }
        #[cfg(not(feature = "tls"))]
        assert!(check_endpoint("https://a").is_err());
    }
}
