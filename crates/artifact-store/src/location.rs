//! Store URLs: `s3://BUCKET[/PREFIX]`, `gs://…`, `az://…` and `file:///DIR`, turned into an
//! `object_store` backend and a key prefix.

use std::sync::Arc;

use object_store::{ObjectStore, path::Path};

use crate::{Error, StoreOptions};

/// A parsed store URL, built into a backend.
pub(crate) struct Location {
    /// The backend.
    pub(crate) backend: Arc<dyn ObjectStore>,
    /// The key prefix under which the artifacts live (may be empty).
    pub(crate) prefix: Path,
    /// Whether the backend keeps no user metadata with an object (a local directory): the
    /// artifact metadata then lives in a small sidecar object next to it.
    pub(crate) sidecar: bool,
}

/// Builds the backend named by `url`, configured from the environment and `options`.
pub(crate) fn open(url: &str, options: &StoreOptions) -> Result<Location, Error> {
    let invalid = |reason| Error::InvalidUrl { url: url.to_owned(), reason };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("expected SCHEME://…"))?;
    if scheme == "file" {
        let dir = rest.trim_end_matches('/');
        if !dir.starts_with('/') {
            return Err(invalid("a file URL needs an absolute path: file:///DIR"));
        }
        let dir = if dir.is_empty() { "/" } else { dir };
        let backend = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|err| config(url, err))?;
        return Ok(Location { backend: Arc::new(backend), prefix: Path::default(), sidecar: true });
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid("expected SCHEME://BUCKET[/PREFIX]"));
    }
    let prefix = Path::parse(prefix.trim_matches('/'))
        .map_err(|_| invalid("the prefix is not a valid object key prefix"))?;
    let backend = backend(url, scheme, bucket, options)?;
    Ok(Location { backend, prefix, sidecar: false })
}

/// The cloud backend for `scheme`, if its feature is on.
#[allow(unused_variables)]
fn backend(
    url: &str,
    scheme: &str,
    bucket: &str,
    options: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>, Error> {
    let invalid = |reason| Error::InvalidUrl { url: url.to_owned(), reason };
    match scheme {
        #[cfg(feature = "s3")]
        "s3" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry(options));
            for (key, value) in settings(options) {
                builder = builder.with_config(key.parse().map_err(|err| config(url, err))?, value);
            }
            let store = builder.build().map_err(|err| config(url, err))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "gcs")]
        "gs" => {
            let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry(options));
            for (key, value) in settings(options) {
                builder = builder.with_config(key.parse().map_err(|err| config(url, err))?, value);
            }
            let store = builder.build().map_err(|err| config(url, err))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "azure")]
        "az" => {
            let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry(options));
            for (key, value) in settings(options) {
                builder = builder.with_config(key.parse().map_err(|err| config(url, err))?, value);
            }
            let store = builder.build().map_err(|err| config(url, err))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "s3"))]
        "s3" => Err(invalid("s3:// support is not built in (crate feature `s3`)")),
        #[cfg(not(feature = "gcs"))]
        "gs" => Err(invalid("gs:// support is not built in (crate feature `gcs`)")),
        #[cfg(not(feature = "azure"))]
        "az" => Err(invalid("az:// support is not built in (crate feature `azure`)")),
        _ => Err(invalid("unknown scheme (expected s3, gs, az or file)")),
    }
}

/// `object_store`'s per-request retries: each request (a part, a range) is retried on its own.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry(options: &StoreOptions) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: options.retry_backoff,
            max_backoff: options.retry_backoff * 64,
            base: 2.0,
        },
        max_retries: options.retries as usize,
        retry_timeout: options.retry_timeout,
    }
}

/// The timeouts as client configuration keys (setting `ClientOptions` instead would replace
/// what the environment set, such as `AWS_ALLOW_HTTP`), then `StoreOptions::config`.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn settings(options: &StoreOptions) -> Vec<(&str, String)> {
    let mut settings = vec![
        ("connect_timeout", format!("{}ms", options.connect_timeout.as_millis())),
        ("timeout", format!("{}ms", options.request_timeout.as_millis())),
    ];
    settings.extend(options.config.iter().map(|(key, value)| (key.as_str(), value.clone())));
    settings
}

fn config(url: &str, err: object_store::Error) -> Error {
    Error::Config { url: url.to_owned(), source: Arc::new(err) }
}
