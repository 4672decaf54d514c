//! [`DownloaderBuilder`]: the settings of a [`Downloader`], the endpoints checked (or stores
//! opened) and the HTTP client built with its TLS roots.

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::Semaphore;

#[cfg(feature = "store")]
use super::store;
use super::{
    DEFAULT_CHUNK, DEFAULT_MULTI_SOURCE_THRESHOLD, Downloader, Endpoint, Given, Inner, Progress,
    Settings, flight::Flights,
};
use crate::{DEFAULT_LOW_SPEED, DEFAULT_LOW_SPEED_WINDOW, Error};

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
    pub(super) endpoints: Vec<Given>,
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
    /// receipt ([`Downloaded::verified`](super::Downloaded::verified) is then false); a 400
    /// whose message says "not found" then counts as a miss on that endpoint, like a 404.
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
