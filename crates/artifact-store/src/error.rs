//! [`Error`]: everything that can go wrong between a cache and an object store, with the
//! artifact, the store and the operation it concerns.

use std::sync::Arc;

use artifact_cache::ArtifactId;
use tarstream::Digest;

/// An error from a [`Store`](crate::Store) operation.
///
/// Errors are cheap to clone (their sources are shared), so that the callers waiting on one
/// shared download can all report its failure.
///
/// Predicates classify them, as for HTTP peers: [`is_retryable`](Error::is_retryable) (another
/// try may succeed: the store was down, slow or cut the transfer), [`is_not_found`](Error::is_not_found),
/// [`is_auth`](Error::is_auth) (missing or rejected credentials), [`is_corrupt`](Error::is_corrupt)
/// (the object is not the artifact its metadata describes), and [`is_remote`](Error::is_remote)
/// (a failure of the store, which a build system may treat as a cache miss, as against a local one).
///
/// ```
/// let err = artifact_store::Store::open("ftp://host/dir").unwrap_err();
/// assert!(!err.is_retryable());
/// assert!(err.to_string().starts_with("invalid store URL"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store URL that cannot be used (unknown scheme, missing bucket, a scheme whose feature
    /// is off).
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store could not be set up from the URL and the environment (for example a region
    /// or endpoint that does not parse).
    #[error("cannot configure store {url}")]
    Config {
        /// The store URL.
        url: String,
        /// What `object_store` said.
        #[source]
        source: Arc<object_store::Error>,
    },
    /// The store holds no object for this artifact.
    #[error("artifact {id} not found in {store}")]
    NotFound {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        store: String,
    },
    /// The bucket (or the directory) does not exist.
    #[error("bucket of {store} not found")]
    NoBucket {
        /// The store URL.
        store: String,
        /// What `object_store` said.
        #[source]
        source: Arc<object_store::Error>,
    },
    /// The store refused the credentials, or there were none.
    #[error("{store} refused the credentials for {op}")]
    Auth {
        /// The store URL.
        store: String,
        /// The operation (`get`, `put`, `head`, `list`, `delete`).
        op: &'static str,
        /// What `object_store` said.
        #[source]
        source: Arc<object_store::Error>,
    },
    /// A request to the store failed (after `object_store`'s own retries): a connection
    /// refused or cut, a 5xx, a timeout.
    #[error("{op} of {what} on {store} failed")]
    Request {
        /// The store URL.
        store: String,
        /// The operation (`get`, `put`, `head`, `list`, `delete`).
        op: &'static str,
        /// The artifact, or what else was asked for.
        what: String,
        /// What `object_store` said.
        #[source]
        source: Arc<object_store::Error>,
    },
    /// The object changed while it was being read in parts (another writer replaced it).
    #[error("artifact {id} changed in {store} during the download")]
    Changed {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        store: String,
    },
    /// The object has no usable artifact metadata (digest, size, file count).
    #[error("object of artifact {id} in {store} has bad metadata: {reason}")]
    BadMetadata {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        store: String,
        /// What is missing or malformed.
        reason: String,
    },
    /// The object is not a valid tar stream (malformed, truncated, unsafe, over a limit);
    /// nothing was kept.
    #[error("object of artifact {id} in {store} is not a valid tar stream")]
    Stream {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        store: String,
        /// What tarstream found.
        #[source]
        source: Arc<tarstream::Error>,
    },
    /// The tree in the object does not have the digest in its metadata; nothing was kept.
    #[error(
        "object of artifact {id} in {store} has tree digest {actual}, but its metadata says {expected}"
    )]
    Corrupt {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        store: String,
        /// The digest in the object's metadata.
        expected: Box<Digest>,
        /// The digest of what was received.
        actual: Box<Digest>,
    },
    /// The local artifact being uploaded does not match its own recorded digest (it was
    /// damaged on disk); nothing was stored.
    #[error(
        "local artifact {id} has tree digest {actual}, but {expected} was recorded; not uploaded"
    )]
    LocalCorrupt {
        /// The artifact.
        id: ArtifactId,
        /// The digest recorded in the local cache.
        expected: Box<Digest>,
        /// The digest of what was sent.
        actual: Box<Digest>,
    },
    /// Reading the local artifact failed while it was being sent.
    #[error("cannot send local artifact {id}")]
    Send {
        /// The artifact.
        id: ArtifactId,
        /// What tarstream found.
        #[source]
        source: Arc<tarstream::Error>,
    },
    /// The local cache failed (locks, disk, a missing local artifact to upload).
    #[error("local cache failed for artifact {id}")]
    Cache {
        /// The artifact.
        id: ArtifactId,
        /// What the cache said.
        #[source]
        source: Arc<artifact_cache::Error>,
    },
}

impl Error {
    /// Whether another try (later, or against another source) may succeed: the store was
    /// unreachable, failed, timed out, cut a transfer or changed the object under us.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Request { .. } | Error::Changed { .. } => true,
            Error::Cache { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// Whether the store holds no object for the artifact (or the local artifact to upload is
    /// absent).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Cache { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// Whether the store refused the credentials (or there were none).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    /// Whether the object in the store is damaged: not a valid tar stream, not the tree its
    /// metadata describes, or without usable metadata.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::Stream { .. } | Error::BadMetadata { .. })
    }

    /// Whether this is a failure of the store (absent, refused, unreachable, corrupt), which a
    /// build system may treat as a cache miss, as against a local one (the local cache, a bad
    /// URL or configuration).
    pub fn is_remote(&self) -> bool {
        !matches!(
            self,
            Error::InvalidUrl { .. }
                | Error::Config { .. }
                | Error::Cache { .. }
                | Error::LocalCorrupt { .. }
                | Error::Send { .. }
        )
    }

    /// Classifies an `object_store` error from `op` on `what` (an id, or a key).
    pub(crate) fn from_store(
        store: &str,
        op: &'static str,
        id: Option<ArtifactId>,
        what: String,
        err: object_store::Error,
    ) -> Error {
        let store = store.to_owned();
        match err {
            object_store::Error::NotFound { .. } => match id {
                Some(id) => Error::NotFound { id, store },
                None => Error::NoBucket { store, source: Arc::new(err) },
            },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                Error::Auth { store, op, source: Arc::new(err) }
            }
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. }
                if id.is_some() =>
            {
                Error::Changed { id: id.expect("checked above"), store }
            }
            other => Error::Request { store, op, what, source: Arc::new(other) },
        }
    }
}
