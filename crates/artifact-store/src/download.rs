//! `Store::download`: an object fetched as ranged GETs of one part each, a few at once,
//! reassembled in order into tarstream's `receive` inside a cache writer, checked against the
//! digest in the object's metadata, and committed only if it matches.

use std::{
    io,
    ops::Range,
    sync::{Arc, Mutex, PoisonError, atomic::Ordering::Relaxed},
    time::Duration,
};

use artifact_cache::{ArtifactId, Cache, Fill, ReadGuard, WriteGuard};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use object_store::{Attributes, GetOptions, GetRange, path::Path};
use tracing::Instrument;

use crate::{Error, Store, meta::Fields, store::Inner};

/// How long `download` waits for another writer of the same id in this cache.
const FILL_WAIT: Duration = Duration::from_secs(600);

/// One part as received, counted in flight until it is handed to the receiver.
struct Part<'a> {
    bytes: Bytes,
    size: u64,
    e_tag: Option<String>,
    attributes: Attributes,
    _slot: Slot<'a>,
}

/// A part counted in [`Stats::parts_in_flight`](crate::Stats::parts_in_flight) while it lives.
struct Slot<'a>(&'a crate::Stats);

impl<'a> Slot<'a> {
    fn new(stats: &'a crate::Stats) -> Slot<'a> {
        stats.part_started();
        Slot(stats)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.part_done();
    }
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
        let first = inner.part(id, &path, 0..part_size, None).await?;
        let fields = match sidecar {
            Some(fields) => fields,
            None => Fields::from_attributes(id, &inner.url, &first.attributes)?,
        };
        let total = first.size;
        let e_tag = first.e_tag.clone();
        tracing::debug!(bytes = total, parts = total.div_ceil(part_size), "downloading");

        // The first part, then the others fetched `parallelism` ahead of the receiver, in order.
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let ranges = (part_size..total)
            .step_by(inner.options.part_size)
            .map(|start| start..(start + part_size).min(total));
        let rest = stream::iter(ranges)
            .map(|range| inner.part(id, &path, range, e_tag.clone()))
            .buffered(inner.options.parallelism);
        let body = stream::once(async { Ok(first) }).chain(rest).map(|part| match part {
            Ok(part) => Ok(part.bytes),
            Err(err) => {
                let message = err.to_string();
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                Err(io::Error::other(message))
            }
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

impl Inner {
    /// One ranged GET, retried on its own while it fails in a retryable way.
    async fn part(
        &self,
        id: ArtifactId,
        path: &Path,
        range: Range<u64>,
        e_tag: Option<String>,
    ) -> Result<Part<'_>, Error> {
        let slot = Slot::new(&self.stats);
        let span = tracing::debug_span!("part", offset = range.start);
        let mut backoff = self.options.retry_backoff;
        let mut tries = 0;
        loop {
            let got = self
                .get_range(id, path, range.clone(), e_tag.clone())
                .instrument(span.clone())
                .await;
            match got {
                Err(err)
                    if err.is_retryable()
                        && tries < self.options.retries
                        && !matches!(err, Error::Changed { .. }) =>
                {
                    tries += 1;
                    tracing::debug!(parent: &span, error = %err, tries, "part failed; retrying it");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(err) => return Err(err),
                Ok((bytes, size, e_tag, attributes)) => {
                    return Ok(Part { bytes, size, e_tag, attributes, _slot: slot });
                }
            }
        }
    }

    async fn get_range(
        &self,
        id: ArtifactId,
        path: &Path,
        range: Range<u64>,
        e_tag: Option<String>,
    ) -> Result<(Bytes, u64, Option<String>, Attributes), Error> {
        let failed = |err| Error::from_store(&self.url, "get", Some(id), id.to_string(), err);
        self.stats.requests.fetch_add(1, Relaxed);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: e_tag,
            ..GetOptions::default()
        };
        let got = self.backend.get_opts(path, options).await.map_err(failed)?;
        let (size, e_tag, attributes) =
            (got.meta.size, got.meta.e_tag.clone(), got.attributes.clone());
        let bytes = got.bytes().await.map_err(failed)?;
        self.stats.bytes_down.fetch_add(bytes.len() as u64, Relaxed);
        let expected = range.end.min(size).saturating_sub(range.start);
        if bytes.len() as u64 != expected {
            return Err(failed(object_store::Error::Generic {
                store: "artifact-store",
                source: format!(
                    "a ranged GET at {} gave {} of {expected} bytes",
                    range.start,
                    bytes.len()
                )
                .into(),
            }));
        }
        Ok((bytes, size, e_tag, attributes))
    }
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
