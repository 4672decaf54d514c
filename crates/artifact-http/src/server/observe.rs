//! The request middleware: a `tracing` span per request (method, path, id, peer, status), the
//! request counters, and one line when the response body has ended (bytes, duration,
//! outcome), however it ended.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tracing::{Instrument, Span, field};

use super::{
    App,
    metrics::{Endpoint, Metrics},
};

/// The middleware (see the module docs).
pub(crate) async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
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
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        span.record("peer", field::display(peer));
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    app.metrics.request(endpoint, status);
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
