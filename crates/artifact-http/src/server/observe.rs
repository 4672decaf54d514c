//! The request middleware: a `tracing` span per request (method, path, id, peer, status), the
//! request counters, the transfers in flight and the warnings the status page lists, and one
//! line when the response body has ended (bytes, duration, outcome), however it ended.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request},
    response::Response,
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tracing::{Instrument, Span, field};

use super::{
    App,
    metrics::{Endpoint, Metrics},
    status::{TransferGuard, Warned},
};

/// The mark of a response whose body is in memory whole (a kept small stream): it goes out in
/// one write, so the status page does not list it among the transfers in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InMemory;

/// The middleware (see the module docs) as a layer: written out rather than with
/// `axum::middleware::from_fn`, which boxes the request's future, boxes the inner service
/// again and clones it, on every request (four allocations of the forty a small request
/// made).
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    pub(crate) app: App,
    /// The client's address where the layer serves one connection (the hot path); `None`:
    /// each request's `ConnectInfo<SocketAddr>` extension tells, if any.
    pub(crate) peer: Option<SocketAddr>,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> ObserveService<S> {
        ObserveService { inner, app: self.app.clone(), peer: self.peer }
    }
}

/// The service of [`ObserveLayer`] around one route.
#[derive(Clone)]
pub(crate) struct ObserveService<S> {
    inner: S,
    app: App,
    peer: Option<SocketAddr>,
}

impl<S> tower::Service<Request> for ObserveService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let endpoint = Endpoint::of(request.method(), request.uri().path());
        let head = request.method() == axum::http::Method::HEAD;
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = request.uri().path(),
            id = field::Empty,
            peer = field::Empty,
            status = field::Empty,
        );
        let peer = self.peer.or_else(|| {
            request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer)
        });
        if let Some(peer) = peer {
            span.record("peer", field::display(peer));
        }
        // A clone shares the request's bytes: the id is read from it only for a listed transfer.
        let uri = request.uri().clone();
        let started = Instant::now();
        let mut transfer = None;
        let request = if endpoint == Endpoint::Put {
            let total = content_length(request.headers());
            let guard = Arc::new(self.app.activity.start("put", raw_id(uri.query()), peer, total));
            transfer = Some(guard.clone());
            request.map(|body| Body::new(Counted { inner: body, guard }))
        } else {
            request
        };
        let answer = self.inner.call(request).instrument(span.clone());
        let asked =
            Asked { app: self.app.clone(), endpoint, head, span, peer, uri, started, transfer };
        Observing { answer, asked: Some(asked) }
    }
}

/// What [`ObserveService::call`] noted of a request, for its answer.
struct Asked {
    app: App,
    endpoint: Endpoint,
    head: bool,
    span: Span,
    peer: Option<SocketAddr>,
    uri: axum::http::Uri,
    started: Instant,
    /// An upload's entry on the status page.
    transfer: Option<Arc<TransferGuard>>,
}

pin_project_lite::pin_project! {
    /// The answer of an observed request: the inner one, counted and wrapped when it comes.
    pub(crate) struct Observing<F> {
        #[pin]
        answer: tracing::instrument::Instrumented<F>,
        asked: Option<Asked>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Observing<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.answer.poll(cx));
        let asked = this.asked.take().expect("an answer is polled to completion once");
        Poll::Ready(Ok(answered(asked, response)))
    }
}

/// Counts the answer to a request and wraps its body in [`Observed`].
fn answered(asked: Asked, mut response: Response) -> Response {
    let Asked { app, endpoint, head, span, peer, uri, started, mut transfer } = asked;
    let status = response.status().as_u16();
    span.record("status", status);
    app.metrics.request(endpoint, status);
    if let Some(warned) = response.extensions_mut().remove::<Warned>() {
        app.activity.warn(endpoint.label(), &warned);
    }
    if endpoint == Endpoint::Get
        && response.status().is_success()
        && response.extensions().get::<InMemory>().is_none()
    {
        let total = content_length(response.headers());
        transfer = Some(Arc::new(app.activity.start("get", raw_id(uri.query()), peer, total)));
    }
    let (parts, body) = response.into_parts();
    // Hyper never polls a body that says it is over (nor one answering HEAD).
    let over = head || body.is_end_stream();
    let finish = Finish {
        span,
        started,
        status,
        endpoint,
        metrics: app.metrics.clone(),
        bytes: 0,
        outcome: over.then_some("complete"),
        transfer,
    };
    Response::from_parts(parts, Body::new(Observed { inner: body, finish }))
}

pin_project_lite::pin_project! {
    /// A response body that counts what it yields and reports its end.
    struct Observed {
        #[pin]
        inner: Body,
        finish: Finish,
    }
}

/// The bookkeeping done when a response body ends, fails or is dropped.
struct Finish {
    span: Span,
    started: Instant,
    status: u16,
    endpoint: Endpoint,
    metrics: Arc<Metrics>,
    bytes: u64,
    /// Set once the body ended or failed; `None` at drop means the client went away.
    outcome: Option<&'static str>,
    /// The transfer's entry on the status page, removed when this is dropped.
    transfer: Option<Arc<TransferGuard>>,
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.finish.bytes += data.len() as u64;
                    if let Some(transfer) = &this.finish.transfer
                        && transfer.kind() == "get"
                    {
                        transfer.add(data.len() as u64);
                    }
                }
                // Hyper stops polling once a body of known length has yielded it all.
                if inner.is_end_stream() {
                    this.finish.outcome = Some("complete");
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish.outcome = Some("failed"),
            Poll::Ready(None) => this.finish.outcome = Some("complete"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that counts what it yields into its transfer's progress.
    struct Counted {
        #[pin]
        inner: Body,
        guard: Arc<TransferGuard>,
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.guard.add(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `id` query parameter as the client sent it (unchecked: shown escaped, cut short).
fn raw_id(query: Option<&str>) -> &str {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == "id").then_some(value))
        .unwrap_or("")
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

impl Drop for Finish {
    fn drop(&mut self) {
        Metrics::add(&self.metrics.bytes_sent, self.bytes);
        let outcome = self.outcome.unwrap_or("aborted");
        let millis = self.started.elapsed().as_secs_f64() * 1e3;
        let _enter = self.span.enter();
        if self.endpoint.is_noteworthy() {
            tracing::info!(
                status = self.status,
                bytes = self.bytes,
                ms = format_args!("{millis:.1}"),
                outcome,
                "served"
            );
        } else {
            tracing::debug!(status = self.status, bytes = self.bytes, outcome, "served");
        }
    }
}
