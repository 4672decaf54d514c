//! `Store::download`: an object fetched as ranged GETs of one part each, a few at once,
//! reassembled in order into tarstream's `receive` inside a cache writer, checked against the
//! digest in the object's metadata, and committed only if it matches.

use std::{
    collections::VecDeque,
    io,
    ops::Range,
    sync::{Arc, Mutex, PoisonError, atomic::Ordering::Relaxed},
    time::Duration,
};

use artifact_cache::{ArtifactId, Cache, Fill, ReadGuard, WriteGuard};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use object_store::{Attributes, GetOptions, GetRange, GetResult, path::Path};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::{Error, Store, meta::Fields, store::Inner};

/// How long `download` waits for another writer of the same id in this cache.
const FILL_WAIT: Duration = Duration::from_secs(600);

/// One ranged GET in flight: a task of its own reads the part's body (continuing it with a
/// request for the rest when it is cut) and queues the bytes for the receiver as they come, so
/// the part being unpacked streams through and only the parts ahead of it wait in memory.
struct Feed {
    range: Range<u64>,
    /// Bytes handed to the receiver so far.
    drained: u64,
    rx: mpsc::UnboundedReceiver<Result<Bytes, Error>>,
    task: tokio::task::JoinHandle<()>,
    /// Counted in [`Stats::parts_in_flight`](crate::Stats::parts_in_flight) until drained.
    _slot: Slot,
}

impl Drop for Feed {
    fn drop(&mut self) {
        // A download that ends early (an error, a dropped future) stops its parts' requests.
        self.task.abort();
    }
}

/// A part counted in [`Stats::parts_in_flight`](crate::Stats::parts_in_flight) while it lives.
struct Slot(Arc<Inner>);

impl Slot {
    fn new(inner: &Arc<Inner>) -> Slot {
        inner.stats.part_started();
        Slot(Arc::clone(inner))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats.part_done();
    }
}

/// The bytes of a range are handed to the receiver in pieces of this size, each one allocation
/// of its own: the chunks an HTTP body arrives in are often slices of larger read buffers,
/// which a part waiting whole would otherwise keep alive.
const PIECE: usize = 512 * 1024;

/// What the first answer says of the object, besides its first part.
struct Head {
    size: u64,
    e_tag: Option<String>,
    attributes: Attributes,
}

impl Store {
    /// Downloads artifact `id` from the store into `cache` and returns it read-locked.
    ///
    /// If the cache has it already, or another task or process is filling it, that artifact
    /// is returned (single flight through [`Cache::create_or_get`]). Otherwise see
    /// [`download_into`](Store::download_into).
    #[tracing::instrument(name = "store_download", skip_all, fields(id = %id, store = %self.inner.url), err(level = "debug"))]
    pub async fn download(&self, cache: &Cache, id: &ArtifactId) -> Result<ReadGuard, Error> {
        let fill = cache.create_or_get(id, FILL_WAIT).await.map_err(|err| cache_error(*id, err))?;
        match fill {
            Fill::Ready(reader) => Ok(reader),
            Fill::Create(writer) => self.download_into(cache, writer).await,
        }
    }

    /// Fills `writer` (a fresh cache writer of `cache`) from the artifact's object, commits it
    /// and returns it read-locked.
    ///
    /// The object comes as ranged GETs of [`part_size`](crate::StoreOptions::part_size),
    /// [`parallelism`](crate::StoreOptions::parallelism) at once, each retried on its own,
    /// joined in order into tarstream's `receive`: memory is a few parts whatever the size.
    /// The received tree must have the digest in the object's metadata; whatever fails,
    /// nothing is committed (the writer is aborted).
    pub async fn download_into(
        &self,
        cache: &Cache,
        writer: WriteGuard,
    ) -> Result<ReadGuard, Error> {
        self.fetch(cache, writer).await.map_err(|err| self.inner.counted(err))
    }

    /// Fills the directory of `writer` (a fresh cache writer) from the artifact's object and
    /// checks the received tree against the digest in the object's metadata, without
    /// committing or aborting: the caller decides (commit with the returned summary, or empty
    /// the directory and try another source). On failure the directory may hold part of the
    /// tree. [`download_into`](Store::download_into) is this, then the commit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use artifact_cache::Cache;
    /// use artifact_store::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::create_dir(dir.path().join("bucket"))?;
    /// let store = Store::open(&format!("file://{}", dir.path().join("bucket").display()))?;
    /// let (here, there) = (Cache::open(dir.path().join("a"))?, Cache::open(dir.path().join("b"))?);
    /// let id = "5eed".parse()?;
    /// let writer = here.create(&id)?;
    /// std::fs::write(writer.path().join("hello.txt"), "hi")?;
    /// writer.commit()?;
    /// store.upload(&here, &id).await?;
    ///
    /// let writer = there.create(&id)?;
    /// let summary = store.receive_into(&writer).await?;
    /// assert_eq!(summary.files, 1);
    /// writer.commit_with(&summary)?; // or abort it, and try elsewhere
    /// assert!(there.get(&id).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn receive_into(&self, writer: &WriteGuard) -> Result<tarstream::Summary, Error> {
        self.receive(writer).await.map_err(|err| self.inner.counted(err))
    }

    async fn fetch(&self, cache: &Cache, writer: WriteGuard) -> Result<ReadGuard, Error> {
        let id = *writer.id();
        let summary = match self.receive(&writer).await {
            Ok(summary) => summary,
            Err(err) => return Err(abort(writer, err).await),
        };
        let cache = cache.clone();
        blocking(id, move || {
            writer.commit_with(&summary)?;
            cache.get(&id)
        })
        .await
    }

    async fn receive(&self, writer: &WriteGuard) -> Result<tarstream::Summary, Error> {
        let inner = &self.inner;
        let id = *writer.id();
        let path = inner.object_path(&id);
        let part_size = inner.options.part_size as u64;
        let sidecar = if inner.sidecar { Some(inner.read_sidecar(id).await?) } else { None };
        let (head, first) = inner.open_first(id, &path, 0..part_size).await?;
        let fields = match sidecar {
            Some(fields) => fields,
            None => Fields::from_attributes(id, &inner.url, &head.attributes)?,
        };
        let total = head.size;
        tracing::debug!(bytes = total, parts = total.div_ceil(part_size), "downloading");

        // The first part, then the others, `parallelism` parts fetched at once, in order.
        let ranges = (part_size..total)
            .step_by(inner.options.part_size)
            .map(|start| start..(start + part_size).min(total));
        let (path, e_tag) = (&path, &head.e_tag);
        let mut feeds = VecDeque::with_capacity(inner.options.parallelism);
        feeds.push_back(Feed::spawn(inner, id, path, 0..part_size.min(total), e_tag, Some(first)));
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let body = stream::unfold((feeds, ranges), move |(mut feeds, mut ranges)| async move {
            loop {
                while feeds.len() < inner.options.parallelism {
                    let Some(range) = ranges.next() else { break };
                    feeds.push_back(Feed::spawn(inner, id, path, range, e_tag, None));
                }
                let feed = feeds.front_mut()?;
                let item = match feed.rx.recv().await {
                    Some(Ok(bytes)) => {
                        feed.drained += bytes.len() as u64;
                        Ok(bytes)
                    }
                    Some(Err(err)) => Err(err),
                    None if feed.drained == feed.range.end - feed.range.start => {
                        feeds.pop_front();
                        continue;
                    }
                    None => Err(short_part(id, &inner.url, &feed.range, feed.drained)),
                };
                return Some((item, (feeds, ranges)));
            }
        })
        .map(|item| {
            item.map_err(|err| {
                let message = err.to_string();
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                io::Error::other(message)
            })
        });
        let received = tarstream::receive_stream(writer.path(), body, &inner.options.receive).await;
        let stored = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
        let summary = match (received, stored) {
            (Ok(summary), _) => summary,
            (Err(_), Some(err)) => return Err(err),
            (Err(err), None) => {
                let err = receive_error(id, &inner.url, err);
                if err.is_corrupt() {
                    tracing::warn!(error = %err, "object is not a valid tar stream; nothing kept");
                }
                return Err(err);
            }
        };
        if summary.digest != fields.digest {
            tracing::warn!(expected = %fields.digest, actual = %summary.digest, "digest mismatch; nothing kept");
            return Err(Error::Corrupt {
                id,
                store: inner.url.clone(),
                expected: Box::new(fields.digest),
                actual: Box::new(summary.digest),
            });
        }
        Ok(summary)
    }
}

impl Feed {
    /// Starts fetching `range` of the object (from `opened`, the answer to its first request,
    /// when there is one) on a task of its own.
    fn spawn(
        inner: &Arc<Inner>,
        id: ArtifactId,
        path: &Path,
        range: Range<u64>,
        e_tag: &Option<String>,
        opened: Option<GetResult>,
    ) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        let span = tracing::debug_span!("part", offset = range.start);
        let fetch =
            Arc::clone(inner).pump(id, path.clone(), range.clone(), e_tag.clone(), opened, tx);
        let task = tokio::spawn(fetch.instrument(span));
        Feed { range, drained: 0, rx, task, _slot: Slot::new(inner) }
    }
}

impl Inner {
    /// The first ranged GET of a download, retried while it fails in a retryable way: the
    /// object's size, ETag and metadata, and the open answer whose body is the first part.
    async fn open_first(
        &self,
        id: ArtifactId,
        path: &Path,
        range: Range<u64>,
    ) -> Result<(Head, GetResult), Error> {
        let mut retry = Retry::new(&self.options);
        loop {
            match self.open(id, path, range.clone(), None).await {
                Ok(got) => {
                    let head = Head {
                        size: got.meta.size,
                        e_tag: got.meta.e_tag.clone(),
                        attributes: got.attributes.clone(),
                    };
                    return Ok((head, got));
                }
                Err(err) => retry.wait_or_fail(err).await?,
            }
        }
    }

    /// Sends the bytes of `range` to `tx` as they arrive; a request cut short, or one that
    /// fails in a retryable way, is followed by one for the rest of the range (`If-Match` the
    /// object's ETag), up to the retry budget; a final error is sent as the last item.
    async fn pump(
        self: Arc<Inner>,
        id: ArtifactId,
        path: Path,
        range: Range<u64>,
        e_tag: Option<String>,
        mut opened: Option<GetResult>,
        tx: mpsc::UnboundedSender<Result<Bytes, Error>>,
    ) {
        let failed = |err| Error::from_store(&self.url, "get", Some(id), id.to_string(), err);
        let mut at = range.start;
        let mut retry = Retry::new(&self.options);
        // What arrived but is not sent yet: kept across a retry, which asks for what follows.
        let mut piece = BytesMut::new();
        loop {
            let tried = async {
                let got = match opened.take() {
                    Some(got) => got,
                    None => self.open(id, &path, at..range.end, e_tag.clone()).await?,
                };
                let mut body = got.into_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(failed)?;
                    // Never more than the range: a longer answer is cut to it, and checked
                    // below as one that did not end where it should.
                    let left = usize::try_from(range.end - at).unwrap_or(usize::MAX);
                    let mut rest = &chunk[..chunk.len().min(left)];
                    self.stats.bytes_down.fetch_add(rest.len() as u64, Relaxed);
                    while !rest.is_empty() {
                        if piece.capacity() == 0 {
                            let left = usize::try_from(range.end - at).unwrap_or(usize::MAX);
                            piece.reserve(PIECE.min(left));
                        }
                        let take = rest.len().min(piece.capacity() - piece.len());
                        piece.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                        at += take as u64;
                        if (piece.len() == piece.capacity() || at == range.end)
                            && tx.send(Ok(std::mem::take(&mut piece).freeze())).is_err()
                        {
                            return Ok(()); // the download ended; nobody wants the rest
                        }
                    }
                    if at == range.end {
                        break;
                    }
                }
                if at < range.end {
                    return Err(short_part(id, &self.url, &range, at - range.start));
                }
                Ok(())
            }
            .await;
            match tried {
                Ok(()) => return,
                Err(err) => {
                    tracing::debug!(error = %err, at, "part failed");
                    if let Err(err) = retry.wait_or_fail(err).await {
                        let _ = tx.send(Err(err));
                        return;
                    }
                }
            }
        }
    }

    /// One ranged GET, answered but its body not yet read.
    async fn open(
        &self,
        id: ArtifactId,
        path: &Path,
        range: Range<u64>,
        e_tag: Option<String>,
    ) -> Result<GetResult, Error> {
        let failed = |err| Error::from_store(&self.url, "get", Some(id), id.to_string(), err);
        self.stats.requests.fetch_add(1, Relaxed);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: e_tag,
            ..GetOptions::default()
        };
        self.backend.get_opts(path, options).await.map_err(failed)
    }
}

/// The retries of one request: how many are left, and the backoff before the next.
struct Retry {
    left: u32,
    backoff: Duration,
}

impl Retry {
    fn new(options: &crate::StoreOptions) -> Retry {
        Retry { left: options.retries, backoff: options.retry_backoff }
    }

    /// Waits before the next try of a request that failed with `err`, or gives `err` back
    /// when it is not worth another (not retryable, the object changed, no tries left).
    async fn wait_or_fail(&mut self, err: Error) -> Result<(), Error> {
        if !err.is_retryable() || matches!(err, Error::Changed { .. }) || self.left == 0 {
            return Err(err);
        }
        self.left -= 1;
        tracing::debug!(error = %err, left = self.left, "retrying");
        tokio::time::sleep(jitter(self.backoff)).await;
        self.backoff = self.backoff.saturating_mul(2);
        Ok(())
    }
}

/// A part whose answers ended before its range did.
fn short_part(id: ArtifactId, store: &str, range: &Range<u64>, got: u64) -> Error {
    Error::from_store(
        store,
        "get",
        Some(id),
        id.to_string(),
        object_store::Error::Generic {
            store: "artifact-store",
            source: format!(
                "a ranged GET at {} gave {got} of {} bytes",
                range.start,
                range.end - range.start
            )
            .into(),
        },
    )
}

/// The one classification of a failed receive of an object into the local cache: an i/o
/// error that the destination's state explains (a full disk, a read-only or vanished
/// directory) is the local cache's, [`Error::Cache`], since no other copy of the object could
/// do better; everything else, an entry the local file system cannot hold included, is the
/// object's, [`Error::Stream`].
fn receive_error(id: ArtifactId, store: &str, err: tarstream::Error) -> Error {
    let local = err.is_local();
    match err {
        tarstream::Error::Io { path, source } if local => {
            cache_error(id, artifact_cache::Error::from_io(path, source))
        }
        err => Error::Stream { id, store: store.to_owned(), source: Arc::new(err) },
    }
}

/// `backoff` with up to half of it added at random.
fn jitter(backoff: Duration) -> Duration {
    backoff + backoff.mul_f64(fastrand::f64() / 2.0)
}

/// Aborts `writer` off the runtime's workers and passes `err` on.
async fn abort(writer: WriteGuard, err: Error) -> Error {
    let id = *writer.id();
    match blocking(id, move || writer.abort()).await {
        Ok(()) => err,
        Err(abort) => {
            tracing::warn!(error = %abort, "cannot abort the writer");
            err
        }
    }
}

/// Runs a cache operation on the blocking pool, in the current span.
pub(crate) async fn blocking<T: Send + 'static>(
    id: ArtifactId,
    f: impl FnOnce() -> Result<T, artifact_cache::Error> + Send + 'static,
) -> Result<T, Error> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(result) => result.map_err(|err| cache_error(id, err)),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(cache_error(
            id,
            artifact_cache::Error::Io {
                path: std::path::PathBuf::new(),
                source: io::Error::other("the tokio runtime is shutting down"),
            },
        )),
    }
}

pub(crate) fn cache_error(id: ArtifactId, err: artifact_cache::Error) -> Error {
    Error::Cache { id, source: Arc::new(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objects_entries_are_its_fault_the_disk_is_ours() {
        let id: ArtifactId = "ab".parse().unwrap();
        let io = |source: io::Error| tarstream::Error::Io { path: "x".into(), source };
        for source in [
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from(io::ErrorKind::QuotaExceeded),
            io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
            io::Error::from(io::ErrorKind::PermissionDenied),
            io::Error::from(io::ErrorKind::NotFound),
        ] {
            let kind = source.kind();
            let err = receive_error(id, "s3://b", io(source));
            assert!(matches!(err, Error::Cache { .. }), "{kind:?}: {err:?}");
            assert!(!err.is_corrupt() && !err.is_remote() && !err.is_retryable(), "{kind:?}");
        }
        let full = receive_error(id, "s3://b", io(io::ErrorKind::StorageFull.into()));
        assert!(matches!(&full, Error::Cache { source, .. } if source.is_disk_full()), "{full:?}");
        for source in [
            io::Error::from_raw_os_error(36), // ENAMETOOLONG
            io::Error::from(io::ErrorKind::FileTooLarge),
            io::Error::from(io::ErrorKind::NotADirectory),
        ] {
            let err = receive_error(id, "s3://b", io(source));
            assert!(matches!(err, Error::Stream { .. }) && err.is_corrupt(), "{err:?}");
        }
        let truncated = tarstream::Error::Truncated {
            offset: 512,
            within: tarstream::Section::Data,
            entry: None,
        };
        assert!(receive_error(id, "s3://b", truncated).is_corrupt());
    }
}
