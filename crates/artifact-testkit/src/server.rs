//! [`TestServer`]: the real `artifact-http` router on `127.0.0.1:0`, behind a layer that
//! injects [`Fault`]s into artifact downloads and counts what the server sees ([`Stats`]).
//!
//! ```
//! use artifact_testkit::server::{Fault, TestServer};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let cache = artifact_cache::Cache::open(dir.path()).unwrap();
//! let server = TestServer::start(cache).await;
//! server.faults().once(Fault::Status(503));
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! server.stop().await;
//! # }
//! ```

use std::{
    collections::VecDeque,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    task::{Context, Poll},
    time::Duration,
};

use artifact_cache::Cache;
use artifact_http::ServerConfig;
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::{sync::watch, task::JoinHandle};

/// A fault to inject into a `GET /artifact` response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer this status (with `Retry-After: 0` for 409 and 503) without touching the cache.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Send the first `n` body bytes, then break the connection.
    CutAfter(u64),
    /// Send the first `n` body bytes, then send nothing more, ever (the download's read lock
    /// is released at once; the connection stays open).
    StallAfter(u64),
    /// Flip the bits of the body byte at this offset.
    Corrupt(u64),
    /// Wait until the gate is open, then answer normally (requests pile up while it is shut).
    Wait(Gate),
    /// Send the body at most this many bytes per second (for benchmarks: it sleeps).
    Rate(u64),
}

/// A gate that [`Fault::Wait`] requests wait at, shut until [`open`](Gate::open)ed.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    /// A shut gate.
    pub fn shut() -> Gate {
        Gate(Arc::new(watch::channel(false).0))
    }

    /// Opens the gate for good: the requests waiting at it, and later ones, go on.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let _ = self.0.subscribe().wait_for(|open| *open).await;
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// The faults waiting for the next downloads: each rule applies to a number of requests (or
/// all), in the order added.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<VecDeque<Rule>>>,
}

/// A fault and how many more requests it applies to (`None`: all).
type Rule = (Fault, Option<usize>);

impl Faults {
    /// Applies `fault` to the next download.
    pub fn once(&self, fault: Fault) {
        self.times(fault, 1);
    }

    /// Applies `fault` to the next `n` downloads.
    pub fn times(&self, fault: Fault, n: usize) {
        self.lock().push_back((fault, Some(n)));
    }

    /// Applies `fault` to every download from now on (after the rules already queued).
    pub fn always(&self, fault: Fault) {
        self.lock().push_back((fault, None));
    }

    /// Forgets every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn next(&self) -> Option<Fault> {
        let mut rules = self.lock();
        let (fault, left) = rules.front_mut()?;
        let fault = fault.clone();
        if let Some(left) = left {
            *left -= 1;
            if *left == 0 {
                rules.pop_front();
            }
        }
        Some(fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Rule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the server saw, counted by the fault layer.
#[derive(Debug, Default)]
pub struct Stats {
    /// `GET /artifact` requests (download attempts).
    pub downloads: AtomicU64,
    /// `PUT /artifact` requests.
    pub uploads: AtomicU64,
    /// All requests.
    pub requests: AtomicU64,
    /// Body bytes of `GET /artifact` answers sent (after the faults).
    pub body_bytes: AtomicU64,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    idle: Option<watch::Sender<usize>>,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats { idle: Some(watch::channel(0).0), ..Stats::default() }
    }

    /// Downloads counted so far.
    pub fn downloads(&self) -> u64 {
        self.downloads.load(SeqCst)
    }

    /// Body bytes of `GET /artifact` answers sent so far (a cut answer counts what went
    /// before the cut).
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(SeqCst)
    }

    /// Uploads counted so far.
    pub fn uploads(&self) -> u64 {
        self.uploads.load(SeqCst)
    }

    /// The most `GET /artifact` requests in flight at once (from arrival until the response
    /// body ended or was dropped).
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(SeqCst)
    }

    /// `GET /artifact` requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    /// Waits until at least `n` `GET /artifact` requests are in flight.
    pub async fn wait_in_flight(&self, n: usize) {
        let mut rx = self.idle.as_ref().expect("made by Stats::new").subscribe();
        let _ = rx.wait_for(|_| self.in_flight.load(SeqCst) >= n).await;
    }

    /// Waits until no `GET /artifact` is in flight.
    pub async fn wait_idle(&self) {
        let mut rx = self.idle.as_ref().expect("made by Stats::new").subscribe();
        let _ = rx.wait_for(|_| self.in_flight.load(SeqCst) == 0).await;
    }

    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        if let Some(idle) = &self.idle {
            idle.send_replace(now);
        }
        InFlight(self.clone())
    }
}

/// Counts one download in flight until dropped.
pub(crate) struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let left = self.0.in_flight.fetch_sub(1, SeqCst) - 1;
        if let Some(idle) = &self.0.idle {
            idle.send_replace(left);
        }
    }
}

/// The real router on `127.0.0.1:0` behind the fault layer, run by `artifact_http`'s own
/// accept loop. Stops when dropped (or with [`stop`](TestServer::stop), which waits).
pub struct TestServer {
    addr: SocketAddr,
    url: String,
    cache: Cache,
    faults: Faults,
    stats: Arc<Stats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("url", &self.url).finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct LayerState {
    faults: Faults,
    stats: Arc<Stats>,
}

impl TestServer {
    /// Serves `cache` with the default [`ServerConfig`].
    pub async fn start(cache: Cache) -> TestServer {
        TestServer::start_with(cache, ServerConfig::default()).await
    }

    /// Serves `cache` with `config`.
    pub async fn start_with(cache: Cache, config: ServerConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("a bound address");
        let faults = Faults::default();
        let stats = Arc::new(Stats::new());
        let state = LayerState { faults: faults.clone(), stats: stats.clone() };
        let app = artifact_http::router(cache.clone(), config.clone())
            .layer(axum::middleware::from_fn_with_state(state, inject));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            artifact_http::serve_router(listener, app, &config, shutdown)
                .await
                .expect("the test server runs");
        });
        TestServer {
            addr,
            url: format!("http://{addr}"),
            cache,
            faults,
            stats,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cache it serves.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The fault rules; add some before the requests they should hit.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// What it saw.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Shuts down gracefully (in-flight requests finish, up to the config's grace period) and
    /// waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the test server does not panic");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The fault layer.
async fn inject(State(state): State<LayerState>, request: Request, next: Next) -> Response {
    state.stats.requests.fetch_add(1, SeqCst);
    let is_artifact = request.uri().path() == artifact_http::protocol::ARTIFACT_PATH;
    if is_artifact && request.method() == Method::PUT {
        state.stats.uploads.fetch_add(1, SeqCst);
    }
    if !is_artifact || request.method() != Method::GET {
        return next.run(request).await;
    }
    state.stats.downloads.fetch_add(1, SeqCst);
    let in_flight = state.stats.enter();
    let fault = state.faults.next();
    apply(fault, in_flight, request, next).await
}

/// Answers `request` with `fault` applied (the body counted in flight until it ends).
pub(crate) async fn apply(
    fault: Option<Fault>,
    in_flight: InFlight,
    request: Request,
    next: Next,
) -> Response {
    let response = match &fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).expect("a valid status code");
            let body = format!("{{\"error\":\"injected fault: status {code}\"}}");
            let mut response =
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            if matches!(code, 409 | 503) {
                response.headers_mut().insert(header::RETRY_AFTER, 0.into());
            }
            response
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(*delay).await;
            next.run(request).await
        }
        Some(Fault::Wait(gate)) => {
            gate.passed().await;
            next.run(request).await
        }
        _ => next.run(request).await,
    };
    let (parts, body) = response.into_parts();
    let (sleep, flushed) = (None, false);
    let body =
        Faulty { inner: Some(body), fault, offset: 0, sleep, flushed, _in_flight: in_flight };
    Response::from_parts(parts, Body::new(body))
}

pin_project_lite::pin_project! {
    /// A response body with a fault applied, counted in flight until it ends or is dropped.
    struct Faulty {
        #[pin]
        inner: Option<Body>,
        fault: Option<Fault>,
        offset: u64,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        // A cut first lets the connection flush what went before it.
        flushed: bool,
        _in_flight: InFlight,
    }
}

impl HttpBody for Faulty {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let limit = match this.fault {
            Some(Fault::CutAfter(n) | Fault::StallAfter(n)) => Some(*n),
            _ => None,
        };
        if limit.is_some_and(|limit| *this.offset >= limit) {
            return match this.fault {
                // Pending once (awake at once) before the cut: the server writes out what it
                // has, as a connection cut on the way would have delivered it.
                Some(Fault::CutAfter(_)) if !*this.flushed => {
                    *this.flushed = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Fault::CutAfter(_)) => {
                    this.inner.set(None);
                    Poll::Ready(Some(Err(axum::Error::new("injected fault: connection cut"))))
                }
                // Stall: let go of the real body (and its lock), and never wake up.
                _ => {
                    this.inner.set(None);
                    Poll::Pending
                }
            };
        }
        if let Some(sleep) = this.sleep.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
            *this.sleep = None;
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else { return Poll::Ready(None) };
        let frame = match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        let start = *this.offset;
        let end = start + data.len() as u64;
        if let Some(limit) = limit.filter(|limit| end > *limit) {
            data.truncate((limit - start) as usize);
        }
        if let Some(Fault::Corrupt(at)) = this.fault
            && (start..end).contains(at)
        {
            let mut bytes = data.to_vec();
            bytes[(*at - start) as usize] ^= 0xff;
            data = Bytes::from(bytes);
        }
        *this.offset += data.len() as u64;
        this._in_flight.0.body_bytes.fetch_add(data.len() as u64, SeqCst);
        if let Some(Fault::Rate(rate)) = this.fault {
            // This frame's share of a second, waited before the next one.
            let wait = Duration::from_secs_f64(data.len() as f64 / (*rate).max(1) as f64);
            *this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.fault.is_none() && self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.fault, &self.inner) {
            (None, Some(inner)) => inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
