//! [`serve`], [`serve_endpoints`] and [`serve_router`]: the accept loop (HTTP/1.1 with hyper,
//! over TLS with the `tls` feature, header read timeout, connection limit), the hot path of
//! `GET /artifact`, and graceful shutdown; [`shutdown_signal`].

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use artifact_cache::Cache;
use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
};
use futures_util::future::Either;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::{Endpoints, ServerConfig, peers::PeerLimit};
use crate::Error;

/// How long to pause accepting after `accept` fails (out of file descriptors, for example).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The most bytes a connection's socket holds unsent (`TCP_NOTSENT_LOWAT`).
///
/// Without it, the kernel may queue megabytes for a slow reader and only report room again
/// once half of them are gone: a client reading 20 KB/s steadily would let the server's sender
/// wait minutes for room, and be cut off by the idle timeout as if it had stalled. With it,
/// what a client takes shows up as room within a few tens of KiB, so the idle timeout measures
/// the client's progress. Readers that keep up are not slowed: what is sent at once is never
/// "unsent".
const NOTSENT_LOWAT: u32 = 128 << 10;

/// Serves `cache` on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish for up to [`ServerConfig::shutdown_grace`], closes what is left
/// and returns.
///
/// HTTP/1.1 with keep-alive. A client gets [`ServerConfig::header_read_timeout`] to send each
/// request's headers (also between requests on a kept-alive connection); at most
/// [`ServerConfig::max_connections`] connections are open at once (more wait in the listen
/// backlog). Every connection's requests carry the peer address (axum's
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo)) for the logs.
///
/// ```no_run
/// use artifact_cache::Cache;
/// use artifact_http::{ServerConfig, serve, shutdown_signal};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::open("/var/cache/artifact")?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8417").await?;
/// serve(listener, cache, ServerConfig::default(), shutdown_signal()).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Io`] if the listener's address cannot be read. Failures to accept a connection
/// are logged and retried, not returned.
pub async fn serve(
    listener: TcpListener,
    cache: Cache,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let endpoints = Endpoints::new(cache, config);
    serve_endpoints(listener, &endpoints, endpoints.router(), shutdown).await
}

/// Like [`serve_router`], for an `app` that has `endpoints`' [`router`](Endpoints::router)
/// at its root (merged, not nested under a prefix), with the hot path of [`serve`]: `GET` and
/// `HEAD /artifact` go straight to `endpoints`' handler, inside the same request span,
/// counters, limits and panic guard as its route in `app`, but without the router's dispatch
/// (a tenth to a sixth less server CPU for a small artifact or a miss). Every other request
/// goes to `app`.
///
/// So layers that `app` adds around its routes do not see `GET` and `HEAD /artifact`: use it
/// for layers that pass those through (as the jobs' `/metrics` layer of `artifact serve`
/// does), and [`serve_router`] otherwise. The configuration is `endpoints`'.
///
/// ```no_run
/// use artifact_cache::Cache;
/// use artifact_http::{Endpoints, ServerConfig, serve_endpoints, shutdown_signal};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoints = Endpoints::new(Cache::open("/var/cache/artifact")?, ServerConfig::default());
/// let app = endpoints
///     .router()
///     .route("/about", axum::routing::get(|| async { "build farm cache" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8417").await?;
/// serve_endpoints(listener, &endpoints, app, shutdown_signal()).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_endpoints(
    listener: TcpListener,
    endpoints: &Endpoints,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let hot = |peer| endpoints.hot(peer);
    accept(listener, app, Some(hot), endpoints.config(), shutdown).await
}

/// Like [`serve`], for any axum [`Router`]: an application that mounts
/// [`router`](super::router) among its own routes (or wraps it in its own layers) gets the
/// same accept loop, header read timeout, connection limit and graceful shutdown (but not the
/// hot path of [`serve_endpoints`]). Of `config`, only `header_read_timeout`,
/// `max_connections`, `max_connections_per_peer`, `shutdown_grace` and `tls` apply here.
///
/// ```no_run
/// use artifact_cache::Cache;
/// use artifact_http::{ServerConfig, router, serve_router, shutdown_signal};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ServerConfig::default();
/// let app = axum::Router::new()
///     .route("/about", axum::routing::get(|| async { "build farm cache" }))
///     .merge(router(Cache::open("/var/cache/artifact")?, config.clone()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8417").await?;
/// serve_router(listener, app, &config, shutdown_signal()).await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    accept(listener, app, None::<fn(SocketAddr) -> Router>, config, shutdown).await
}

/// The accept loop of [`serve_router`] and [`serve_endpoints`]: each request to the service
/// that `hot` makes for its connection's peer where [`Endpoints::is_hot`] says so, to `app`
/// otherwise.
async fn accept<M, H>(
    listener: TcpListener,
    app: Router,
    hot: Option<M>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error>
where
    M: Fn(SocketAddr) -> H,
    H: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    H::Future: Send + 'static,
{
    let addr = listener
        .local_addr()
        .map_err(|err| Error::Io { what: "reading the listen address", source: Arc::new(err) })?;
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    // A body's chunks are taken from its stream only while less than this is waiting to be
    // written: one chunk of a download (and, as its tail goes out, the next) rather than the
    // default 400 KiB of them, per connection (see `bridge::SEND_BUFFERS_PER_STREAM`).
    http.max_buf_size(crate::bridge::SEND_CHUNK);
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_peer = PeerLimit::new(config.max_connections_per_peer);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    info!(%addr, "listening");
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        // Closed at once rather than left waiting: one host may not fill the connection limit.
        let Some(peer_permit) = per_peer.try_take(peer.ip()) else {
            debug!(%peer, "too many connections from this address: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let (app, hot) = (app.clone(), hot.as_ref().map(|make| make(peer)));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            match &hot {
                // The hot path knows its peer without the extension. `GET` and `HEAD` read no
                // body: dropping it here spares boxing it (hyper then drains or closes as it
                // would when the handler dropped it).
                Some(hot) if Endpoints::is_hot(&request) => {
                    Either::Left(hot.clone().oneshot(request.map(|_| Body::empty())))
                }
                _ => {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    Either::Right(app.clone().oneshot(request))
                }
            }
        });
        #[cfg(feature = "tls")]
        if let Some(tls) = &config.tls {
            // The handshake runs on the connection's task, so a slow one holds up no other
            // client; it gets the header read timeout, like a client slow to send headers.
            let (tls, http, watcher) = (tls.clone(), http.clone(), graceful.watcher());
            let handshake_timeout = config.header_read_timeout;
            tasks.spawn(async move {
                match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        if let Err(err) = watcher.watch(connection).await {
                            debug!(%peer, error = %err, "connection closed with an error");
                        }
                    }
                    Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
                drop((permit, peer_permit));
            });
            continue;
        }
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tasks.spawn(async move {
            if let Err(err) = connection.await {
                debug!(%peer, error = %err, "connection closed with an error");
            }
            drop((permit, peer_permit));
        });
    }
    drop(listener);
    info!(connections = graceful.count(), grace = ?config.shutdown_grace, "shutting down: draining in-flight requests");
    match tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => info!("drained; stopped"),
        Err(_) => {
            warn!(
                connections = tasks.len(),
                "grace period over: closing the remaining connections"
            );
            tasks.abort_all();
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the usual `shutdown` argument of [`serve`].
///
/// The signal handlers are installed when this is called, not when the future is first
/// polled, so a signal that arrives in between (say, right after the server announced its
/// address) is not lost to the default action. If they cannot be installed, it logs why and
/// the future never completes.
///
/// # Panics
///
/// If called outside a tokio runtime (with IO enabled), as tokio's signal handling needs one.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
        (Err(err), _) | (_, Err(err)) => {
            warn!(error = %err, "cannot install signal handlers; shut down by killing the process");
            None
        }
    };
    async move {
        let Some((mut interrupt, mut terminate)) = handlers else {
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        info!(signal = name, "shutdown requested");
    }
}
