//! Many-source downloads: disjoint ranges of one stream fetched from several endpoints at
//! once, each taking the next chunk as soon as it is done with one (the faster take more),
//! put back in order by a bounded reorder buffer in front of `receive`; a failing source's
//! chunks go back to the queue for the others.
//!
//! [`Reorder`] is the scheduling core and knows nothing of HTTP: a source is an index, and a
//! chunk is fetched by whatever future the caller gives, so that other kinds of source (an
//! object store's ranged reads) can take part later.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    future::Future,
    io,
    ops::Range,
    pin::Pin,
    sync::{Arc, PoisonError},
};

use artifact_cache::ArtifactId;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream::FuturesUnordered};
use tarstream::Digest;
use tracing::{debug, warn};

use super::{Inner, resume::Wire};
use crate::{Error, TimeoutKind};

/// The default size from which a stream is fetched from many sources at once
/// ([`DownloaderBuilder::multi_source_threshold`](crate::DownloaderBuilder::multi_source_threshold)).
pub const DEFAULT_MULTI_SOURCE_THRESHOLD: u64 = 64 << 20;
/// The default size of the ranges of a many-source download
/// ([`DownloaderBuilder::chunk_size`](crate::DownloaderBuilder::chunk_size)).
pub const DEFAULT_CHUNK: u64 = 8 << 20;
/// Failures in a row after which a source is given up on for this download.
const SOURCE_FAILURES: u32 = 2;

/// What a many-source download is about.
pub(super) struct Plan {
    pub(super) digest: Digest,
    pub(super) total: u64,
    /// The endpoints that may serve it.
    pub(super) eligible: Vec<bool>,
    /// The endpoint whose answer announced it: the first source.
    pub(super) first: usize,
}

/// A chunk's bytes, or why they did not come and how many had come (then thrown away).
pub(super) type Fetched = Result<Vec<Bytes>, (Error, u64)>;

/// The in-order scheduler of chunks over sources, with a reorder buffer of at most `window`
/// chunks: no chunk at or beyond `next + window` is asked for, so the chunks held (in flight
/// or waiting for their turn) never exceed `window` (plus one duplicate of the next chunk,
/// taken over from a slow source).
#[derive(Debug)]
pub(super) struct Reorder {
    chunk: u64,
    total: u64,
    window: u64,
    /// Chunks not yet asked for (or given back), lowest first.
    queue: BTreeSet<u64>,
    /// The next chunk to hand on.
    next: u64,
    /// Whole chunks waiting for their turn, with the source that fetched each.
    ready: BTreeMap<u64, (usize, Vec<Bytes>)>,
    /// Sources fetching each chunk.
    fetching: HashMap<u64, u32>,
    /// Per source: busy, failures in a row, given up.
    busy: Vec<bool>,
    failures: Vec<u32>,
    dead: Vec<bool>,
    /// Bytes in `ready`, and the most it ever held.
    buffered: u64,
    pub(super) peak_buffered: u64,
    /// Bytes received and thrown away (failed or duplicate chunks).
    pub(super) refetched: u64,
    /// Bytes handed on per source.
    pub(super) served: Vec<u64>,
    /// The last failure, for when every source is gone.
    last_error: Option<Error>,
}

impl Reorder {
    pub(super) fn new(total: u64, chunk: u64, sources: usize, window: u64) -> Reorder {
        let chunks = total.div_ceil(chunk);
        Reorder {
            chunk,
            total,
            window: window.max(1),
            queue: (0..chunks).collect(),
            next: 0,
            ready: BTreeMap::new(),
            fetching: HashMap::new(),
            busy: vec![false; sources],
            failures: vec![0; sources],
            dead: vec![false; sources],
            buffered: 0,
            peak_buffered: 0,
            refetched: 0,
            served: vec![0; sources],
            last_error: None,
        }
    }

    /// The byte range of chunk `index`.
    pub(super) fn range(&self, index: u64) -> Range<u64> {
        index * self.chunk..((index + 1) * self.chunk).min(self.total)
    }

    /// The next chunk for idle source `source`, if any may start now: the lowest queued one
    /// inside the window, else (work stealing) the chunk the output waits for, when another
    /// source is still on it alone.
    pub(super) fn assign(&mut self, source: usize) -> Option<u64> {
        if self.busy[source] || self.dead[source] {
            return None;
        }
        let limit = self.next + self.window;
        let chunk = match self.queue.first() {
            Some(&first) if first < limit => {
                self.queue.pop_first();
                first
            }
            _ if self.next * self.chunk < self.total
                && !self.ready.contains_key(&self.next)
                && self.fetching.get(&self.next) == Some(&1) =>
            {
                self.next
            }
            _ => return None,
        };
        self.busy[source] = true;
        *self.fetching.entry(chunk).or_default() += 1;
        Some(chunk)
    }

    /// Takes in what source `source` fetched for chunk `index`.
    pub(super) fn done(&mut self, source: usize, index: u64, fetched: Fetched) {
        self.busy[source] = false;
        if let Some(n) = self.fetching.get_mut(&index) {
            *n -= 1;
            if *n == 0 {
                self.fetching.remove(&index);
            }
        }
        match fetched {
            Ok(bytes) => {
                self.failures[source] = 0;
                let len: u64 = bytes.iter().map(|b| b.len() as u64).sum();
                if index < self.next || self.ready.contains_key(&index) {
                    // Another source was faster with it.
                    self.refetched += len;
                    return;
                }
                self.queue.remove(&index);
                self.served[source] += len;
                self.buffered += len;
                self.peak_buffered = self.peak_buffered.max(self.buffered);
                self.ready.insert(index, (source, bytes));
            }
            Err((err, received)) => {
                self.refetched += received;
                self.failures[source] += 1;
                if !err.is_retryable() || self.failures[source] >= SOURCE_FAILURES {
                    self.dead[source] = true;
                }
                let wanted = index >= self.next && !self.ready.contains_key(&index);
                if wanted && !self.fetching.contains_key(&index) {
                    self.queue.insert(index);
                }
                self.last_error = Some(err);
            }
        }
    }

    /// The next chunk in order and the source that fetched it, if it is here.
    pub(super) fn pop(&mut self) -> Option<(usize, Vec<Bytes>)> {
        let (source, bytes) = self.ready.remove(&self.next)?;
        self.buffered -= bytes.iter().map(|b| b.len() as u64).sum::<u64>();
        self.next += 1;
        Some((source, bytes))
    }

    /// Every chunk was handed on.
    pub(super) fn finished(&self) -> bool {
        self.next * self.chunk >= self.total
    }

    /// No source is left to fetch what is missing: the error to end with.
    pub(super) fn stuck(&mut self) -> Option<Error> {
        let alive = self.dead.iter().any(|d| !d);
        (!alive && !self.finished() && self.fetching.is_empty())
            .then(|| self.last_error.take())
            .flatten()
    }
}

type Job<'a> = Pin<Box<dyn Future<Output = (usize, u64, Fetched)> + Send + 'a>>;

/// Drives `reorder` with `fetch(source, chunk, range)` and yields the stream's bytes in
/// order; ends with an error item when every source failed. `on_chunk(source, bytes)` sees
/// each chunk handed on.
pub(super) fn drive<'a, F, Fut, C>(
    reorder: Reorder,
    sources: usize,
    fetch: F,
    on_chunk: C,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'a
where
    F: Fn(usize, Range<u64>) -> Fut + Send + 'a,
    Fut: Future<Output = Fetched> + Send + 'a,
    C: FnMut(&Reorder, usize) + Send + 'a,
{
    struct State<'a, F, C> {
        on_chunk: C,
        reorder: Reorder,
        jobs: FuturesUnordered<Job<'a>>,
        out: VecDeque<Bytes>,
        fetch: F,
        sources: usize,
        failed: bool,
    }
    let state = State {
        on_chunk,
        reorder,
        jobs: FuturesUnordered::new(),
        out: VecDeque::new(),
        fetch,
        sources,
        failed: false,
    };
    futures_util::stream::unfold(state, move |mut s| {
        async move {
            loop {
                if let Some(bytes) = s.out.pop_front() {
                    return Some((Ok(bytes), s));
                }
                if s.failed || s.reorder.finished() {
                    return None;
                }
                if let Some((source, chunk)) = s.reorder.pop() {
                    (s.on_chunk)(&s.reorder, source);
                    s.out.extend(chunk);
                    continue;
                }
                for source in 0..s.sources {
                    if let Some(index) = s.reorder.assign(source) {
                        let range = s.reorder.range(index);
                        let job = (s.fetch)(source, range);
                        s.jobs.push(Box::pin(async move { (source, index, job.await) }));
                    }
                }
                if let Some(err) = s.reorder.stuck() {
                    s.failed = true;
                    return Some((Err(err), s));
                }
                let Some((source, index, fetched)) = s.jobs.next().await else {
                    // Nothing in flight and nothing assignable: cannot happen while a source
                    // lives, as the next chunk is always queued, in flight or ready.
                    s.failed = true;
                    let err = s.reorder.last_error.take();
                    return err.map(|err| (Err(err), s));
                };
                s.reorder.done(source, index, fetched);
            }
        }
    })
}

impl Inner {
    /// The stream of `plan` fetched as ranges from up to `sources` endpoints at once.
    pub(super) fn many_sources<'a>(
        &'a self,
        id: ArtifactId,
        plan: Plan,
        wire: Arc<Wire>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'a {
        let order = (0..plan.eligible.len()).map(|i| (plan.first + i) % plan.eligible.len());
        let chosen: Vec<usize> =
            order.filter(|i| plan.eligible[*i]).take(self.settings.sources).collect();
        let window = chosen.len() as u64 + 2;
        let reorder = Reorder::new(plan.total, self.settings.chunk, chosen.len(), window);
        debug!(sources = chosen.len(), total = plan.total, "fetching from many sources");
        let (digest, total) = (plan.digest, plan.total);
        let endpoints = chosen.clone();
        let fetch = move |source: usize, range: Range<u64>| {
            let endpoint = endpoints[source];
            self.fetch_chunk(id, endpoint, range, digest, total)
        };
        let wire_chunks = wire.clone();
        let count = chosen.len();
        let on_chunk = move |reorder: &Reorder, source: usize| {
            let mut trail = wire_chunks.trail();
            trail.last = chosen[source];
            trail.served = chosen
                .iter()
                .enumerate()
                .map(|(i, e)| (*e, reorder.served[i]))
                .filter(|(_, bytes)| *bytes > 0)
                .collect();
            trail.refetched = reorder.refetched;
            trail.peak_buffered = reorder.peak_buffered;
        };
        drive(reorder, count, fetch, on_chunk).map(move |item| {
            item.map_err(|err| {
                let text = err.to_string();
                *wire.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                io::Error::other(text)
            })
        })
    }

    /// One chunk from endpoint `index`: its bytes, or the error and the bytes that came.
    async fn fetch_chunk(
        &self,
        id: ArtifactId,
        index: usize,
        range: Range<u64>,
        digest: Digest,
        total: u64,
    ) -> Fetched {
        let endpoint = &self.endpoints[index];
        let _permit = endpoint.permits.acquire().await.expect("never closed");
        let want = range.end - range.start;
        let response =
            self.get_range(id, endpoint, range, digest, total).await.map_err(|err| (err, 0))?;
        let idle = self.settings.idle_timeout;
        let mut body = response.bytes_stream();
        let mut chunks = Vec::new();
        let mut got = 0u64;
        let base = || endpoint.base.to_string();
        while got < want {
            let err = match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    got += bytes.len() as u64;
                    chunks.push(bytes);
                    continue;
                }
                Ok(Some(Err(err))) => {
                    Error::Transfer { id, endpoint: base(), source: Arc::new(err) }
                }
                Ok(None) => Error::Protocol {
                    id,
                    endpoint: base(),
                    reason: format!("a range body ended after {got} of {want} bytes"),
                },
                Err(_) => Error::Timeout {
                    id,
                    endpoint: Some(base()),
                    what: TimeoutKind::Idle,
                    after: idle,
                },
            };
            warn!(endpoint = %endpoint.base, error = %err, "a source failed a chunk");
            return Err((err, got));
        }
        if got > want {
            let reason = format!("a range body of {got} bytes, {want} asked for");
            return Err((Error::Protocol { id, endpoint: base(), reason }, got));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests;
