//! The server: [`router`] to mount in one's own axum app, [`serve`] to run it with limits and
//! graceful shutdown, and [`ServerConfig`].

mod artifact;
mod config;
mod list;
mod listen;
mod metrics;
mod observe;
mod panic;
mod peers;
mod reply;
mod scrub;
mod small;
mod status;
#[cfg(feature = "store")]
mod store;
#[cfg(feature = "tls")]
mod tls;

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use artifact_cache::{ArtifactId, Cache};
use axum::{
    Router,
    http::{HeaderMap, header},
    routing::get,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use config::ServerConfig;
pub use listen::{serve, serve_endpoints, serve_router, shutdown_signal};
pub use scrub::{ScrubConfig, ScrubReport, Scrubber};
pub use status::{
    EndpointStatus, JobSummary, JobsSource, JobsStatus, JobsStatusFuture, STATUS_JOBS_LISTED,
};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

use crate::protocol::{
    ARTIFACT_PATH, HEALTH_PATH, LIST_PATH, METRICS_PATH, STATUS_PAGE_PATH, STATUS_PATH,
};
use metrics::Metrics;
use peers::{PeerLimit, PeerPermit};
use reply::Reject;

/// The axum [`Router`] serving `cache` (the endpoints of `docs/protocol.md`), to mount in an
/// application or run with [`serve`].
///
/// Every request gets a `tracing` span and is counted in `/metrics`; `GET /status` and `GET /`
/// show the operator the cache, the traffic, the transfers in flight and recent warnings (and
/// the jobs of a [`JobsSource`] in the request extensions). The router enforces the
/// stream limit, the upload limit, the idle timeout and the token of `config`; the header read
/// timeout, the connection limit and graceful shutdown are [`serve`]'s.
///
/// ```no_run
/// use artifact_cache::Cache;
/// use artifact_http::{ServerConfig, router};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::open("/var/cache/artifact")?;
/// let app = axum::Router::new()
///     .nest_service("/cache", router(cache, ServerConfig::default()))
///     .route("/", axum::routing::get(|| async { "my build farm" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8417").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
pub fn router(cache: Cache, config: ServerConfig) -> Router {
    Endpoints::new(cache, config).router()
}

/// The endpoints of one cache, their state built once: [`router`](Endpoints::router) to mount
/// them in an axum app, and [`serve_endpoints`] to run them with a hot path for what a build
/// cache answers most, `GET` and `HEAD /artifact`.
///
/// Every router and hot path of one `Endpoints` (and its clones) shares one state: the stream
/// limits, the small streams kept in memory, the counters of `/metrics` and the status page.
///
/// ```
/// use artifact_cache::Cache;
/// use artifact_http::{Endpoints, ServerConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let endpoints = Endpoints::new(Cache::open(dir.path())?, ServerConfig::default());
/// let app = endpoints.router().route("/about", axum::routing::get(|| async { "build farm" }));
/// assert_eq!(endpoints.config().max_streams, ServerConfig::default().max_streams);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Endpoints(App);

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("root", &self.0.cache.root()).finish_non_exhaustive()
    }
}

impl Endpoints {
    /// The endpoints serving `cache` under `config`.
    pub fn new(cache: Cache, config: ServerConfig) -> Endpoints {
        Endpoints(App(Arc::new(AppInner {
            streams: Arc::new(Semaphore::new(config.max_streams)),
            peer_streams: PeerLimit::new(config.max_streams_per_peer),
            metrics: Arc::new(Metrics::default()),
            activity: Arc::new(status::Activity::default()),
            started: Instant::now(),
            small: small::SmallStreams::new(config.small_cache_bytes, config.small_stream_max),
            index_loads: artifact::IndexLoads::new(),
            cache,
            config,
        })))
    }

    /// The configuration they were built with.
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// The axum [`Router`] of every endpoint (see [`router`]).
    pub fn router(&self) -> Router {
        let app = &self.0;
        Router::new()
            .route(
                ARTIFACT_PATH,
                get(artifact::get).head(artifact::get).put(artifact::put).delete(artifact::delete),
            )
            .route(LIST_PATH, get(list::list))
            .route(HEALTH_PATH, get(health))
            .route(METRICS_PATH, get(list::metrics))
            .route(STATUS_PATH, get(status::json))
            .route(STATUS_PAGE_PATH, get(status::page))
            // One layer (a tuple) rather than three: each `Router::layer` wraps every route in
            // another boxed service, and a request clones the boxes of every wrapping it
            // passes through.
            .layer(layers(app, None))
            .with_state(app.clone())
    }

    /// `GET` and `HEAD /artifact` as one service for the connection of the client at `peer`:
    /// the artifact route's handler inside the router's layers, without the router's dispatch
    /// (its boxed, cloned services and nested futures: a tenth to a sixth of the server's CPU
    /// time for a small artifact or a miss), and with the peer known without a
    /// `ConnectInfo` extension in each request (three allocations).
    pub(crate) fn hot(
        &self,
        peer: SocketAddr,
    ) -> impl tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        use tower::Layer;
        let app = self.0.clone();
        let handler = tower::service_fn(move |request: axum::extract::Request| {
            let app = app.clone();
            // `artifact::get` in two parts, the second boxed: a hit from memory or a miss is
            // answered within the first poll, and the future moved through the layers stays a
            // few words (unboxed, its state was kilobytes, copied at every layer).
            async move {
                let answer = match artifact::begin_get(&app, request, Some(peer)) {
                    Ok(artifact::Begun::Answered(response)) => Ok(response),
                    Ok(artifact::Begun::Pending(pending)) => Box::pin(pending.finish(app)).await,
                    Err(reject) => Err(reject),
                };
                Ok::<_, Infallible>(axum::response::IntoResponse::into_response(answer))
            }
        });
        layers(&self.0, Some(peer)).layer(handler)
    }

    /// Whether `request` is one [`hot`](Self::hot) answers: `GET` or `HEAD` of exactly
    /// `/artifact` (as the router matches it, undecoded).
    pub(crate) fn is_hot<B>(request: &axum::http::Request<B>) -> bool {
        let method = request.method();
        (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
            && request.uri().path() == ARTIFACT_PATH
    }
}

/// The layers around every route, the first outermost: the `Authorization` header marked
/// sensitive, a panic answered with 500, and the request middleware (`observe.rs`).
fn layers(
    app: &App,
    peer: Option<SocketAddr>,
) -> (
    tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer,
    panic::PanicGuardLayer,
    observe::ObserveLayer,
) {
    (
        tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]),
        panic::PanicGuardLayer,
        observe::ObserveLayer { app: app.clone(), peer },
    )
}

/// The state the handlers share.
#[derive(Clone)]
struct App(Arc<AppInner>);

struct AppInner {
    cache: Cache,
    config: ServerConfig,
    /// One permit per tar stream in flight.
    streams: Arc<Semaphore>,
    /// Tar streams in flight per client address.
    peer_streams: Arc<PeerLimit>,
    metrics: Arc<Metrics>,
    /// Transfers in flight and recent warnings, for the status page.
    activity: Arc<status::Activity>,
    started: Instant,
    /// Small artifacts' streams kept in memory; `None` when the budget is 0.
    small: Option<small::SmallStreams>,
    /// Entry indexes being read, a few at a time.
    index_loads: artifact::IndexLoads,
}

impl std::ops::Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// A tar stream's share of the stream limits, given back when dropped.
struct StreamSlot {
    _slot: OwnedSemaphorePermit,
    _of_peer: Option<PeerPermit>,
}

/// The client's IP address, when the server that runs the router says it
/// (`ConnectInfo<SocketAddr>`, as [`serve`] does).
type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    peer.as_ref().map(|info| info.0.0.ip())
}

/// What a request wants to do, for the token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl AppInner {
    /// Checks the token where `access` needs one, in constant time.
    fn authorize(&self, headers: &HeaderMap, access: Access) -> Result<(), Reject> {
        let Some(token) = &self.config.token else { return Ok(()) };
        if access == Access::Read && !self.config.token_for_reads {
            return Ok(());
        }
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match authorization {
            Some(value) if crate::protocol::presents_token(value, token) => Ok(()),
            _ => Err(Reject::Unauthorized),
        }
    }

    /// A slot for one tar stream for a client at `peer` (when known), or 503.
    fn stream_slot(&self, peer: Option<IpAddr>) -> Result<StreamSlot, Reject> {
        let refuse = || {
            Metrics::add(&self.metrics.streams_refused, 1);
            Reject::Overloaded { retry_after: self.config.retry_after_secs() }
        };
        let of_peer = match peer {
            Some(ip) => Some(self.peer_streams.try_take(ip).ok_or_else(refuse)?),
            None => None,
        };
        let slot = self.streams.clone().try_acquire_owned().map_err(|_| refuse())?;
        Ok(StreamSlot { _slot: slot, _of_peer: of_peer })
    }

    fn reject_cache(&self, id: ArtifactId, err: artifact_cache::Error) -> Reject {
        Reject::from_cache(id, err, self.config.retry_after_secs())
    }
}

/// `GET /healthz`: 200 `ok` while the cache is usable (its root there and writable), else 503
/// with the reason.
async fn health(
    axum::extract::State(app): axum::extract::State<App>,
) -> Result<&'static str, Reject> {
    let cache = app.cache.clone();
    crate::bridge::blocking(move || cache.check_usable()).await.map_err(Reject::Unhealthy)?;
    Ok("ok\n")
}

/// The `id` query parameter, parsed; 400 when absent or malformed.
fn parse_id(query: Option<&str>) -> Result<ArtifactId, Reject> {
    let value = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == "id").then_some(value))
        .ok_or_else(|| Reject::BadRequest("missing query parameter `id`".into()))?;
    let id: ArtifactId =
        value.parse().map_err(|err| Reject::BadRequest(format!("bad artifact id: {err}")))?;
    tracing::Span::current().record("id", tracing::field::display(&id));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_query() {
        assert_eq!(parse_id(Some("id=ABcd")).unwrap().to_string(), "abcd");
        assert_eq!(parse_id(Some("x=1&id=00")).unwrap().to_string(), "00");
        for bad in [None, Some(""), Some("id="), Some("id=abc"), Some("id=../x"), Some("ids=00")] {
            let err = parse_id(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
    }
}
