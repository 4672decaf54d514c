//! `Store::upload`: a read-locked local artifact streamed through tarstream's `send` into one
//! object, created only if absent: a single conditional PUT when the stream fits in one part,
//! else a multipart upload fed part by part, a few parts at once.

use std::sync::{Arc, atomic::Ordering::Relaxed};

use artifact_cache::{ArtifactId, Cache};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{
    Attributes, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart, path::Path,
};

use crate::{Error, Store, download::blocking, meta::Fields, store::Inner};

/// What an upload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// This upload created the object.
    Created,
    /// The store had the object already (ids name immutable content): nothing was sent, or
    /// the conditional create was refused.
    Exists,
}

/// The result of [`Store::upload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Uploaded {
    /// Whether the object was created or found.
    pub outcome: UploadOutcome,
    /// Object bytes sent (0 when it existed before anything was sent).
    pub bytes_sent: u64,
}

impl Store {
    /// Uploads artifact `id` from `cache` into the store, holding its read lock while it is
    /// sent.
    ///
    /// The object is created only if absent (`PutMode::Create`, `If-None-Match: *`): a second
    /// upload of an id finds [`UploadOutcome::Exists`]. A tar stream longer than one
    /// [`part_size`](crate::StoreOptions::part_size) goes up as a multipart upload
    /// (`parallelism` parts at once, each retried on its own); as multipart uploads have no
    /// conditional form, the object is looked up first and, in a race, the later writer
    /// replaces it with the same content. The sent tree's digest is checked against the one
    /// the cache recorded before the object is completed, so a damaged local copy is never
    /// stored.
    #[tracing::instrument(name = "store_upload", skip_all, fields(id = %id, store = %self.inner.url), err(level = "debug"))]
    pub async fn upload(&self, cache: &Cache, id: &ArtifactId) -> Result<Uploaded, Error> {
        self.put(cache, *id).await.map_err(|err| self.inner.counted(err))
    }

    async fn put(&self, cache: &Cache, id: ArtifactId) -> Result<Uploaded, Error> {
        let inner = &self.inner;
        let reader = {
            let cache = cache.clone();
            blocking(id, move || cache.get(&id)).await?
        };
        let fields = Fields::of(reader.metadata());
        let path = inner.object_path(&id);
        let exists = Uploaded { outcome: UploadOutcome::Exists, bytes_sent: 0 };
        let attributes = if inner.sidecar {
            // A backend without user metadata: the sidecar goes first, so that an object
            // that exists always has one.
            if inner.exists(id).await? {
                return Ok(exists);
            }
            let failed = |err| Error::from_store(&inner.url, "put", Some(id), id.to_string(), err);
            inner.stats.requests.fetch_add(1, Relaxed);
            let sidecar = PutPayload::from(fields.sidecar());
            inner.backend.put(&inner.sidecar_path(&id), sidecar).await.map_err(failed)?;
            Attributes::new()
        } else {
            fields.attributes()
        };

        let (stream, summary) = tarstream::send_stream(reader.path().to_owned());
        let mut stream = stream.with_guard(reader);
        let part_size = inner.options.part_size;
        let mut first = Vec::new();
        let mut buffered = 0;
        let mut ended = false;
        while buffered <= part_size {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    buffered += chunk.len();
                    first.push(chunk);
                }
                Some(Err(_)) | None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            inner.check_sent(id, &fields, summary.await)?;
            return inner.put_once(id, &path, first, attributes).await;
        }
        if !inner.sidecar && inner.exists(id).await? {
            return Ok(exists);
        }
        inner.put_parts(id, &path, first, stream, summary, &fields, attributes).await
    }
}

impl Inner {
    /// Whether the object of `id` exists (with its metadata).
    async fn exists(&self, id: ArtifactId) -> Result<bool, Error> {
        match self.head(id).await {
            Ok(_) => Ok(true),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The tree sent must be the one the cache recorded.
    fn check_sent(
        &self,
        id: ArtifactId,
        fields: &Fields,
        sent: Result<tarstream::Summary, tarstream::Error>,
    ) -> Result<(), Error> {
        let sent = sent.map_err(|err| Error::Send { id, source: Arc::new(err) })?;
        if sent.digest != fields.digest {
            tracing::warn!(expected = %fields.digest, actual = %sent.digest, "local artifact damaged; not uploaded");
            return Err(Error::LocalCorrupt {
                id,
                expected: Box::new(fields.digest),
                actual: Box::new(sent.digest),
            });
        }
        Ok(())
    }

    /// One conditional PUT of the whole stream.
    async fn put_once(
        &self,
        id: ArtifactId,
        path: &Path,
        chunks: Vec<Bytes>,
        attributes: Attributes,
    ) -> Result<Uploaded, Error> {
        let payload: PutPayload = chunks.into_iter().collect();
        let bytes = payload.content_length() as u64;
        let options = PutOptions { mode: PutMode::Create, attributes, ..PutOptions::default() };
        self.stats.requests.fetch_add(1, Relaxed);
        match self.backend.put_opts(path, payload, options).await {
            Ok(_) => {
                self.stats.bytes_up.fetch_add(bytes, Relaxed);
                tracing::debug!(bytes, "created");
                Ok(Uploaded { outcome: UploadOutcome::Created, bytes_sent: bytes })
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                tracing::debug!("exists already");
                Ok(Uploaded { outcome: UploadOutcome::Exists, bytes_sent: bytes })
            }
            Err(err) => {
                // A server may refuse the create (412) before it has read the body, and the
                // client then sees the connection break rather than the answer: look.
                let err = Error::from_store(&self.url, "put", Some(id), id.to_string(), err);
                if err.is_retryable() && matches!(self.exists(id).await, Ok(true)) {
                    tracing::debug!(error = %err, "exists already (the create was cut off)");
                    return Ok(Uploaded { outcome: UploadOutcome::Exists, bytes_sent: bytes });
                }
                Err(err)
            }
        }
    }

    /// A multipart upload: `first`, then the rest of `stream`, `parallelism` parts at once.
    #[allow(clippy::too_many_arguments)]
    async fn put_parts(
        &self,
        id: ArtifactId,
        path: &Path,
        first: Vec<Bytes>,
        mut stream: tarstream::SendStream,
        summary: tarstream::SummaryHandle,
        fields: &Fields,
        attributes: Attributes,
    ) -> Result<Uploaded, Error> {
        let failed = |err| Error::from_store(&self.url, "put", Some(id), id.to_string(), err);
        let options = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        self.stats.requests.fetch_add(1, Relaxed);
        let upload = self.backend.put_multipart_opts(path, options).await.map_err(failed)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.options.part_size);
        let mut bytes = 0u64;
        for chunk in first {
            bytes += chunk.len() as u64;
            writer.put(chunk);
        }
        let fed = loop {
            if let Err(err) = writer.wait_for_capacity(self.options.parallelism).await {
                break Err(failed(err));
            }
            match stream.next().await {
                Some(Ok(chunk)) => {
                    bytes += chunk.len() as u64;
                    writer.put(chunk);
                }
                Some(Err(_)) | None => break self.check_sent(id, fields, summary.await),
            }
        };
        let parts = bytes.div_ceil(self.options.part_size as u64);
        if let Err(err) = fed {
            tracing::debug!(error = %err, "multipart upload failed; aborting it");
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "cannot abort the multipart upload");
            }
            return Err(err);
        }
        let finished = writer.finish().await;
        self.stats.requests.fetch_add(parts + 1, Relaxed);
        finished.map_err(failed)?;
        self.stats.bytes_up.fetch_add(bytes, Relaxed);
        tracing::debug!(bytes, parts, "created in parts");
        Ok(Uploaded { outcome: UploadOutcome::Created, bytes_sent: bytes })
    }
}
