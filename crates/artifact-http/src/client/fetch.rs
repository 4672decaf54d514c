//! `Downloader::download`: single flight, failover and retries, and one attempt (a GET whose
//! body streams into the cache's writer, verified before it is committed).

use std::{
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use artifact_cache::{ArtifactId, Cache, Fill, ReadGuard, WriteGuard};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{StatusCode, header};
use tarstream::{Digest, ReceiveOptions};
use tracing::{Instrument, debug, info, warn};

use super::{
    Downloaded, Downloader, Endpoint, Fetched, Inner,
    flight::Role,
    progress::{Progress, ProgressEvent},
};
use crate::{
    Error, TimeoutKind,
    bridge::{self, PumpEnd},
    error::{error_brief, escape_remote, receive_error},
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

/// Decides, once per download, between committing a received tree and abandoning the
/// download (its deadline passed, or its caller dropped it): the receive job may commit only
/// while the gate is open, and closing it fails once a commit has begun. So a download that
/// reports a timeout never leaves a committed artifact behind, and one whose commit won the
/// race reports success.
#[derive(Debug, Default)]
pub(super) struct Gate(AtomicU8);

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const CLOSED: u8 = 2;

impl Gate {
    /// Claims the right to commit; false once the gate is closed.
    fn begin_commit(&self) -> bool {
        self.0.compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Closes the gate; false if a commit has already begun (it will complete).
    fn close(&self) -> bool {
        match self.0.compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == CLOSED,
        }
    }
}

/// Closes its gate when dropped.
struct CloseOnDrop(Arc<Gate>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The outcome of one attempt.
enum Attempt {
    Done(ReadGuard, u64),
    /// Failed; the writer comes back (emptied) for the next attempt.
    Failed(WriteGuard, Error),
    /// Failed in a way that lost the writer (the commit failed): stop.
    Fatal(Error),
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
        for round in 0..settings.rounds {
            let mut retry_after = None::<Duration>;
            let mut pause = None;
            let last_round = round + 1 == settings.rounds;
            for (index, endpoint) in self.endpoints.iter().enumerate() {
                if !eligible[index] {
                    continue;
                }
                attempts += 1;
                let error = match self.attempt(cache, id, endpoint, writer, attempts, gate).await {
                    Attempt::Done(reader, stream_bytes) => {
                        let elapsed = started.elapsed();
                        info!(endpoint = %endpoint.base, attempts, bytes = stream_bytes, ms = elapsed.as_millis() as u64, "downloaded");
                        self.report(
                            id,
                            endpoint,
                            attempts,
                            stream_bytes,
                            None,
                            None,
                            ProgressEvent::Finished,
                        );
                        let fetched = Fetched {
                            endpoint: endpoint.base.clone(),
                            attempts,
                            stream_bytes,
                            elapsed,
                        };
                        return Ok(Downloaded { reader, fetched: Some(fetched) });
                    }
                    Attempt::Failed(back, error) => {
                        writer = back;
                        error
                    }
                    Attempt::Fatal(error) => return Err(error),
                };
                if error.is_absent_here() {
                    eligible[index] = false;
                    absent.push(endpoint.base.to_string());
                } else {
                    if !error.is_remote() {
                        // A local failure (the local cache's disk): no endpoint can help.
                        eligible.fill(false);
                    } else if error.is_retryable() {
                        retry_after = retry_after.max(error.retry_after());
                    } else {
                        eligible[index] = false;
                    }
                    warn!(endpoint = %endpoint.base, attempt = attempts, error = %error_brief(&error), "attempt failed");
                }
                let more = eligible.iter().any(|e| *e);
                let is_last_of_round = !eligible[index + 1..].iter().any(|e| *e);
                if more && !last_round && is_last_of_round {
                    pause = Some(self.pause(round, retry_after));
                }
                let event = ProgressEvent::Failed { error: error.clone(), retry_in: pause };
                self.report(id, endpoint, attempts, 0, None, None, event);
                if !error.is_absent_here() {
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
                event,
            });
        }
    }

    /// One GET from `endpoint`, streamed into `writer`'s directory.
    async fn attempt(
        &self,
        cache: &Cache,
        id: ArtifactId,
        endpoint: &Endpoint,
        writer: WriteGuard,
        attempt: u32,
        gate: &Arc<Gate>,
    ) -> Attempt {
        let _permit = endpoint.permits.acquire().await.expect("never closed");
        let response = match self.get(id, endpoint).await {
            Ok(response) => response,
            Err(err) => return Attempt::Failed(writer, err),
        };
        let base = endpoint.base.to_string();
        let protocol_error =
            |reason: String| Error::Protocol { id, endpoint: base.clone(), reason };
        let expected = match response.headers().get(DIGEST_HEADER).map(|v| v.to_str()) {
            Some(Ok(text)) => match text.trim().parse::<Digest>() {
                Ok(digest) => digest,
                Err(err) => {
                    return Attempt::Failed(
                        writer,
                        protocol_error(format!("bad {DIGEST_HEADER}: {err}")),
                    );
                }
            },
            _ => {
                return Attempt::Failed(
                    writer,
                    protocol_error(format!("no {DIGEST_HEADER} header")),
                );
            }
        };
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
                return Attempt::Failed(
                    writer,
                    protocol_error(format!("unexpected content encoding {coding:?}")),
                );
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

        // Transport errors are kept aside: the job only sees the stream end.
        let transport = Arc::new(Mutex::new(None::<reqwest::Error>));
        let mut received = 0u64;
        let wire = {
            let transport = transport.clone();
            response.bytes_stream().map(move |chunk| {
                chunk.map_err(|err| {
                    *transport.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                    io::Error::new(io::ErrorKind::ConnectionAborted, "the response body failed")
                })
            })
        };
        let too_slow = Arc::new(AtomicBool::new(false));
        let wire = match self.settings.low_speed {
            Some((rate, window)) => {
                Box::pin(low_speed(wire, rate, window, too_slow.clone())) as BoxStream<'_>
            }
            None => Box::pin(wire),
        };
        let wire = wire.inspect(|chunk| {
            if let Ok(chunk) = chunk {
                received += chunk.len() as u64;
                self.report(
                    id,
                    endpoint,
                    attempt,
                    received,
                    total,
                    tree_bytes,
                    ProgressEvent::Received,
                );
            }
        });
        let throttle = self.settings.throttle.clone();
        let wire = wire.then(move |chunk| super::pace(throttle.clone(), chunk));
        let options = ReceiveOptions::default().max_bytes(max_bytes).read_only(true);
        let cache = cache.clone();
        let gate = gate.clone();
        let (outcome, end) = bridge::receive(
            decode(wire, zstd),
            self.settings.idle_timeout,
            |_| {},
            move |reader| receive_and_commit(&cache, id, writer, reader, &options, expected, &gate),
        )
        .await;
        match outcome {
            Ok(reader) => Attempt::Done(reader, received),
            Err(Job::Fatal(err)) => Attempt::Fatal(err),
            Err(Job::Cancelled) => Attempt::Fatal(Error::Timeout {
                id,
                endpoint: None,
                what: TimeoutKind::Overall,
                after: self.settings.timeout.unwrap_or_default(),
            }),
            Err(Job::Failed(writer, failure)) => Attempt::Failed(
                writer,
                self.explain(id, endpoint, failure, end, &transport, &too_slow),
            ),
        }
    }

    /// Sends the GET and turns anything but 200 into an error.
    async fn get(&self, id: ArtifactId, endpoint: &Endpoint) -> Result<reqwest::Response, Error> {
        let url = format!("{}{}", endpoint.base, protocol::artifact_path(&id));
        let mut request = self.http.get(&url);
        if let Some(token) = &self.settings.token {
            request = request.bearer_auth(token);
        }
        if self.settings.zstd {
            request = request.header(header::ACCEPT_ENCODING, protocol::ZSTD);
        }
        let idle = self.settings.idle_timeout;
        let response = match tokio::time::timeout(idle, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(request_error(id, endpoint, err)),
            Err(_) => {
                let endpoint = Some(endpoint.base.to_string());
                return Err(Error::Timeout { id, endpoint, what: TimeoutKind::Idle, after: idle });
            }
        };
        if response.status() == StatusCode::OK {
            return Ok(response);
        }
        Err(status_error(id, endpoint, response, idle).await)
    }

    /// The best explanation of a failed receive: the body's fate, else the stream's.
    fn explain(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        failure: Failure,
        end: PumpEnd<io::Error>,
        transport: &Mutex<Option<reqwest::Error>>,
        too_slow: &AtomicBool,
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
                    if too_slow.load(Ordering::Acquire) {
                        let (_, after) = self.settings.low_speed.unwrap_or_default();
                        return Error::Timeout {
                            id,
                            endpoint: Some(base),
                            what: TimeoutKind::LowSpeed,
                            after,
                        };
                    }
                    if let Some(source) =
                        transport.lock().unwrap_or_else(PoisonError::into_inner).take()
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

/// Why a receive job failed without losing the writer.
enum Failure {
    Stream(tarstream::Error),
    /// (received, announced)
    Digest(Digest, Digest),
}

enum Job {
    Failed(WriteGuard, Failure),
    Fatal(Error),
    /// The tree was whole, but the download was over (its deadline passed, or it was dropped)
    /// before the commit could begin: the writer was aborted.
    Cancelled,
}

/// The blocking job of an attempt: receive, verify, commit, and take a read lock; on failure
/// empty the writer's directory for the next attempt.
fn receive_and_commit(
    cache: &Cache,
    id: ArtifactId,
    writer: WriteGuard,
    reader: &mut bridge::ChannelReader,
    options: &ReceiveOptions,
    expected: Digest,
    gate: &Gate,
) -> Result<ReadGuard, Job> {
    let failure = match tarstream::receive_with(writer.path(), reader, options) {
        Ok(summary) if summary.digest == expected => {
            if !gate.begin_commit() {
                writer.abort().map_err(|err| Job::Fatal(cache_error(id, err)))?;
                return Err(Job::Cancelled);
            }
            writer.commit_with(&summary).map_err(|err| Job::Fatal(cache_error(id, err)))?;
            return cache.get(&id).map_err(|err| Job::Fatal(cache_error(id, err)));
        }
        Ok(summary) => Failure::Digest(summary.digest, expected),
        Err(err) => Failure::Stream(err),
    };
    if let Err(err) = empty_dir(writer.path()) {
        let err = artifact_cache::Error::Io { path: writer.path().to_owned(), source: err };
        return Err(Job::Fatal(cache_error(id, err)));
    }
    Err(Job::Failed(writer, failure))
}

/// Deletes everything inside `dir` (not following symlinks).
fn empty_dir(dir: &std::path::Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

type BoxStream<'a> = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>>;

/// A decimal header of `response`, if present and a number.
fn header_number(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The most bytes of tar stream a tree can take, from what its server announced: `size`
/// bytes of file content, and `entries` entries (files, directories, symlinks), or `files`
/// files and up to [`UNANNOUNCED_ENTRIES`] others when the server does not say.
pub(crate) fn stream_bound(size: u64, files: Option<u64>, entries: Option<u64>) -> u64 {
    let entries = entries.unwrap_or_else(|| files.unwrap_or(0).saturating_add(UNANNOUNCED_ENTRIES));
    size.saturating_add(entries.saturating_mul(ENTRY_OVERHEAD)).saturating_add(END_OVERHEAD)
}

/// The most bytes an entry adds to a stream beyond its content: its header block, a PAX
/// header block and records carrying a path and a link target of up to 4 KiB each, and its
/// data's padding.
const ENTRY_OVERHEAD: u64 = 10 * 1024;
/// The end-of-archive marker, with room to spare.
const END_OVERHEAD: u64 = 2 * 1024;
/// Directories and symlinks assumed when a server announces no entry count.
const UNANNOUNCED_ENTRIES: u64 = 1 << 16;

/// `wire`, failing (and setting `too_slow`) once less than `rate` bytes per second arrived over
/// a whole `window`, like curl's `--speed-limit`/`--speed-time`.
fn low_speed<'a>(
    wire: impl Stream<Item = io::Result<Bytes>> + Send + 'a,
    rate: u64,
    window: Duration,
    too_slow: Arc<AtomicBool>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'a {
    let wanted = (rate as f64 * window.as_secs_f64()) as u64;
    let window_end = tokio::time::Instant::now() + window;
    let state = (Box::pin(wire), window_end, 0u64, false);
    futures_util::stream::unfold(state, move |(mut wire, mut window_end, mut bytes, done)| {
        let too_slow = too_slow.clone();
        async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    next = wire.next() => {
                        let item = next?;
                        if let Ok(chunk) = &item {
                            bytes += chunk.len() as u64;
                        }
                        return Some((item, (wire, window_end, bytes, false)));
                    }
                    () = tokio::time::sleep_until(window_end) => {
                        if bytes < wanted {
                            too_slow.store(true, Ordering::Release);
                            let err = io::Error::new(io::ErrorKind::TimedOut, "below the low-speed limit");
                            return Some((Err(err), (wire, window_end, bytes, true)));
                        }
                        bytes = 0;
                        window_end += window;
                    }
                }
            }
        }
    })
}

/// The response body, zstd-decoded if the server compressed it.
fn decode<'a>(
    wire: impl Stream<Item = io::Result<Bytes>> + Send + 'a,
    zstd: bool,
) -> std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>> {
    #[cfg(feature = "zstd")]
    if zstd {
        return Box::pin(crate::compress::zstd_decode(wire));
    }
    debug_assert!(!zstd, "zstd is only accepted when asked for");
    Box::pin(wire)
}

/// A `send` failure: connect errors apart from the rest.
pub(super) fn request_error(id: ArtifactId, endpoint: &Endpoint, err: reqwest::Error) -> Error {
    let endpoint = endpoint.base.to_string();
    if err.is_connect() && is_tls_failure(&err) {
        Error::TlsHandshake { endpoint, source: Arc::new(err) }
    } else if err.is_connect() {
        Error::Connect { endpoint, source: Arc::new(err) }
    } else {
        Error::Transfer { id, endpoint, source: Arc::new(err) }
    }
}

/// Whether the TLS library refused the connection (an untrusted certificate, say), as opposed
/// to the network. The reason travels inside an `io::Error` somewhere in the chain; only a TLS
/// build can tell.
fn is_tls_failure(err: &reqwest::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        // An `io::Error` hides what it wraps from `source()`: look inside, through any nesting.
        fn is_tls(mut err: &(dyn std::error::Error + 'static)) -> bool {
            loop {
                if err.is::<tokio_rustls::rustls::Error>() {
                    return true;
                }
                match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                    Some(inner) => err = inner,
                    None => return false,
                }
            }
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(err) = source {
            if is_tls(err) {
                return true;
            }
            source = err.source();
        }
    }
    let _ = err;
    false
}

/// The most of an error body read for its message.
const ERROR_BODY_BYTES: usize = 4096;
/// The longest an error body is read for its message (or the idle timeout, if shorter).
const ERROR_BODY_TIME: Duration = Duration::from_secs(5);

/// An [`Error::Status`] from a non-success response, with the server's message (at most
/// 4 KiB of it, read within 5 s or `idle` if shorter, control characters escaped); an
/// [`Error::Redirect`] for a 3xx.
pub(super) async fn status_error(
    id: ArtifactId,
    endpoint: &Endpoint,
    response: reqwest::Response,
    idle: Duration,
) -> Error {
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        let location = response.headers().get(header::LOCATION);
        let location = location.map(|v| escape_remote(&String::from_utf8_lossy(v.as_bytes())));
        let endpoint = endpoint.base.to_string();
        return Error::Redirect { id, endpoint, status, location: location.unwrap_or_default() };
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(protocol::parse_retry_after);
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_BYTES {
                break;
            }
        }
    };
    // A body that drips (or never ends) must not hold the attempt: what came in time will do.
    let _ = tokio::time::timeout(idle.min(ERROR_BODY_TIME), read).await;
    body.truncate(ERROR_BODY_BYTES);
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim().to_owned()
        });
    let message = escape_remote(&message);
    Error::Status { id, endpoint: endpoint.base.to_string(), status, message, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_side_win() {
        let gate = Gate::default();
        assert!(gate.begin_commit());
        assert!(!gate.close(), "a commit that began wins over the deadline");
        let gate = Gate::default();
        assert!(gate.close() && gate.close());
        assert!(!gate.begin_commit(), "no commit begins after the deadline");
    }

    #[test]
    fn an_honest_stream_fits_the_bound_its_headers_give() {
        let dir = tempfile::tempdir().unwrap();
        // Long paths and link targets (PAX headers), an empty file, odd sizes, deep dirs.
        let deep = (0..40).map(|i| format!("{i:0>90}")).collect::<Vec<_>>().join("/");
        std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
        std::fs::write(dir.path().join(&deep).join("f"), vec![1u8; 513]).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::os::unix::fs::symlink(format!("{deep}/f"), dir.path().join("link")).unwrap();
        let mut stream = Vec::new();
        let summary = tarstream::send(dir.path(), &mut stream).unwrap();
        let bound = stream_bound(summary.file_bytes, Some(summary.files), Some(summary.entries()));
        assert!(stream.len() as u64 <= bound, "{} > {bound}", stream.len());
        // Without an entry count, room for directories and symlinks is assumed.
        assert!(stream.len() as u64 <= stream_bound(summary.file_bytes, Some(summary.files), None));
        // A 16-byte tree of one file cannot carry a 100 GiB entry.
        assert!(stream_bound(16, Some(1), Some(1)) < 1 << 20);
        assert_eq!(stream_bound(u64::MAX, None, None), u64::MAX);
    }
}
