//! [`ServerConfig`]: the server's limits, timeouts and access control.

use std::{fmt, time::Duration};

/// Limits, timeouts and access control for [`router`](crate::router) and
/// [`serve`](crate::serve).
///
/// The defaults suit a cache server on a trusted network: no token, 64 concurrent tar streams,
/// uploads up to 64 GiB.
///
/// ```
/// use std::time::Duration;
/// use artifact_http::ServerConfig;
///
/// let config = ServerConfig::default()
///     .max_streams(16)
///     .max_upload_bytes(1 << 30)
///     .idle_timeout(Duration::from_secs(10))
///     .token(Some("s3cret".into()))
///     .small_cache_bytes(16 << 20);
/// assert_eq!(config.max_streams, 16);
/// assert!(!format!("{config:?}").contains("s3cret"), "the token is not printed");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Tar streams (downloads and uploads) served at once; beyond it, requests get 503 with
    /// `Retry-After` (default 64).
    pub max_streams: usize,
    /// Tar streams served at once to one client IP address; beyond it, its requests get 503
    /// with `Retry-After` (default 16). One host reading slowly cannot hold every stream slot.
    /// Needs the peer address (axum's `ConnectInfo<SocketAddr>`, which
    /// [`serve`](crate::serve) provides); without it, only `max_streams` applies.
    pub max_streams_per_peer: usize,
    /// Connections open at once; beyond it, [`serve`](crate::serve) stops accepting until one
    /// closes (default 1024). Bounds the file descriptors the server uses.
    pub max_connections: usize,
    /// Connections open at once from one client IP address; more are closed as soon as they
    /// are accepted (default 128; [`serve`](crate::serve) only). One host cannot take every
    /// connection slot (with headers sent a byte at a time, say) from the others.
    pub max_connections_per_peer: usize,
    /// The largest upload, in bytes of tar stream (after zstd decoding): a larger
    /// `Content-Length` gets 413 before anything is read, and a stream that grows past it is
    /// cut off with 413 (default 64 GiB).
    pub max_upload_bytes: u64,
    /// How long a client may take to send a request's headers, also between requests on a
    /// kept-alive connection (default 30 s; [`serve`](crate::serve) only).
    pub header_read_timeout: Duration,
    /// How long a body may make no progress: an upload that sends nothing, or a download whose
    /// client reads nothing, is cut off after this, releasing its lock (default 60 s).
    pub idle_timeout: Duration,
    /// How long an upload waits for a concurrent upload of the same id to finish before
    /// answering 409 (default 5 min).
    pub write_wait: Duration,
    /// How long [`serve`](crate::serve) lets in-flight requests finish after the shutdown
    /// signal before closing their connections (default 30 s).
    pub shutdown_grace: Duration,
    /// The `Retry-After` sent with 409 and 503, rounded up to whole seconds (default 1 s).
    pub retry_after: Duration,
    /// The bearer token that `PUT` and `DELETE` must present (`Authorization: Bearer <token>`);
    /// none by default.
    pub token: Option<String>,
    /// Require the token for reads (`GET`, `HEAD`, the listing and metrics) as well (default
    /// false). `/healthz` never needs it.
    pub token_for_reads: bool,
    /// The zstd level for compressed downloads (feature `zstd`; default 1, the fastest: the
    /// link is usually faster than the compressor).
    pub zstd_level: i32,
    /// The largest zstd window a compressed upload may ask for, as a power of two (feature
    /// `zstd`; default 23, 8 MiB: every standard level up to 19 fits, `--ultra` and `--long`
    /// frames do not). The decoder of each upload holds up to this much memory; a frame that
    /// needs more is refused with 400 before anything is allocated for it.
    pub zstd_max_window_log: u32,
    /// The most bytes of small artifacts' tar streams kept in memory, so that a `GET` of one
    /// is answered without reading its files again (default 64 MiB; 0 keeps none). The
    /// least recently used streams are dropped first.
    pub small_cache_bytes: u64,
    /// The longest tar stream kept in memory under
    /// [`small_cache_bytes`](Self::small_cache_bytes) (default 64 KiB, which holds a file of
    /// up to about 63 KiB or several smaller ones).
    pub small_stream_max: u64,
    /// The shared tier behind the cache (feature `store`; none by default): a `GET` or `HEAD`
    /// of an id the cache lacks fetches it from the store first (once, however many requests
    /// ask at the same time), and a `PUT` answers only once the artifact is in the store too.
    #[cfg(feature = "store")]
    pub store: Option<artifact_store::Store>,
    /// The background scrub whose state `/metrics` and the status page show (none by default;
    /// the server does not start it: spawn [`Scrubber::run`](crate::Scrubber::run)).
    pub scrub: Option<crate::Scrubber>,
    /// Speak HTTPS with this certificate (feature `tls`; none by default: plain HTTP).
    /// [`serve`](crate::serve) and [`serve_router`](crate::serve_router) only.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_streams: 64,
            max_streams_per_peer: 16,
            max_connections: 1024,
            max_connections_per_peer: 128,
            max_upload_bytes: 64 << 30,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_wait: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
            token: None,
            token_for_reads: false,
            zstd_level: 1,
            zstd_max_window_log: 23,
            small_cache_bytes: 64 << 20,
            small_stream_max: 64 << 10,
            #[cfg(feature = "store")]
            store: None,
            scrub: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ServerConfig");
        f.field("max_streams", &self.max_streams)
            .field("max_streams_per_peer", &self.max_streams_per_peer)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_wait", &self.write_wait)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retry_after", &self.retry_after)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_for_reads", &self.token_for_reads)
            .field("zstd_level", &self.zstd_level)
            .field("zstd_max_window_log", &self.zstd_max_window_log)
            .field("small_cache_bytes", &self.small_cache_bytes)
            .field("small_stream_max", &self.small_stream_max);
        #[cfg(feature = "store")]
        f.field("store", &self.store.as_ref().map(artifact_store::Store::url));
        f.field("scrub", &self.scrub);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls.is_some());
        f.finish()
    }
}

impl ServerConfig {
    /// Sets [`max_streams`](Self::max_streams).
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// Sets [`max_streams_per_peer`](Self::max_streams_per_peer).
    pub fn max_streams_per_peer(mut self, streams: usize) -> Self {
        self.max_streams_per_peer = streams;
        self
    }

    /// Sets [`max_connections_per_peer`](Self::max_connections_per_peer).
    pub fn max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_connections_per_peer = connections;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets [`max_upload_bytes`](Self::max_upload_bytes).
    pub fn max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`write_wait`](Self::write_wait).
    pub fn write_wait(mut self, wait: Duration) -> Self {
        self.write_wait = wait;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`retry_after`](Self::retry_after).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// Sets [`token`](Self::token).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Sets [`token_for_reads`](Self::token_for_reads).
    pub fn token_for_reads(mut self, required: bool) -> Self {
        self.token_for_reads = required;
        self
    }

    /// Sets [`zstd_level`](Self::zstd_level).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Sets [`zstd_max_window_log`](Self::zstd_max_window_log).
    pub fn zstd_max_window_log(mut self, log: u32) -> Self {
        self.zstd_max_window_log = log;
        self
    }

    /// Sets [`small_cache_bytes`](Self::small_cache_bytes).
    pub fn small_cache_bytes(mut self, bytes: u64) -> Self {
        self.small_cache_bytes = bytes;
        self
    }

    /// Sets [`small_stream_max`](Self::small_stream_max).
    pub fn small_stream_max(mut self, bytes: u64) -> Self {
        self.small_stream_max = bytes;
        self
    }

    /// Sets [`store`](Self::store).
    #[cfg(feature = "store")]
    pub fn store(mut self, store: Option<artifact_store::Store>) -> Self {
        self.store = store;
        self
    }

    /// Sets [`scrub`](Self::scrub).
    pub fn scrub(mut self, scrubber: Option<crate::Scrubber>) -> Self {
        self.scrub = scrubber;
        self
    }

    /// Sets [`tls`](Self::tls).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Option<crate::TlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}
