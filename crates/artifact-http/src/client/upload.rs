//! `Downloader::upload`: `HEAD` to skip what the server has, then a `PUT` streaming the tar of
//! a local artifact (under its read lock), with failover and retries like downloads.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use artifact_cache::{ArtifactId, Cache, Metadata, ReadGuard};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{StatusCode, header};
use tarstream::Digest;
use tracing::{Instrument, debug, info, warn};

use super::{
    Downloader, Endpoint, Inner,
    answer::{idle_error, request_error, status_error},
    fetch::cache_error,
    progress::ProgressEvent,
};
use crate::{
    Error, TimeoutKind, bridge,
    error::error_brief,
    protocol::{self, DIGEST_HEADER, TAR_MEDIA_TYPE},
};

/// What [`Downloader::upload`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Uploaded {
    /// The endpoint that has it now.
    pub endpoint: String,
    /// Whether it was sent or was there already.
    pub outcome: UploadOutcome,
    /// The local artifact's metadata.
    pub metadata: Metadata,
    /// Body bytes sent (0 when the server had it).
    pub bytes: u64,
    /// Attempts made over all endpoints.
    pub attempts: u32,
}

/// Whether an upload created the artifact on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// The server committed it (201).
    Created,
    /// The server had it already, with the same tree digest (200).
    Exists,
}

impl Downloader {
    /// Uploads `id` from `cache` to the first endpoint that takes it.
    ///
    /// Asks with `HEAD` first, so nothing is sent to a server that has it. The tar stream is
    /// produced from the local artifact under its read lock, with the tree digest in
    /// `X-Artifact-Digest` so that the server verifies it end to end. Endpoints and retries
    /// work as for [`download`](Downloader::download) (a retry sends the whole stream again).
    ///
    /// # Errors
    ///
    /// [`Error::Cache`] if the local cache does not have it ([`Error::is_not_found`]) or
    /// fails; [`Error::DigestMismatch`] if the server holds a different tree under this id;
    /// [`Error::Status`] for a refusal (401 without the right token, 413 over the server's
    /// limit, 507 when its disk is full); transport errors as for downloads.
    pub async fn upload(&self, cache: &Cache, id: &ArtifactId) -> Result<Uploaded, Error> {
        let id = *id;
        let span = tracing::info_span!("upload", id = %id);
        let work = self.inner.upload(cache, id);
        match self.inner.settings.timeout {
            Some(after) => tokio::time::timeout(after, work).instrument(span).await.unwrap_or(Err(
                Error::Timeout { id, endpoint: None, what: TimeoutKind::Overall, after },
            )),
            None => work.instrument(span).await,
        }
    }
}

impl Inner {
    async fn upload(&self, cache: &Cache, id: ArtifactId) -> Result<Uploaded, Error> {
        let local = cache.clone();
        let reader =
            bridge::blocking(move || local.get(&id)).await.map_err(|e| cache_error(id, e))?;
        let started = Instant::now();
        let mut eligible = vec![true; self.endpoints.len()];
        let mut last_error = None;
        let mut attempts = 0;
        for round in 0..self.settings.rounds {
            let mut retry_after = None::<Duration>;
            for (index, endpoint) in self.endpoints.iter().enumerate() {
                if !eligible[index] {
                    continue;
                }
                attempts += 1;
                let uploaded = match () {
                    #[cfg(feature = "store")]
                    () if !endpoint.is_http() => self.store_upload(index, cache, id).await,
                    () => self.upload_to(endpoint, id, &reader, attempts).await,
                };
                match uploaded {
                    Ok((outcome, bytes)) => {
                        info!(endpoint = %endpoint.base, ?outcome, bytes, ms = started.elapsed().as_millis() as u64, "uploaded");
                        return Ok(Uploaded {
                            endpoint: endpoint.base.to_string(),
                            outcome,
                            metadata: reader.metadata().clone(),
                            bytes,
                            attempts,
                        });
                    }
                    Err(error) => {
                        warn!(endpoint = %endpoint.base, attempt = attempts, error = %error_brief(&error), "upload attempt failed");
                        // A server holding another tree under this id will not change its mind.
                        let conflict = matches!(error, Error::DigestMismatch { .. });
                        if error.is_retryable() && !conflict {
                            retry_after = retry_after.max(error.retry_after());
                        } else {
                            eligible[index] = false;
                        }
                        let event = ProgressEvent::Failed { error: error.clone(), retry_in: None };
                        self.report(id, endpoint, attempts, 0, None, None, event);
                        last_error = Some(error);
                    }
                }
            }
            if !eligible.iter().any(|e| *e) || round + 1 == self.settings.rounds {
                break;
            }
            let pause = self.pause(round, retry_after);
            debug!(round, pause = ?pause, "upload failed everywhere this round; backing off");
            tokio::time::sleep(pause).await;
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// `HEAD`, then `PUT` if the server does not have it.
    async fn upload_to(
        &self,
        endpoint: &Endpoint,
        id: ArtifactId,
        reader: &ReadGuard,
        attempt: u32,
    ) -> Result<(UploadOutcome, u64), Error> {
        let _permit = endpoint.permits.acquire().await.expect("never closed");
        let url = format!("{}{}", endpoint.base, protocol::artifact_path(&id));
        let idle = self.settings.idle_timeout;
        let local = reader.metadata().digest;
        let response = self.send(id, endpoint, self.http.head(&url)).await?;
        match response.status() {
            StatusCode::OK => {
                check_remote_digest(id, endpoint, &response, local)?;
                return Ok((UploadOutcome::Exists, 0));
            }
            StatusCode::NOT_FOUND => {}
            _ => return Err(status_error(id, endpoint, response, idle).await),
        }

        let sent = Arc::new(AtomicU64::new(0));
        let (body, finished) = self.body(id, endpoint, reader, attempt, sent.clone());
        let mut put = self
            .authorized(self.http.put(&url))
            .header(header::CONTENT_TYPE, TAR_MEDIA_TYPE)
            .header(DIGEST_HEADER, local.to_string())
            .body(reqwest::Body::wrap_stream(body));
        if self.settings.zstd {
            put = put.header(header::CONTENT_ENCODING, protocol::ZSTD);
        }
        let mut request = std::pin::pin!(put.send());
        // The body bounds itself (the sender times out when the server stops reading); once it
        // is all sent, the answer must come within the idle timeout.
        let response = tokio::select! {
            response = &mut request => response,
            _ = finished => match tokio::time::timeout(idle, &mut request).await {
                Ok(response) => response,
                Err(_) => return Err(idle_error(id, endpoint, idle)),
            },
        };
        let response = response.map_err(|err| request_error(id, endpoint, err))?;
        let outcome = match response.status() {
            StatusCode::CREATED => UploadOutcome::Created,
            StatusCode::OK => UploadOutcome::Exists,
            _ => return Err(status_error(id, endpoint, response, idle).await),
        };
        check_remote_digest(id, endpoint, &response, local)?;
        Ok((outcome, sent.load(Relaxed)))
    }

    /// The PUT body: the tar stream of the local artifact (compressed with zstd if asked),
    /// counted for progress, and a signal that fires when it has all been handed over.
    fn body(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        reader: &ReadGuard,
        attempt: u32,
        sent: Arc<AtomicU64>,
    ) -> (impl Stream<Item = io::Result<Bytes>> + Send + 'static, tokio::sync::oneshot::Receiver<()>)
    {
        // The caller holds the read lock for the whole upload; the stream needs none of its own.
        let tar = bridge::send_stream(reader.path().to_owned(), (), self.settings.idle_timeout);
        let tar = encode(tar, self.settings.zstd);
        let progress = self.settings.progress.clone();
        let endpoint = endpoint.base.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let counted = tar.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                let bytes = sent.fetch_add(chunk.len() as u64, Relaxed) + chunk.len() as u64;
                if let Some(callback) = &progress {
                    callback(&super::Progress {
                        id,
                        endpoint: endpoint.clone(),
                        attempt,
                        bytes,
                        total: None,
                        tree_bytes: None,
                        event: ProgressEvent::Received,
                        source_bytes: 0,
                        refetched: 0,
                    });
                }
            }
        });
        let throttle = self.settings.throttle.clone();
        let counted = counted.then(move |chunk| super::pace(throttle.clone(), chunk));
        let mut done_tx = Some(done_tx);
        let end = futures_util::stream::poll_fn(move |_| {
            if let Some(tx) = done_tx.take() {
                let _ = tx.send(());
            }
            std::task::Poll::Ready(None)
        });
        (counted.chain(end), done_rx)
    }
}

/// Fails if the server announces a different tree under `id` than ours.
fn check_remote_digest(
    id: ArtifactId,
    endpoint: &Endpoint,
    response: &reqwest::Response,
    local: Digest,
) -> Result<(), Error> {
    let remote = response
        .headers()
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<Digest>().ok());
    match remote {
        Some(remote) if remote != local => Err(Error::DigestMismatch {
            id,
            endpoint: endpoint.base.to_string(),
            expected: local,
            actual: remote,
        }),
        Some(_) => Ok(()),
        None => Err(Error::Protocol {
            id,
            endpoint: endpoint.base.to_string(),
            reason: format!("no valid {DIGEST_HEADER} header"),
        }),
    }
}

/// The body, zstd-compressed if asked.
fn encode(
    tar: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    zstd: bool,
) -> std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
    #[cfg(feature = "zstd")]
    if zstd {
        return Box::pin(crate::compress::zstd_encode(tar, 1));
    }
    debug_assert!(!zstd);
    Box::pin(tar)
}
