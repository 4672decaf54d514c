//! The artifact endpoints: `GET`/`HEAD`, `PUT` and `DELETE /artifact?id=ID`.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Condvar, Mutex, PoisonError},
};

use artifact_cache::{ArtifactId, Fill, Metadata, Quick, QuickStat};
use axum::{
    Extension, Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt};
use tarstream::{Digest, ReceiveOptions};

use super::{
    Access, App, Peer, Reject, metrics::Metrics, observe::InMemory, parse_id, peer_ip, small::Kept,
};
use crate::{
    bridge::{self, Part, PumpEnd},
    protocol::{
        self, DIGEST_HEADER, ENTRIES_HEADER, FILES_HEADER, RangeAnswer, SIZE_HEADER, TAR_MEDIA_TYPE,
    },
};

/// `GET` streams the artifact as tar while holding its read lock; `HEAD` answers the same
/// headers without a body. A small artifact's stream is kept in memory after its first `GET`
/// and served from there without the read lock, as long as the lock file's generation shows the
/// artifact committed as it was kept.
pub(super) async fn get(State(app): State<App>, request: Request) -> Result<Response, Reject> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer);
    match begin_get(&app, request, peer)? {
        Begun::Answered(response) => Ok(response),
        Begun::Pending(pending) => pending.finish(app).await,
    }
}

/// How far [`begin_get`] got.
pub(super) enum Begun {
    /// The whole answer: from memory, or a miss.
    Answered(Response),
    /// What needs waiting for: the blocking pool (the read lock, the index, the files) or the
    /// store. Boxed, so that the future of a request answered at once stays small (a future
    /// is moved through every layer, and this one's state is kilobytes).
    Pending(Box<PendingGet>),
}

/// A `GET` or `HEAD` that [`begin_get`] could not answer at once.
pub(super) struct PendingGet {
    parts: axum::http::request::Parts,
    peer: Peer,
    id: ArtifactId,
    head: bool,
    /// The read lock taken on this thread, a miss, or `None`: the blocking pool's `get`
    /// decides.
    quick: Option<Result<artifact_cache::ReadGuard, artifact_cache::Error>>,
}

/// The part of `GET` and `HEAD` that needs no waiting, on the runtime's thread: the id, the
/// token, and the answers from memory and for a miss. `peer`: the client's address, if known.
pub(super) fn begin_get(
    app: &App,
    request: Request,
    peer: Option<SocketAddr>,
) -> Result<Begun, Reject> {
    // The request's parts are read in place: the extractors of the method, the query and the
    // headers would each copy theirs (a header map is two allocations), on every request.
    let (parts, _) = request.into_parts();
    let headers = &parts.headers;
    let peer: Peer = peer.map(|peer| Extension(ConnectInfo(peer)));
    let id = parse_id(parts.uri.query())?;
    app.authorize(headers, Access::Read)?;
    let head = parts.method == Method::HEAD;
    // On this worker thread. A small artifact kept in memory needs none of its files, so no
    // read lock: one `pread` of its lock file's generation (none while another request holds
    // the lock), one path lookup for an id this process has not seen. Any other takes the
    // lock here: no system call when it is shared already, two on the open lock file
    // otherwise.
    let quick = match app.small.as_ref().map(|small| (small, app.cache.stat_quick(&id))) {
        Some((small, QuickStat::Committed(meta))) => match small.get(&meta) {
            Some(kept) => {
                Metrics::add(&app.metrics.hits, 1);
                let response = respond(app, headers, peer, head, &meta, Opened::Kept(kept))?;
                return Ok(Begun::Answered(response));
            }
            None => lock_quick(app, id),
        },
        Some((_, QuickStat::Absent)) => Some(Err(artifact_cache::Error::NotFound { id })),
        // `Slow`, or whatever a later cache may answer: the blocking pool's `get` decides.
        Some(_) => None,
        None => lock_quick(app, id),
    };
    let quick = match quick {
        // A miss is answered here, unless the store may have the artifact.
        Some(Err(err)) if !from_store(app, &err) => {
            if err.is_not_found() {
                Metrics::add(&app.metrics.misses, 1);
                forget(app, &id);
            }
            return Err(app.reject_cache(id, err));
        }
        quick => quick,
    };
    Ok(Begun::Pending(Box::new(PendingGet { parts, peer, id, head, quick })))
}

impl PendingGet {
    /// The rest of the `GET` or `HEAD`: the read lock and the files on the blocking pool, or
    /// the store.
    pub(super) async fn finish(self, app: App) -> Result<Response, Reject> {
        let PendingGet { parts, peer, id, head, quick } = self;
        let headers = &parts.headers;
        let found = match quick {
            Some(Err(err)) => Err(Some(err)),
            quick => {
                let (app, checked) = (app.clone(), quick.is_some());
                bridge::blocking(move || {
                    let guard = match quick {
                        Some(Ok(guard)) => guard,
                        _ => app.cache.get(&id).map_err(Some)?,
                    };
                    // The table may remember an artifact whose files were deleted behind the
                    // cache's back (the root removed, say): promise nothing that cannot be
                    // streamed.
                    match std::fs::symlink_metadata(guard.path()) {
                        Ok(meta) if meta.is_dir() => Ok(open(&app, guard, checked)),
                        _ => Err::<_, Option<artifact_cache::Error>>(None),
                    }
                })
                .await
            }
        };
        let (meta, opened) = match found {
            Ok(found) => found,
            // A miss, or another request already filling it from the store: wait for that one
            // (the cache's single flight) rather than answering 409.
            #[cfg(feature = "store")]
            Err(Some(err)) if from_store(&app, &err) => {
                let store = app.config.store.as_ref().expect("checked above");
                let guard = super::store::read_through(&app, store, id).await?;
                let app = app.clone();
                bridge::blocking(move || open(&app, guard, false)).await
            }
            Err(Some(err)) => {
                if err.is_not_found() {
                    Metrics::add(&app.metrics.misses, 1);
                    forget(&app, &id);
                }
                return Err(app.reject_cache(id, err));
            }
            Err(None) => {
                Metrics::add(&app.metrics.misses, 1);
                forget(&app, &id);
                tracing::warn!("the artifact's files are gone from the cache root");
                return Err(Reject::NotFound(id));
            }
        };
        Metrics::add(&app.metrics.hits, 1);
        respond(&app, headers, peer, head, &meta, opened)
    }
}

/// Whether the cache's answer `err` sends a `GET` to the store: a miss, or another request
/// filling the artifact (from there, most likely).
fn from_store(app: &App, err: &artifact_cache::Error) -> bool {
    #[cfg(feature = "store")]
    {
        app.config.store.is_some()
            && (err.is_not_found() || matches!(err, artifact_cache::Error::WriteLocked { .. }))
    }
    #[cfg(not(feature = "store"))]
    {
        let _ = (app, err);
        false
    }
}

/// The read lock on `id` if [`Cache::get_quick`](artifact_cache::Cache::get_quick) can take it
/// on this thread; `None` where the blocking pool's `get` must decide.
fn lock_quick(
    app: &App,
    id: ArtifactId,
) -> Option<Result<artifact_cache::ReadGuard, artifact_cache::Error>> {
    match app.cache.get_quick(&id) {
        Quick::Ready(guard) => Some(Ok(guard)),
        Quick::Absent => Some(Err(artifact_cache::Error::NotFound { id })),
        _ => None,
    }
}

/// A committed artifact, ready to be answered for.
enum Opened {
    /// Its whole stream, kept in memory, and the headers of the whole answer.
    Kept(Kept),
    /// Its files, under the read lock, with the entry index when it could be had.
    Files(Box<(artifact_cache::ReadGuard, Option<tarstream::Index>)>),
}

/// Loads the artifact's index and, for a small one, takes its stream from memory (unless
/// `checked` says that was tried already) or renders and keeps it. On the blocking pool.
fn open(app: &App, guard: artifact_cache::ReadGuard, checked: bool) -> (Metadata, Opened) {
    let meta = guard.metadata().clone();
    let Some(small) = &app.small else {
        let index = load_index(app, &guard);
        return (meta, Opened::Files(Box::new((guard, index))));
    };
    if !checked && let Some(kept) = small.get(&meta) {
        return (meta, Opened::Kept(kept));
    }
    let index = load_index(app, &guard);
    if let Some(stream) = index.as_ref().and_then(|index| small.render(&guard, index)) {
        let headers = Arc::new(whole_answer_headers(&meta, Some(stream.len() as u64)));
        let kept = Kept { stream, headers };
        small.insert(&meta, kept.clone());
        return (meta, Opened::Kept(kept));
    }
    (meta, Opened::Files(Box::new((guard, index))))
}

/// Drops the kept stream of an artifact found absent.
fn forget(app: &App, id: &ArtifactId) {
    if let Some(small) = &app.small {
        small.forget(id);
    }
}

/// The answer to `GET` or `HEAD` of the artifact that `meta` describes: headers, ranges,
/// compression, and the body from memory or from its files (under a stream slot).
fn respond(
    app: &App,
    headers: &HeaderMap,
    peer: Peer,
    head: bool,
    meta: &Metadata,
    opened: Opened,
) -> Result<Response, Reject> {
    let (mut response_headers, len) = match &opened {
        Opened::Kept(kept) => (HeaderMap::clone(&kept.headers), Some(kept.stream.len() as u64)),
        Opened::Files(files) => {
            let len = files.1.as_ref().map(tarstream::Index::stream_len);
            (whole_answer_headers(meta, len), len)
        }
    };
    // A client that holds the stream asks whether it is still the one: then no body, whatever
    // the range or encoding asked (the tag is that of the identity stream, which is what it
    // holds; an answer without a tag, for an artifact too large to index, is never matched).
    if let Some(tag) = response_headers.get(header::ETAG)
        && let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
        && tag.to_str().is_ok_and(|tag| protocol::if_none_match(value, tag))
    {
        return Ok(not_modified(response_headers));
    }
    let digest = meta.digest;
    // A range is of the identity stream: asking for one turns compression off.
    let ranged = len.map(|len| (wanted_range(headers, &digest, len), len));
    let part = match &ranged {
        Some((RangeAnswer::Part(range), _)) => Some(range.clone()),
        _ => None,
    };
    let zstd = negotiate(headers, &mut response_headers, part.is_none());
    if zstd {
        // The tag and the length are those of the identity stream.
        response_headers.remove(header::ETAG);
        response_headers.remove(header::CONTENT_LENGTH);
    } else if let Some(range) = &part {
        response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.end - range.start));
    }
    let status = match &ranged {
        Some((RangeAnswer::Unsatisfiable, len)) => {
            response_headers
                .insert(header::CONTENT_RANGE, header_value(&protocol::unsatisfied_range(*len)));
            response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return Ok(answer(StatusCode::RANGE_NOT_SATISFIABLE, response_headers, Body::empty()));
        }
        Some((RangeAnswer::Part(range), len)) => {
            let value = protocol::content_range(range, *len);
            response_headers.insert(header::CONTENT_RANGE, header_value(&value));
            StatusCode::PARTIAL_CONTENT
        }
        _ => StatusCode::OK,
    };
    if head {
        // The read guard, if any, drops here, on the runtime: an unlock, no file-system walk.
        // The body is empty; its length, where known, is in `Content-Length` as for `GET`.
        drop(opened);
        let nothing = futures_util::stream::empty::<io::Result<Bytes>>();
        return Ok(answer(status, response_headers, Body::from_stream(nothing)));
    }
    let body = match opened {
        // From memory: no lock, no file, no stream slot (the bytes are shared, and a slow
        // client holds at most one small stream per connection).
        Opened::Kept(Kept { stream, .. }) => {
            let bytes = match part {
                Some(range) => stream.slice(range.start as usize..range.end as usize),
                None => stream,
            };
            if zstd {
                encode(app, true, futures_util::stream::once(async { Ok(bytes) }))
            } else {
                let mut response = answer(status, response_headers, Body::from(bytes));
                response.extensions_mut().insert(InMemory);
                return Ok(response);
            }
        }
        Opened::Files(files) => {
            let (guard, index) = *files;
            // After the lookup, so that an absent id is 404 even at the stream limit; a
            // refused stream drops its read guard here (an unlock).
            let slot = app.stream_slot(peer_ip(&peer))?;
            let dir = guard.path().to_owned();
            let what = match (part, index) {
                (Some(range), Some(index)) => Part::Range(index, range),
                _ => Part::Whole,
            };
            let (hold, idle) = ((guard, slot), app.config.idle_timeout);
            let stream = bridge::send_part(dir, what, hold, idle, bridge::SendBuffers::shared());
            encode(app, zstd, stream)
        }
    };
    Ok(answer(status, response_headers, body))
}

/// A response of `status` with `headers` and `body`. The map is moved in whole: the tuple
/// `(status, headers, body)` would insert its headers one by one into an empty map, hashing
/// each name again.
fn answer(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The most entries an artifact may have for the server to load its index for a request
/// (about 100 bytes each in memory): a larger one is served whole, without a length or
/// ranges.
const MAX_INDEXED_ENTRIES: u64 = 1 << 20;

/// Bounds the entry indexes being read at once: reading one takes memory in proportion to
/// the artifact's entries (1 MB for 10,000 files) and CPU (every record is checked against the
/// tree digest), so when many requests arrive together they read their indexes a few at a
/// time, one per core, and the server's memory does not grow by an index per stream starting.
pub(super) struct IndexLoads {
    busy: Mutex<usize>,
    done: Condvar,
    most: usize,
}

impl IndexLoads {
    pub(super) fn new() -> IndexLoads {
        let most = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        IndexLoads { busy: Mutex::new(0), done: Condvar::new(), most }
    }

    /// Runs `load` once fewer than `most` others run; on the blocking pool.
    fn run<T>(&self, load: impl FnOnce() -> T) -> T {
        /// Gives the turn back, also if `load` panics.
        struct Turn<'a>(&'a IndexLoads);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
                self.0.done.notify_one();
            }
        }
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= self.most {
            busy = self.done.wait(busy).unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        drop(busy);
        let _turn = Turn(self);
        load()
    }
}

/// The artifact's entry index, for `Content-Length` and ranges; `None` (served as a plain
/// stream) when it is too large to load per request or cannot be had.
fn load_index(app: &App, guard: &artifact_cache::ReadGuard) -> Option<tarstream::Index> {
    let meta = guard.metadata();
    if meta.files + meta.dirs + meta.symlinks > MAX_INDEXED_ENTRIES {
        return None;
    }
    match app.index_loads.run(|| guard.index()) {
        Ok(index) => Some(index),
        Err(err) => {
            tracing::warn!(error = %crate::error::error_chain(&err), "no entry index: serving without a length or ranges");
            None
        }
    }
}

/// `304 Not Modified` for the whole answer whose headers are `whole`: its tag, `Vary`, the
/// artifact's own headers and the length of the stream that a 200 would send (as HTTP allows:
/// a length of 0, which axum would add to a `HEAD` otherwise, would not be that length); no
/// body.
fn not_modified(mut whole: HeaderMap) -> Response {
    for name in [header::CONTENT_TYPE, header::ACCEPT_RANGES] {
        whole.remove(name);
    }
    answer(StatusCode::NOT_MODIFIED, whole, Body::empty())
}

/// What the request's `Range` (and `If-Range`) ask of a stream of `len` bytes.
fn wanted_range(request: &HeaderMap, digest: &Digest, len: u64) -> RangeAnswer {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        let matches = if_range
            .to_str()
            .is_ok_and(|value| protocol::if_range_matches(value, &protocol::etag(digest)));
        if !matches {
            return RangeAnswer::Whole;
        }
    }
    protocol::parse_range(range, len)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("ranges and tags are ASCII")
}

/// Adds the headers of content negotiation to `response` (`Vary`, and `Content-Encoding` when
/// compression is `allowed` — not for a range —, the client accepts zstd and the server has the
/// `zstd` feature); true when the body is to be compressed.
fn negotiate(request: &HeaderMap, response: &mut HeaderMap, allowed: bool) -> bool {
    #[cfg(feature = "zstd")]
    {
        use crate::protocol::{ZSTD, accepts_encoding};
        response.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        let wanted = allowed
            && request
                .get(header::ACCEPT_ENCODING)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| accepts_encoding(value, ZSTD));
        if wanted {
            response.insert(header::CONTENT_ENCODING, HeaderValue::from_static(ZSTD));
        }
        wanted
    }
    #[cfg(not(feature = "zstd"))]
    {
        let _ = (request, response, allowed);
        false
    }
}

/// The body, zstd-compressed when [`negotiate`] said so.
fn encode(
    app: &App,
    zstd: bool,
    stream: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) -> Body {
    #[cfg(feature = "zstd")]
    if zstd {
        return Body::from_stream(crate::compress::zstd_encode(stream, app.config.zstd_level));
    }
    #[cfg(not(feature = "zstd"))]
    let _ = (app, zstd);
    Body::from_stream(stream)
}

/// The headers of a whole, identity-encoded answer (`200`) for the artifact that `meta`
/// describes, whose stream is `len` bytes long when that is known: the artifact's headers, the
/// media type, `Vary` (with zstd) and, with the length, `Accept-Ranges`, `ETag` and
/// `Content-Length`.
fn whole_answer_headers(meta: &Metadata, len: Option<u64>) -> HeaderMap {
    let mut headers = artifact_headers(meta);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TAR_MEDIA_TYPE));
    // Here already, as `negotiate` sets it: a kept stream's headers are cloned for each answer,
    // and a clone has no room for one more (its insert reallocated, under malloc's lock).
    #[cfg(feature = "zstd")]
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(len) = len {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::ETAG, header_value(&protocol::etag(&meta.digest)));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    headers
}

/// The headers that describe a committed artifact.
fn artifact_headers(meta: &Metadata) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let digest = HeaderValue::from_str(&meta.digest.to_string()).expect("hex is a valid header");
    headers.insert(DIGEST_HEADER, digest);
    headers.insert(SIZE_HEADER, HeaderValue::from(meta.size));
    headers.insert(FILES_HEADER, HeaderValue::from(meta.files));
    let entries = meta.files.saturating_add(meta.dirs).saturating_add(meta.symlinks);
    headers.insert(ENTRIES_HEADER, HeaderValue::from(entries));
    headers
}

/// `PUT` receives a tar stream into a new artifact: 201 once committed, 200 if it already
/// existed (also after waiting for a concurrent upload of the same id).
pub(super) async fn put(
    State(app): State<App>,
    peer: Peer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive_upload(app, peer_ip(&peer), query, headers, body).await {
        Ok(response) => response,
        Err(reject) => {
            // The body may be partly unread: the connection cannot carry another request, and
            // saying so keeps the client from sending one on it (it would see a reset).
            let mut response = reject.into_response();
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn receive_upload(
    app: App,
    peer: Option<std::net::IpAddr>,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Reject> {
    let id = parse_id(query.as_deref())?;
    app.authorize(&headers, Access::Write)?;
    let expected = expected_digest(&headers)?;
    let zstd = match headers.get(header::CONTENT_ENCODING).map(HeaderValue::to_str) {
        None => false,
        Some(Ok(coding)) if coding.eq_ignore_ascii_case("identity") => false,
        #[cfg(feature = "zstd")]
        Some(Ok(coding)) if coding.eq_ignore_ascii_case(crate::protocol::ZSTD) => true,
        Some(other) => {
            let coding = other.unwrap_or("(not text)").to_owned();
            return Err(Reject::UnsupportedEncoding(coding));
        }
    };
    let limit = app.config.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        Metrics::add(&app.metrics.uploads_rejected, 1);
        return Err(Reject::TooLarge { limit });
    }
    let slot = match app.stream_slot(peer) {
        Ok(slot) => slot,
        Err(reject) => return Err(reject_unread(&app, &headers, body, reject).await),
    };
    let writer = match app.cache.create_or_get(&id, app.config.write_wait).await {
        Ok(Fill::Create(writer)) => writer,
        Ok(Fill::Ready(reader)) => {
            let meta = reader.metadata().clone();
            drop(reader);
            // Read what the client is sending anyway, so that it sees our answer.
            drain_sent(&app, &headers, body, limit).await;
            tracing::debug!("artifact exists already");
            #[cfg(feature = "store")]
            if let Some(store) = &app.config.store {
                super::store::write_through(&app, store, id).await?;
            }
            return Ok((StatusCode::OK, artifact_headers(&meta), Json(meta)).into_response());
        }
        Err(err) => {
            let reject = app.reject_cache(id, err);
            return Err(reject_unread(&app, &headers, body, reject).await);
        }
    };
    let metrics = app.metrics.clone();
    let wire = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|err| io::Error::new(io::ErrorKind::ConnectionAborted, err))?;
        Metrics::add(&metrics.bytes_received, chunk.len() as u64);
        Ok::<_, io::Error>(chunk)
    });
    let stream = decode(wire, zstd, app.config.zstd_max_window_log);
    let options = ReceiveOptions::default().max_bytes(limit).read_only(true);
    let (result, end) = bridge::receive(
        stream,
        app.config.idle_timeout,
        |_| {},
        move |reader| {
            let _slot = slot;
            let summary = match tarstream::receive_with(writer.path(), reader, &options) {
                Ok(summary) => summary,
                Err(err) => return Err(Failed::Stream(err)),
            };
            if let Some(expected) = expected.filter(|expected| *expected != summary.digest) {
                return Err(Failed::Digest { expected, actual: summary.digest });
            }
            writer.commit_with(&summary).map_err(Failed::Commit)
        },
    )
    .await;
    match result {
        Ok(meta) => {
            Metrics::add(&app.metrics.uploads, 1);
            tracing::info!(bytes = meta.size, files = meta.files, "upload committed");
            #[cfg(feature = "store")]
            if let Some(store) = &app.config.store {
                super::store::write_through(&app, store, id).await?;
            }
            Ok((StatusCode::CREATED, artifact_headers(&meta), Json(meta)).into_response())
        }
        Err(failed) => {
            Metrics::add(&app.metrics.uploads_rejected, 1);
            Err(upload_failure(&app, id, failed, end))
        }
    }
}

/// Why an upload was not committed (the writer aborted, so nothing was kept).
enum Failed {
    Stream(tarstream::Error),
    Digest { expected: Digest, actual: Digest },
    Commit(artifact_cache::Error),
}

fn upload_failure(app: &App, id: ArtifactId, failed: Failed, end: PumpEnd<io::Error>) -> Reject {
    // The body's fate explains a truncated stream better than the truncation does.
    if let Failed::Stream(err) = &failed
        && (err.is_truncated() || err.is_io())
    {
        match end {
            PumpEnd::Idle => return Reject::UploadStalled { id, after: app.config.idle_timeout },
            PumpEnd::Body(err) if err.kind() == io::ErrorKind::ConnectionAborted => {
                return Reject::UploadCut { id, reason: crate::error::error_chain(&err) };
            }
            PumpEnd::Body(err) => {
                return Reject::BadRequest(format!(
                    "corrupt zstd body, or one whose window is over the limit of {} bytes: {}",
                    1u64 << app.config.zstd_max_window_log.min(63),
                    crate::error::error_chain(&err)
                ));
            }
            PumpEnd::Done | PumpEnd::JobGone => {}
        }
    }
    match failed {
        Failed::Stream(err) if err.is_limit() => match err {
            tarstream::Error::LimitExceeded { limit: tarstream::Limit::Bytes(limit), .. } => {
                Reject::TooLarge { limit }
            }
            err => Reject::BadStream { id, source: err },
        },
        Failed::Stream(err) if err.is_hostile() => Reject::BadStream { id, source: err },
        Failed::Stream(tarstream::Error::Io { path, source }) => {
            app.reject_cache(id, artifact_cache::Error::from_io(path, source))
        }
        Failed::Stream(err) => Reject::internal(format!("receiving artifact {id}"), err),
        Failed::Digest { expected, actual } => Reject::DigestMismatch { id, expected, actual },
        Failed::Commit(err) => app.reject_cache(id, err),
    }
}

/// The upload's body, zstd-decoded if it says so.
fn decode(
    wire: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    zstd: bool,
    max_window_log: u32,
) -> std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
    #[cfg(feature = "zstd")]
    if zstd {
        return Box::pin(crate::compress::zstd_decode_with(wire, max_window_log));
    }
    let _ = max_window_log;
    debug_assert!(!zstd, "zstd uploads are refused without the feature");
    Box::pin(wire)
}

/// The client's `X-Artifact-Digest`, if it sent one.
fn expected_digest(headers: &HeaderMap) -> Result<Option<Digest>, Reject> {
    let Some(value) = headers.get(DIGEST_HEADER) else { return Ok(None) };
    let text =
        value.to_str().map_err(|_| Reject::BadRequest(format!("{DIGEST_HEADER} is not text")))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|err| Reject::BadRequest(format!("bad {DIGEST_HEADER}: {err}")))
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
}

/// The most of an upload's body read and discarded before answering an error (full disk,
/// busy, overloaded), so that a small upload's client sees the answer instead of a connection
/// reset; a larger one is cut off (the client sees a failed transfer).
const REJECT_DRAIN_BYTES: u64 = 8 << 20;

/// Returns `reject` after draining a little of the unread body (unless the client waits for
/// `100 Continue`, in which case it has sent nothing).
async fn reject_unread(app: &App, headers: &HeaderMap, body: Body, reject: Reject) -> Reject {
    drain_sent(app, headers, body, REJECT_DRAIN_BYTES).await;
    reject
}

/// Reads and discards a body, up to `limit` bytes and within the idle timeout, unless the
/// client waits for `100 Continue` (and so has sent nothing).
async fn drain_sent(app: &App, headers: &HeaderMap, body: Body, limit: u64) {
    if expects_continue(headers) {
        return;
    }
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(app.config.idle_timeout, stream.next()).await
    {
        seen += chunk.len() as u64;
        Metrics::add(&app.metrics.bytes_received, chunk.len() as u64);
        if seen > limit {
            break;
        }
    }
}

/// `DELETE` removes the artifact: 204, 404, or 409 while it is in use.
pub(super) async fn delete(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    let id = parse_id(query.as_deref())?;
    app.authorize(&headers, Access::Write)?;
    let cache = app.cache.clone();
    match bridge::blocking(move || cache.remove(&id)).await {
        Ok(()) => {
            forget(&app, &id);
            tracing::info!("artifact removed");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(err) => Err(app.reject_cache(id, err)),
    }
}
