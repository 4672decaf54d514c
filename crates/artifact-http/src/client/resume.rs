//! Resumed downloads: a body cut or stalled mid-stream is continued with a range request
//! (`Range: bytes=N-`, `If-Range: "DIGEST"`) for the bytes not yet received, on the same
//! endpoint or another that serves the same stream, and the answers are spliced into the one
//! byte stream that a single `receive` reads, so the tree digest carries on across the cut.

use std::{
    io,
    ops::Range,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use artifact_cache::ArtifactId;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{StatusCode, header};
use tarstream::Digest;
use tokio::sync::SemaphorePermit;
use tracing::debug;

use super::{
    Endpoint, Inner,
    answer::{BoxStream, low_speed, status_error},
};
use crate::{Error, protocol};

/// What the bodies of one attempt went through, shared between the splicing stream and the
/// attempt that explains its failure.
#[derive(Default)]
pub(super) struct Wire {
    /// The transport error of the last body that failed.
    pub(super) transport: Mutex<Option<reqwest::Error>>,
    /// The last body fell below the low-speed limit.
    pub(super) too_slow: Arc<AtomicBool>,
    /// The last body stalled for the idle timeout.
    pub(super) stalled: AtomicBool,
    /// The requests made and the bytes each endpoint served.
    pub(super) trail: Mutex<Trail>,
    /// Why a many-source stream gave up.
    pub(super) failure: Mutex<Option<Error>>,
}

/// The requests of one attempt.
#[derive(Debug, Default, Clone)]
pub(super) struct Trail {
    /// Requests made, the first included.
    pub(super) requests: u32,
    /// Bodies continued by a range request.
    pub(super) resumes: u32,
    /// The endpoint (by index) that served the latest bytes.
    pub(super) last: usize,
    /// Body bytes per endpoint (by index), in the order first used.
    pub(super) served: Vec<(usize, u64)>,
    /// Bytes received and thrown away within the attempt (chunks fetched again).
    pub(super) refetched: u64,
    /// The most bytes a many-source reorder buffer held.
    pub(super) peak_buffered: u64,
    /// The stream came as ranges from many sources.
    pub(super) many: bool,
}

impl Trail {
    /// The stream was put together from several answers.
    pub(super) fn spliced(&self) -> bool {
        self.resumes > 0 || self.many
    }
}

impl Trail {
    pub(super) fn count(&mut self, endpoint: usize, bytes: u64) {
        match self.served.iter_mut().find(|(e, _)| *e == endpoint) {
            Some((_, total)) => *total += bytes,
            None => self.served.push((endpoint, bytes)),
        }
    }
}

impl Wire {
    pub(super) fn trail(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.trail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wraps a response's body: transport errors kept aside, the low-speed limit applied.
    pub(super) fn body<'a>(
        self: &Arc<Self>,
        inner: &Inner,
        response: reqwest::Response,
    ) -> BoxStream<'a> {
        let wire = self.clone();
        let body = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|err| {
                *wire.transport.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                io::Error::new(io::ErrorKind::ConnectionAborted, "the response body failed")
            })
        });
        self.too_slow.store(false, Ordering::Release);
        self.stalled.store(false, Ordering::Release);
        match inner.settings.low_speed {
            Some((rate, window)) => Box::pin(low_speed(body, rate, window, self.too_slow.clone())),
            None => Box::pin(body),
        }
    }
}

/// The byte stream of a resumable attempt: the first answer's body, then, each time a body
/// fails before the stream's end, the answer to a range request for the rest.
pub(super) struct Splice<'a> {
    pub(super) inner: &'a Inner,
    pub(super) id: ArtifactId,
    pub(super) digest: Digest,
    /// The stream's length (the first answer's `Content-Length`).
    pub(super) total: u64,
    /// Bytes delivered so far: the offset of the next byte.
    pub(super) offset: u64,
    pub(super) body: Option<(BoxStream<'a>, SemaphorePermit<'a>)>,
    /// The endpoint serving `body`.
    pub(super) current: usize,
    /// Endpoints that may still be asked for a range.
    pub(super) eligible: Vec<bool>,
    /// Requests this attempt may still make.
    pub(super) budget: u32,
    pub(super) wire: Arc<Wire>,
}

impl<'a> Splice<'a> {
    /// The spliced bytes, as a stream.
    pub(super) fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'a {
        futures_util::stream::unfold(self, |mut splice| async move {
            let item = splice.next().await?;
            Some((item, splice))
        })
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        let idle = self.inner.settings.idle_timeout;
        loop {
            let (body, _) = self.body.as_mut()?;
            let err = match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.offset += chunk.len() as u64;
                    self.wire.trail().count(self.current, chunk.len() as u64);
                    return Some(Ok(chunk));
                }
                Ok(None) if self.offset >= self.total => {
                    self.body = None;
                    return None;
                }
                Ok(None) => io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"),
                Ok(Some(Err(err))) => err,
                Err(_) => {
                    self.wire.stalled.store(true, Ordering::Release);
                    io::Error::new(io::ErrorKind::TimedOut, "the body stalled")
                }
            };
            // Let go of the failed answer (and its endpoint's permit) before asking again.
            self.body = None;
            if self.offset >= self.total {
                return Some(Err(err));
            }
            debug!(offset = self.offset, total = self.total, error = %err, "body cut; resuming");
            match self.resume().await {
                Some(next) => self.body = Some(next),
                None => return Some(Err(err)),
            }
        }
    }

    /// Asks the endpoints in turn, starting after the one that failed, for the rest of the
    /// stream; `None` once the budget is spent or none can serve it.
    async fn resume(&mut self) -> Option<(BoxStream<'a>, SemaphorePermit<'a>)> {
        let count = self.eligible.len();
        let mut candidate = self.current;
        let mut round = 0;
        while self.budget > 0 && self.eligible.iter().any(|e| *e) {
            candidate = (candidate + 1) % count;
            if !self.eligible[candidate] {
                continue;
            }
            if candidate == self.current {
                // Back to the endpoint that failed: give it a moment first.
                tokio::time::sleep(self.inner.pause(round, None)).await;
                round += 1;
            }
            self.budget -= 1;
            self.wire.trail().requests += 1;
            let endpoint = &self.inner.endpoints[candidate];
            let permit = endpoint.permits.acquire().await.expect("never closed");
            let range = self.offset..self.total;
            match self.inner.get_range(self.id, endpoint, range, self.digest, self.total).await {
                Ok(response) => {
                    let body = self.wire.body(self.inner, response);
                    self.current = candidate;
                    let mut trail = self.wire.trail();
                    trail.resumes += 1;
                    trail.last = candidate;
                    return Some((body, permit));
                }
                Err(err) => {
                    debug!(endpoint = %endpoint.base, error = %err, "cannot resume here");
                    // Absent, refusing, or unable to serve ranges of this stream: not again.
                    if !err.is_retryable() {
                        self.eligible[candidate] = false;
                    }
                }
            }
        }
        None
    }
}

impl Inner {
    /// A GET of `range` of `id`'s stream from `endpoint`, on condition that the endpoint
    /// serves the stream whose digest is `digest` and length `total` (`If-Range`): only a
    /// 206 with exactly those bytes is accepted. A 200 (ranges not supported, or another
    /// stream under that id) is an [`Error::Protocol`].
    pub(super) async fn get_range(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        range: Range<u64>,
        digest: Digest,
        total: u64,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}{}", endpoint.base, protocol::artifact_path(&id));
        let etag = protocol::etag(&digest);
        let request = self
            .http
            .get(&url)
            .header(header::RANGE, format!("bytes={}-{}", range.start, range.end - 1))
            .header(header::IF_RANGE, &etag);
        let response = self.send(id, endpoint, request).await?;
        let refuse =
            |reason: String| Error::Protocol { id, endpoint: endpoint.base.to_string(), reason };
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                return Err(refuse("answered the whole stream to a range request".into()));
            }
            _ => {
                let idle = self.settings.idle_timeout;
                return Err(status_error(id, endpoint, response, idle).await);
            }
        }
        let text = |name: header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        if text(header::ETAG).as_deref() != Some(etag.as_str()) {
            return Err(refuse(format!(
                "a range of another stream (ETag {:?})",
                text(header::ETAG)
            )));
        }
        let served = text(header::CONTENT_RANGE).as_deref().and_then(protocol::parse_content_range);
        if served != Some((range.clone(), Some(total))) {
            let got = text(header::CONTENT_RANGE);
            return Err(refuse(format!(
                "asked for {range:?} of {total}, got Content-Range {got:?}"
            )));
        }
        match text(header::CONTENT_ENCODING) {
            None => {}
            Some(coding) if coding.eq_ignore_ascii_case("identity") => {}
            Some(coding) => return Err(refuse(format!("a range encoded as {coding:?}"))),
        }
        Ok(response)
    }
}

/// How long a splicing stream may go without a byte: its own idle checks (per body, per
/// request, plus the pauses between them) bound it, so the pump's own check is set beyond
/// them.
pub(super) const PUMP_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);
