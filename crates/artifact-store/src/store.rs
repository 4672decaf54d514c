//! [`Store`]: one object store (a bucket and a prefix), its options, its counters, and the
//! small operations (`head`, `delete`, `list`, `check`).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use artifact_cache::ArtifactId;
use futures_util::TryStreamExt;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, path::Path};

use crate::{Error, ObjectInfo, location, meta::Fields};

/// Tuning of a [`Store`]; the defaults suit S3 over a data-centre network.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Size of one part of a multipart upload and of one ranged GET (default 8 MiB; S3 wants
    /// at least 5 MiB for every upload part but the last).
    pub part_size: usize,
    /// Parts transferred at once by one upload or download (default 4). A download holds at
    /// most `part_size * parallelism` of the object in memory: the part being unpacked streams
    /// through as it arrives, and the parts fetched ahead of it wait whole. An upload holds
    /// about `part_size * (parallelism + 1)`: the parts being sent and the one being filled.
    pub parallelism: usize,
    /// Tries of one failed request beyond the first, each part on its own (default 4).
    pub retries: u32,
    /// Backoff before the first retry, doubled for each further one (default 100 ms).
    pub retry_backoff: Duration,
    /// Time after which a request is not retried any more (default 3 minutes).
    pub retry_timeout: Duration,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Limit on one request, a part included (default 60 s).
    pub request_timeout: Duration,
    /// Limits on what a download may unpack.
    pub receive: tarstream::ReceiveOptions,
    /// Backend settings applied over the environment's, as `object_store` configuration keys
    /// (for S3: `aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`, `aws_region`,
    /// `aws_allow_http`, …). Empty by default.
    pub config: Vec<(String, String)>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            part_size: 8 * 1024 * 1024,
            parallelism: 4,
            retries: 4,
            retry_backoff: Duration::from_millis(100),
            retry_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            receive: tarstream::ReceiveOptions::default(),
            config: Vec::new(),
        }
    }
}

/// Counters of what a [`Store`] did, for `/metrics` and for tests.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Requests sent (each part, range, head, list page and delete counts one).
    pub requests: AtomicU64,
    /// Object bytes received.
    pub bytes_down: AtomicU64,
    /// Object bytes sent.
    pub bytes_up: AtomicU64,
    /// Failed operations whose error [`is_retryable`](Error::is_retryable).
    pub errors_retryable: AtomicU64,
    /// Failed operations whose error [`is_auth`](Error::is_auth).
    pub errors_auth: AtomicU64,
    /// Failed operations whose error [`is_corrupt`](Error::is_corrupt).
    pub errors_corrupt: AtomicU64,
    /// Other failed operations (not found is not counted: it is a miss).
    pub errors_other: AtomicU64,
    /// Ranged GETs of one download being fetched or waiting to be unpacked right now.
    pub parts_in_flight: AtomicUsize,
    /// The most `parts_in_flight` ever seen.
    pub peak_parts_in_flight: AtomicUsize,
}

impl Stats {
    pub(crate) fn count(&self, err: &Error) {
        let counter = if err.is_not_found() {
            return;
        } else if err.is_retryable() {
            &self.errors_retryable
        } else if err.is_auth() {
            &self.errors_auth
        } else if err.is_corrupt() {
            &self.errors_corrupt
        } else {
            &self.errors_other
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn part_started(&self) {
        let now = self.parts_in_flight.fetch_add(1, Relaxed) + 1;
        self.peak_parts_in_flight.fetch_max(now, Relaxed);
    }

    pub(crate) fn part_done(&self) {
        self.parts_in_flight.fetch_sub(1, Relaxed);
    }
}

/// The shared tier: artifacts as tar objects `PREFIX/ID.tar` in one object store.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`. See the [crate docs](crate) for an
/// example.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) url: String,
    pub(crate) backend: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) sidecar: bool,
    pub(crate) options: StoreOptions,
    pub(crate) stats: Stats,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store named by `url` with default options: `s3://BUCKET[/PREFIX]` (feature
    /// `s3`; credentials, region and endpoint from the `AWS_*` environment), `gs://BUCKET[/PREFIX]`
    /// (feature `gcs`), `az://CONTAINER[/PREFIX]` (feature `azure`), or `file:///DIR`.
    ///
    /// Nothing is sent: a bad URL or configuration fails here, a missing bucket or bad
    /// credentials at the first request (or at [`check`](Store::check)).
    pub fn open(url: &str) -> Result<Store, Error> {
        Store::open_with(url, StoreOptions::default())
    }

    /// Opens the store named by `url` with `options`.
    pub fn open_with(url: &str, options: StoreOptions) -> Result<Store, Error> {
        let location = location::open(url, &options)?;
        Ok(Store::new(url, location.backend, location.prefix, location.sidecar, options))
    }

    /// A store over a backend built by the caller (an `InMemory` one, say, or one with its own
    /// configuration), keeping artifacts under `prefix`. `url` only names it in errors and
    /// logs. The backend must keep user metadata (attributes) with its objects.
    pub fn from_backend(
        url: impl Into<String>,
        backend: Arc<dyn ObjectStore>,
        prefix: &str,
        options: StoreOptions,
    ) -> Result<Store, Error> {
        let url = url.into();
        let prefix = Path::parse(prefix.trim_matches('/')).map_err(|_| Error::InvalidUrl {
            url: url.clone(),
            reason: "the prefix is not a valid object key prefix",
        })?;
        Ok(Store::new(&url, backend, prefix, false, options))
    }

    fn new(
        url: &str,
        backend: Arc<dyn ObjectStore>,
        prefix: Path,
        sidecar: bool,
        options: StoreOptions,
    ) -> Store {
        let mut options = options;
        options.part_size = options.part_size.max(1);
        options.parallelism = options.parallelism.max(1);
        Store {
            inner: Arc::new(Inner {
                url: url.trim_end_matches('/').to_owned(),
                backend,
                prefix,
                sidecar,
                options,
                stats: Stats::default(),
            }),
        }
    }

    /// The URL the store was opened with (without a trailing slash).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Its options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The key of an artifact's object: `PREFIX/ID.tar`.
    pub fn key(&self, id: &ArtifactId) -> String {
        self.inner.object_path(id).to_string()
    }

    /// What the store holds for `id`: its metadata, or `None` if there is no object.
    #[tracing::instrument(name = "store_head", skip_all, fields(id = %id, store = %self.inner.url), err(level = "debug"))]
    pub async fn head(&self, id: &ArtifactId) -> Result<Option<ObjectInfo>, Error> {
        match self.inner.head(*id).await {
            Ok(info) => Ok(Some(info)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(self.inner.counted(err)),
        }
    }

    /// Deletes the object of `id` (nothing happens if there is none).
    #[tracing::instrument(name = "store_delete", skip_all, fields(id = %id, store = %self.inner.url), err(level = "debug"))]
    pub async fn delete(&self, id: &ArtifactId) -> Result<(), Error> {
        let inner = &self.inner;
        let mut paths = vec![inner.object_path(id)];
        if inner.sidecar {
            paths.push(inner.sidecar_path(id));
        }
        for path in paths {
            inner.stats.requests.fetch_add(1, Relaxed);
            match inner.backend.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => {
                    let err =
                        Error::from_store(&inner.url, "delete", Some(*id), id.to_string(), err);
                    return Err(inner.counted(err));
                }
            }
        }
        Ok(())
    }

    /// The ids of the artifacts in the store, sorted (objects that are not `ID.tar` directly
    /// under the prefix are skipped).
    #[tracing::instrument(name = "store_list", skip_all, fields(store = %self.inner.url), err(level = "debug"))]
    pub async fn list(&self) -> Result<Vec<ArtifactId>, Error> {
        let inner = &self.inner;
        let prefix = (!inner.prefix.as_ref().is_empty()).then_some(&inner.prefix);
        inner.stats.requests.fetch_add(1, Relaxed);
        let listing = match inner.backend.list_with_delimiter(prefix).await {
            Ok(listing) => listing,
            Err(err) => return Err(inner.counted(inner.list_failure(err).await)),
        };
        let mut ids: Vec<ArtifactId> = listing
            .objects
            .iter()
            .filter_map(|object| object.location.filename()?.strip_suffix(".tar")?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Checks that the bucket is reachable and the credentials accepted (one listing request
    /// of at most one page), for a server's start-up.
    #[tracing::instrument(name = "store_check", skip_all, fields(store = %self.inner.url), err(level = "debug"))]
    pub async fn check(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let probe = inner.prefix.clone().join(".artifact-probe");
        inner.stats.requests.fetch_add(1, Relaxed);
        let first = inner.backend.list(Some(&probe)).try_next().await;
        match first {
            Ok(_) => Ok(()),
            Err(err) => Err(inner.counted(inner.list_failure(err).await)),
        }
    }
}

impl Inner {
    pub(crate) fn object_path(&self, id: &ArtifactId) -> Path {
        self.prefix.clone().join(format!("{id}.tar"))
    }

    pub(crate) fn sidecar_path(&self, id: &ArtifactId) -> Path {
        self.prefix.clone().join(format!("{id}.tar.meta"))
    }

    /// Classifies a failed listing. `object_store` reports every listing failure as a generic
    /// one, without its status; a HEAD of a key that does not exist tells refused credentials
    /// (401, 403) and a missing bucket (404) apart from the rest.
    async fn list_failure(&self, err: object_store::Error) -> Error {
        let what = self.prefix.to_string();
        if !matches!(err, object_store::Error::Generic { .. }) {
            return Error::from_store(&self.url, "list", None, what, err);
        }
        let probe = self.prefix.clone().join(".artifact-probe");
        self.stats.requests.fetch_add(1, Relaxed);
        match self.backend.head(&probe).await {
            Err(
                head @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }),
            ) => Error::from_store(&self.url, "list", None, what, head),
            _ => Error::from_store(&self.url, "list", None, what, err),
        }
    }

    pub(crate) fn counted(&self, err: Error) -> Error {
        self.stats.count(&err);
        err
    }

    /// The object's metadata (not counted as an error when absent).
    pub(crate) async fn head(&self, id: ArtifactId) -> Result<ObjectInfo, Error> {
        let path = self.object_path(&id);
        let failed = |err| Error::from_store(&self.url, "head", Some(id), id.to_string(), err);
        self.stats.requests.fetch_add(1, Relaxed);
        let options = GetOptions { head: true, ..GetOptions::default() };
        let got = self.backend.get_opts(&path, options).await.map_err(failed)?;
        let fields = if self.sidecar {
            self.read_sidecar(id).await?
        } else {
            Fields::from_attributes(id, &self.url, &got.attributes)?
        };
        Ok(fields.info(id, got.meta.size, got.meta.e_tag))
    }

    pub(crate) async fn read_sidecar(&self, id: ArtifactId) -> Result<Fields, Error> {
        let failed = |err| Error::from_store(&self.url, "get", Some(id), id.to_string(), err);
        self.stats.requests.fetch_add(1, Relaxed);
        let got = self.backend.get(&self.sidecar_path(&id)).await.map_err(failed)?;
        let text = got.bytes().await.map_err(failed)?;
        Fields::from_sidecar(id, &self.url, &text)
    }
}
