//! `Downloader::download`: single flight, failover and retries, and one attempt (a GET whose
//! body streams into the cache's writer, verified before it is committed).

use std::{
    io,
    sync::{Arc, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use artifact_cache::{ArtifactId, Cache, Fill, ReadGuard, WriteGuard};
use futures_util::StreamExt;
use reqwest::{StatusCode, header};
use tarstream::{Digest, ReceiveOptions};
use tracing::{Instrument, debug, info, warn};

use super::{
    Downloaded, Downloader, Endpoint, Fetched, Inner,
    answer::{BoxStream, decode, header_number, status_error, stream_bound},
    commit::{CloseOnDrop, Failure, Gate, Job, receive_and_commit},
    flight::Role,
    progress::{Progress, ProgressEvent},
    resume::{Splice, Trail, Wire},
};
use crate::{
    Error, TimeoutKind,
    bridge::{self, PumpEnd},
    error::{error_brief, receive_error},
    protocol::{self, DIGEST_HEADER, ENTRIES_HEADER, FILES_HEADER, SIZE_HEADER},
};

impl Downloader {
    /// Makes `id` available in `cache`, downloading it if it is not there (see the type's
    /// docs for the single flight, failover, retry and verification rules).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if every endpoint answered 404. Otherwise, when every attempt
    /// failed, the error of the last one that was not a 404. [`Error::Timeout`] when the
    /// overall [`timeout`](super::DownloaderBuilder::timeout) passed. [`Error::Cache`] when
    /// the local cache failed. [`Error::is_remote`] tells the remote failures from the local.
    pub async fn download(&self, cache: &Cache, id: &ArtifactId) -> Result<Downloaded, Error> {
        let id = *id;
        let span = tracing::info_span!("download", id = %id);
        // Whatever ends this call (the deadline, or the caller dropping it) closes the gate:
        // no commit starts after that.
        let gate = Arc::new(Gate::default());
        let _closed_on_drop = CloseOnDrop(gate.clone());
        let work = self.download_shared(cache, id, &gate).instrument(span.clone());
        let result = match self.inner.settings.timeout {
            Some(after) => {
                let mut work = std::pin::pin!(work);
                match tokio::time::timeout(after, &mut work).await {
                    Ok(result) => result,
                    Err(_) if gate.close() => Err(Error::Timeout {
                        id,
                        endpoint: None,
                        what: TimeoutKind::Overall,
                        after,
                    }),
                    // A commit began before the deadline: the artifact is (being) committed,
                    // and that is this call's outcome.
                    Err(_) => work.await,
                }
            }
            None => work.await,
        };
        if let Err(err) = &result {
            span.in_scope(|| debug!(error = %err, "download failed"));
        }
        result
    }

    /// Joins or leads the in-process flight for (`cache`, `id`).
    async fn download_shared(
        &self,
        cache: &Cache,
        id: ArtifactId,
        gate: &Arc<Gate>,
    ) -> Result<Downloaded, Error> {
        loop {
            match self.inner.flights.join(cache.root().to_owned(), id) {
                Role::Leader(ticket) => {
                    let result = self.fill(cache, id, gate).await;
                    ticket.finish(result.as_ref().map(drop).map_err(Clone::clone));
                    return result;
                }
                Role::Follower(follower) => match follower.wait().await {
                    Some(Ok(())) => {
                        let reader = cache.clone();
                        match bridge::blocking(move || reader.get(&id)).await {
                            Ok(reader) => return Ok(Downloaded { reader, fetched: None }),
                            // Gone again already (evicted, removed): start over.
                            Err(err) if err.is_not_found() => continue,
                            Err(err) => return Err(cache_error(id, err)),
                        }
                    }
                    Some(Err(err)) => return Err(err),
                    // The leader was cancelled: take over.
                    None => continue,
                },
            }
        }
    }

    /// Returns the artifact if the cache has it, or becomes its writer and fetches it.
    async fn fill(
        &self,
        cache: &Cache,
        id: ArtifactId,
        gate: &Arc<Gate>,
    ) -> Result<Downloaded, Error> {
        let inner = &self.inner;
        // Taken before the writer's lock, so that waiting transfers hold no file descriptors.
        let _permit = inner.global.acquire().await.expect("never closed");
        match cache.create_or_get(&id, inner.settings.lock_wait).await {
            Ok(Fill::Ready(reader)) => Ok(Downloaded { reader, fetched: None }),
            Ok(Fill::Create(writer)) => inner.fetch(cache, id, writer, gate).await,
            Err(err) => Err(cache_error(id, err)),
        }
    }
}

pub(super) fn cache_error(id: ArtifactId, err: artifact_cache::Error) -> Error {
    Error::Cache { id, source: Arc::new(err) }
}

/// The outcome of one attempt.
pub(super) enum Attempt {
    Done(ReadGuard, Outcome),
    /// Failed; the writer comes back (emptied) for the next attempt.
    Failed(WriteGuard, Error, Outcome),
    /// Failed in a way that lost the writer (the commit failed): stop.
    Fatal(Error),
}

/// What one attempt (its first request and the range requests that resumed it) moved.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Body bytes received.
    pub(super) received: u64,
    /// Requests made and bytes per endpoint.
    pub(super) trail: Trail,
    /// The tree was checked against a digest its server announced.
    pub(super) verified: bool,
}

impl Inner {
    /// The failover and retry loop around [`Inner::attempt`].
    async fn fetch(
        &self,
        cache: &Cache,
        id: ArtifactId,
        mut writer: WriteGuard,
        gate: &Arc<Gate>,
    ) -> Result<Downloaded, Error> {
        let started = Instant::now();
        let settings = &self.settings;
        let mut eligible = vec![true; self.endpoints.len()];
        let mut absent = Vec::new();
        let mut last_error = None;
        let mut attempts = 0;
        // Requests allowed in all, range requests that resume a body included.
        let budget = settings.rounds.saturating_mul(self.endpoints.len() as u32);
        // Bytes received by attempts that failed (nothing of them is kept).
        let mut refetched = 0;
        // Set once a resumed attempt failed its checks: the next ones fetch whole.
        let mut whole_only = false;
        'rounds: for round in 0..settings.rounds {
            let mut retry_after = None::<Duration>;
            let mut pause = None;
            let last_round = round + 1 == settings.rounds;
            for (index, endpoint) in self.endpoints.iter().enumerate() {
                if !eligible[index] {
                    continue;
                }
                if attempts >= budget {
                    break 'rounds;
                }
                attempts += 1;
                let resume = (!whole_only).then(|| (self.http_only(&eligible), budget - attempts));
                let attempt =
                    self.attempt(cache, id, index, writer, attempts, gate, resume, refetched).await;
                let (error, outcome) = match attempt {
                    Attempt::Done(reader, outcome) => {
                        attempts += outcome.trail.requests.saturating_sub(1);
                        let elapsed = started.elapsed();
                        let last = &self.endpoints[outcome.trail.last];
                        let stream_bytes = outcome.received;
                        refetched += outcome.trail.refetched;
                        info!(endpoint = %last.base, attempts, bytes = stream_bytes, refetched, resumes = outcome.trail.resumes, ms = elapsed.as_millis() as u64, "downloaded");
                        self.report(
                            id,
                            last,
                            attempts,
                            stream_bytes,
                            None,
                            None,
                            ProgressEvent::Finished,
                        );
                        let sources = outcome
                            .trail
                            .served
                            .iter()
                            .map(|(i, bytes)| (self.endpoints[*i].base.clone(), *bytes))
                            .collect();
                        let fetched = Fetched {
                            endpoint: last.base.clone(),
                            attempts,
                            stream_bytes,
                            elapsed,
                            sources,
                            refetched,
                            resumes: outcome.trail.resumes,
                            verified: outcome.verified,
                        };
                        return Ok(Downloaded { reader, fetched: Some(fetched) });
                    }
                    Attempt::Failed(back, error, outcome) => {
                        writer = back;
                        (error, outcome)
                    }
                    Attempt::Fatal(error) => return Err(error),
                };
                attempts += outcome.trail.requests.saturating_sub(1);
                refetched += outcome.received + outcome.trail.refetched;
                let spliced = outcome.trail.spliced();
                let seed_miss = !settings.require_digest && error.is_seed_miss();
                if error.is_absent_here() || seed_miss {
                    eligible[index] = false;
                    absent.push(endpoint.base.to_string());
                } else {
                    if !error.is_remote() {
                        // A local failure (the local cache's disk): no endpoint can help.
                        eligible.fill(false);
                    } else if spliced && error.is_check_failure() {
                        // Bytes from several answers failed the checks: which one is at
                        // fault is unknown. Fetch whole, from any endpoint.
                        whole_only = true;
                    } else if error.is_retryable() {
                        if whole_only && matches!(error, Error::DigestMismatch { .. }) {
                            // The whole refetch after a resumed attempt failed too: give up.
                            last_error = Some(error);
                            break 'rounds;
                        }
                        retry_after = retry_after.max(error.retry_after());
                    } else {
                        eligible[index] = false;
                    }
                    warn!(endpoint = %endpoint.base, attempt = attempts, spliced, error = %error_brief(&error), "attempt failed");
                }
                let more = eligible.iter().any(|e| *e);
                let is_last_of_round = !eligible[index + 1..].iter().any(|e| *e);
                if more && !last_round && is_last_of_round {
                    pause = Some(self.pause(round, retry_after));
                }
                let event = ProgressEvent::Failed { error: error.clone(), retry_in: pause };
                self.report(id, endpoint, attempts, 0, None, None, event);
                if !error.is_absent_here() && !seed_miss {
                    last_error = Some(error);
                }
            }
            let Some(pause) = pause else { break };
            debug!(round, pause = ?pause, "all endpoints failed this round; backing off");
            tokio::time::sleep(pause).await;
        }
        // Dropping the writer aborts it: nothing of the failed attempts is kept.
        bridge::blocking(move || writer.abort()).await.map_err(|err| cache_error(id, err))?;
        Err(last_error.unwrap_or(Error::NotFound { id, endpoints: absent }))
    }

    /// The pause after `round`: exponential with equal jitter, at least the `Retry-After`.
    pub(super) fn pause(&self, round: u32, retry_after: Option<Duration>) -> Duration {
        let settings = &self.settings;
        let base = settings
            .backoff
            .saturating_mul(1u32.checked_shl(round.min(16)).unwrap_or(u32::MAX))
            .min(settings.max_backoff);
        let half = base / 2;
        let jitter = half.mul_f64(fastrand::f64());
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(settings.max_retry_after));
        (half + jitter).max(asked)
    }

    /// Sends a progress event, if anyone listens.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn report(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        attempt: u32,
        bytes: u64,
        total: Option<u64>,
        tree_bytes: Option<u64>,
        event: ProgressEvent,
    ) {
        if let Some(callback) = &self.settings.progress {
            callback(&Progress {
                id,
                endpoint: endpoint.base.clone(),
                attempt,
                bytes,
                total,
                tree_bytes,
                source_bytes: 0,
                refetched: 0,
                event,
            });
        }
    }

    /// One GET from endpoint `index`, streamed into `writer`'s directory. With `resume`
    /// (the endpoints that may serve ranges, and how many more requests may be made), a
    /// body cut short is continued by range requests ([`Splice`]).
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        cache: &Cache,
        id: ArtifactId,
        index: usize,
        writer: WriteGuard,
        attempt: u32,
        gate: &Arc<Gate>,
        resume: Option<(Vec<bool>, u32)>,
        refetched_before: u64,
    ) -> Attempt {
        let endpoint = &self.endpoints[index];
        #[cfg(feature = "store")]
        if endpoint.store.is_some() {
            return self.store_attempt(cache, id, index, writer, attempt, gate).await;
        }
        let mut outcome = Outcome::default();
        outcome.trail.requests = 1;
        outcome.trail.last = index;
        let permit = endpoint.permits.acquire().await.expect("never closed");
        let response = match self.get(id, endpoint).await {
            Ok(response) => response,
            Err(err) => return Attempt::Failed(writer, err, outcome),
        };
        let base = endpoint.base.to_string();
        let protocol_error =
            |reason: String| Error::Protocol { id, endpoint: base.clone(), reason };
        let expected = match response.headers().get(DIGEST_HEADER).map(|v| v.to_str()) {
            Some(Ok(text)) => match text.trim().parse::<Digest>() {
                Ok(digest) => Some(digest),
                Err(err) => {
                    let err = protocol_error(format!("bad {DIGEST_HEADER}: {err}"));
                    return Attempt::Failed(writer, err, outcome);
                }
            },
            _ if !self.settings.require_digest => None,
            _ => {
                let err = protocol_error(format!("no {DIGEST_HEADER} header"));
                return Attempt::Failed(writer, err, outcome);
            }
        };
        outcome.verified = expected.is_some();
        let zstd = match response.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
            None => false,
            Some(Ok(coding)) if coding.eq_ignore_ascii_case("identity") => false,
            Some(Ok(coding))
                if self.settings.zstd && coding.eq_ignore_ascii_case(protocol::ZSTD) =>
            {
                true
            }
            Some(other) => {
                // Debug-formatted below: control characters come out escaped.
                let coding = other.unwrap_or("(not text)");
                let err = protocol_error(format!("unexpected content encoding {coding:?}"));
                return Attempt::Failed(writer, err, outcome);
            }
        };
        let total = response.content_length();
        let tree_bytes = header_number(&response, SIZE_HEADER);
        // What the peer announced bounds what is taken from it.
        let announced = match total {
            Some(length) if !zstd => Some(length),
            _ => tree_bytes.map(|size| {
                stream_bound(
                    size,
                    header_number(&response, FILES_HEADER),
                    header_number(&response, ENTRIES_HEADER),
                )
            }),
        };
        let max_bytes =
            announced.map_or(self.settings.max_bytes, |a| a.min(self.settings.max_bytes));
        self.report(id, endpoint, attempt, 0, total, tree_bytes, ProgressEvent::Started);

        let wire = Arc::new(Wire::default());
        *wire.trail() = outcome.trail.clone();
        // Only an identity stream of known length, checked against a digest, can be resumed.
        let resumable = match (&resume, expected, total) {
            (Some((_, left)), Some(_), Some(total)) => !zstd && *left > 0 && total > 0,
            _ => false,
        };
        let (body, pump_idle): (BoxStream<'_>, Duration) = match (resume, expected, total) {
            (Some((eligible, budget)), Some(digest), Some(total)) if resumable => {
                let multi = self.settings.sources > 1
                    && total >= self.settings.multi_source_threshold
                    && eligible.iter().filter(|e| **e).count() > 1;
                if multi {
                    // Many sources: the first answer only told us the stream; ranges follow.
                    drop(response);
                    drop(permit);
                    wire.trail().many = true;
                    let plan = super::sources::Plan { digest, total, eligible, first: index };
                    let stream = self.many_sources(id, plan, wire.clone());
                    (Box::pin(stream), super::resume::PUMP_IDLE)
                } else {
                    let body = wire.body(self, response);
                    let splice = Splice {
                        inner: self,
                        id,
                        digest,
                        total,
                        offset: 0,
                        body: Some((body, permit)),
                        current: index,
                        eligible,
                        budget,
                        wire: wire.clone(),
                    };
                    (Box::pin(splice.into_stream()), super::resume::PUMP_IDLE)
                }
            }
            _ => {
                let body = wire.body(self, response);
                let wire = wire.clone();
                let counted = body.inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        wire.trail().count(index, chunk.len() as u64);
                    }
                });
                // The permit is held as long as the body streams.
                let counted = counted.map(move |chunk| {
                    let _held = &permit;
                    chunk
                });
                (Box::pin(counted), self.settings.idle_timeout)
            }
        };
        let mut received = 0u64;
        let wire_for_progress = wire.clone();
        let body = body.inspect(|chunk| {
            if let Ok(chunk) = chunk {
                received += chunk.len() as u64;
                let Some(callback) = &self.settings.progress else { return };
                let (last, source_bytes, refetched) = {
                    let trail = wire_for_progress.trail();
                    let served = trail.served.iter().find(|(e, _)| *e == trail.last);
                    (trail.last, served.map_or(0, |(_, b)| *b), trail.refetched)
                };
                callback(&Progress {
                    id,
                    endpoint: self.endpoints[last].base.clone(),
                    attempt,
                    bytes: received,
                    total,
                    tree_bytes,
                    source_bytes,
                    refetched: refetched_before + refetched,
                    event: ProgressEvent::Received,
                });
            }
        });
        let throttle = self.settings.throttle.clone();
        let body = body.then(move |chunk| super::pace(throttle.clone(), chunk));
        let options = ReceiveOptions::default().max_bytes(max_bytes).read_only(true);
        let cache = cache.clone();
        let gate = gate.clone();
        let (result, end) = bridge::receive(
            decode(body, zstd),
            pump_idle,
            |_| {},
            move |reader| receive_and_commit(&cache, id, writer, reader, &options, expected, &gate),
        )
        .await;
        outcome.received = received;
        outcome.trail = wire.trail().clone();
        match result {
            Ok(reader) => Attempt::Done(reader, outcome),
            Err(Job::Fatal(err)) => Attempt::Fatal(err),
            Err(Job::Cancelled) => Attempt::Fatal(Error::Timeout {
                id,
                endpoint: None,
                what: TimeoutKind::Overall,
                after: self.settings.timeout.unwrap_or_default(),
            }),
            Err(Job::Failed(writer, failure)) => {
                let last = &self.endpoints[outcome.trail.last];
                let err = self.explain(id, last, failure, end, &wire);
                Attempt::Failed(writer, err, outcome)
            }
        }
    }

    /// Sends the GET and turns anything but 200 into an error.
    async fn get(&self, id: ArtifactId, endpoint: &Endpoint) -> Result<reqwest::Response, Error> {
        let url = format!("{}{}", endpoint.base, protocol::artifact_path(&id));
        let mut request = self.http.get(&url);
        if self.settings.zstd {
            request = request.header(header::ACCEPT_ENCODING, protocol::ZSTD);
        }
        let response = self.send(id, endpoint, request).await?;
        if response.status() == StatusCode::OK {
            return Ok(response);
        }
        Err(status_error(id, endpoint, response, self.settings.idle_timeout).await)
    }

    /// The best explanation of a failed receive: the body's fate, else the stream's.
    fn explain(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        failure: Failure,
        end: PumpEnd<io::Error>,
        wire: &Wire,
    ) -> Error {
        let base = endpoint.base.to_string();
        let stream_error = match failure {
            Failure::Digest(actual, expected) => {
                return Error::DigestMismatch { id, endpoint: base, expected, actual };
            }
            // The reader side never fails, so an i/o error is the file system's: the local
            // disk's fault (full, say), or the stream's (an entry it cannot hold).
            Failure::Stream(err @ tarstream::Error::Io { .. }) => {
                return receive_error(id, &base, err);
            }
            Failure::Stream(err) => err,
        };
        if stream_error.is_truncated() || stream_error.is_io() {
            match end {
                PumpEnd::Idle => {
                    let after = self.settings.idle_timeout;
                    return Error::Timeout {
                        id,
                        endpoint: Some(base),
                        what: TimeoutKind::Idle,
                        after,
                    };
                }
                PumpEnd::Body(err) => {
                    if let Some(failure) =
                        wire.failure.lock().unwrap_or_else(PoisonError::into_inner).take()
                    {
                        return failure;
                    }
                    if wire.stalled.load(Ordering::Acquire) {
                        let after = self.settings.idle_timeout;
                        return Error::Timeout {
                            id,
                            endpoint: Some(base),
                            what: TimeoutKind::Idle,
                            after,
                        };
                    }
                    if wire.too_slow.load(Ordering::Acquire) {
                        let (_, after) = self.settings.low_speed.unwrap_or_default();
                        return Error::Timeout {
                            id,
                            endpoint: Some(base),
                            what: TimeoutKind::LowSpeed,
                            after,
                        };
                    }
                    if let Some(source) =
                        wire.transport.lock().unwrap_or_else(PoisonError::into_inner).take()
                    {
                        return Error::Transfer { id, endpoint: base, source: Arc::new(source) };
                    }
                    return Error::Protocol {
                        id,
                        endpoint: base,
                        reason: format!("corrupt zstd body: {err}"),
                    };
                }
                PumpEnd::Done | PumpEnd::JobGone => {}
            }
        }
        receive_error(id, &base, stream_error)
    }
}
