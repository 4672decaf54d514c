//! Object-store endpoints of a [`Downloader`] (feature `store`): a store tried in its place in
//! the ordered list of endpoints, under the same single flight, commit gate, retries and
//! per-endpoint limits as an HTTP peer.

use std::sync::Arc;

use artifact_cache::{ArtifactId, Cache, ReadGuard, WriteGuard};
use artifact_store::Store;
use tracing::debug;

use super::{
    DownloaderBuilder, Given, Inner, UploadOutcome,
    commit::{Gate, empty_dir},
    fetch::{Attempt, Outcome, cache_error},
    progress::ProgressEvent,
};
use crate::{Error, TimeoutKind, bridge};

/// The schemes of object-store URLs.
const STORE_SCHEMES: [&str; 4] = ["s3", "gs", "az", "file"];

/// Whether `url` names an object store (`s3://`, `gs://`, `az://`, `file://`).
pub(super) fn is_store_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| STORE_SCHEMES.contains(&scheme))
}

/// Opens the store at `url`; a URL or configuration it refuses is an invalid endpoint.
pub(super) fn open(url: &str) -> Result<Store, Error> {
    Store::open(url).map_err(|err| Error::InvalidEndpoint {
        url: url.to_owned(),
        reason: crate::error::error_chain(&err),
    })
}

impl DownloaderBuilder {
    /// Adds an object store as the next endpoint (feature `store`), tried in its place in
    /// the order like a peer: an object it lacks moves on to the next endpoint (like a 404);
    /// a retryable failure (unreachable, a 5xx, the object changed while being read) is
    /// retried in the next round; refused credentials or a damaged object (not a valid tar
    /// stream, not the tree its metadata names) rule it out for that download. The object's
    /// tree is checked against the digest in its metadata before the commit, through the
    /// same single flight and deadline as any download; [`Downloaded::endpoint`] then names
    /// the store's URL. [`per_endpoint`](Self::per_endpoint) bounds the downloads from it
    /// at once. [`endpoint`](Self::endpoint) with a store URL does the same, opening it with
    /// [`Store::open`]. An upload to a store endpoint is [`Store::upload`].
    ///
    /// [`Downloaded::endpoint`]: super::Downloaded::endpoint
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use artifact_cache::Cache;
    /// use artifact_http::Downloader;
    /// use artifact_store::Store;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (here, there) = (Cache::open(dir.path().join("here"))?, Cache::open(dir.path().join("there"))?);
    /// let id = "5eed".parse()?;
    /// let writer = here.create(&id)?;
    /// std::fs::write(writer.path().join("hello.txt"), "hi")?;
    /// writer.commit()?;
    ///
    /// std::fs::create_dir(dir.path().join("store"))?;
    /// let store = Store::open(&format!("file://{}", dir.path().join("store").display()))?;
    /// store.upload(&here, &id).await?;
    ///
    /// let downloader = Downloader::builder().endpoint("http://127.0.0.1:9").store(store).build()?;
    /// let downloaded = downloader.download(&there, &id).await?;
    /// assert!(downloaded.endpoint().unwrap().starts_with("file://"));
    /// assert_eq!(std::fs::read_to_string(downloaded.path().join("hello.txt"))?, "hi");
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(mut self, store: Store) -> Self {
        self.endpoints.push(Given::Store(store));
        self
    }
}

impl Inner {
    /// One download from the store endpoint `index` into `writer`: received and checked by
    /// the store, committed here through `gate`; on failure the writer comes back emptied.
    pub(super) async fn store_attempt(
        &self,
        cache: &Cache,
        id: ArtifactId,
        index: usize,
        writer: WriteGuard,
        attempt: u32,
        gate: &Arc<Gate>,
    ) -> Attempt {
        let endpoint = &self.endpoints[index];
        let store = endpoint.store.as_ref().expect("a store endpoint");
        let mut outcome = Outcome::default();
        outcome.trail.requests = 1;
        outcome.trail.last = index;
        let _permit = endpoint.permits.acquire().await.expect("never closed");
        self.report(id, endpoint, attempt, 0, None, None, ProgressEvent::Started);
        let summary = match store.receive_into(&writer).await {
            Ok(summary) => summary,
            Err(err) => {
                debug!(store = %endpoint.base, error = %err, "store attempt failed");
                let error =
                    Error::Store { id, endpoint: endpoint.base.to_string(), source: Arc::new(err) };
                let emptied = bridge::blocking(move || match empty_dir(writer.path()) {
                    Ok(()) => Ok(writer),
                    Err(source) => {
                        Err(artifact_cache::Error::Io { path: writer.path().to_owned(), source })
                    }
                })
                .await;
                return match emptied {
                    Ok(writer) => Attempt::Failed(writer, error, outcome),
                    Err(err) => Attempt::Fatal(cache_error(id, err)),
                };
            }
        };
        outcome.received = summary.stream_bytes;
        outcome.verified = true;
        outcome.trail.count(index, summary.stream_bytes);
        let (cache, gate) = (cache.clone(), gate.clone());
        let committed = bridge::blocking(move || -> Result<Option<ReadGuard>, _> {
            if !gate.begin_commit() {
                writer.abort()?;
                return Ok(None);
            }
            writer.commit_with(&summary)?;
            cache.get(&id).map(Some)
        })
        .await;
        match committed {
            Ok(Some(reader)) => Attempt::Done(reader, outcome),
            Ok(None) => Attempt::Fatal(Error::Timeout {
                id,
                endpoint: None,
                what: TimeoutKind::Overall,
                after: self.settings.timeout.unwrap_or_default(),
            }),
            Err(err) => Attempt::Fatal(cache_error(id, err)),
        }
    }

    /// Uploads `id` to the store endpoint `store`, under its per-endpoint limit.
    pub(super) async fn store_upload(
        &self,
        index: usize,
        cache: &Cache,
        id: ArtifactId,
    ) -> Result<(UploadOutcome, u64), Error> {
        let endpoint = &self.endpoints[index];
        let store = endpoint.store.as_ref().expect("a store endpoint");
        let _permit = endpoint.permits.acquire().await.expect("never closed");
        let store_error =
            |err| Error::Store { id, endpoint: endpoint.base.to_string(), source: Arc::new(err) };
        let uploaded = store.upload(cache, &id).await.map_err(store_error)?;
        let outcome = match uploaded.outcome {
            artifact_store::UploadOutcome::Created => UploadOutcome::Created,
            _ => UploadOutcome::Exists,
        };
        Ok((outcome, uploaded.bytes_sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_told_from_peers() {
        for url in ["s3://bucket/prefix", "gs://b", "az://c", "file:///tmp/store"] {
            assert!(is_store_url(url), "{url}");
        }
        for url in ["http://a:1", "https://a", "ftp://x", "a:1", ""] {
            assert!(!is_store_url(url), "{url}");
        }
    }

    #[test]
    fn a_bad_store_url_is_an_invalid_endpoint() {
        let err = crate::Downloader::builder().endpoint("s3://").build().unwrap_err();
        assert!(matches!(err, Error::InvalidEndpoint { ref url, .. } if url == "s3://"), "{err}");
    }
}
