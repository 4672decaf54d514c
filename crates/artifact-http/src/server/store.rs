//! Read-through and write-through to the object store of `ServerConfig::store` (feature
//! `store`).

use artifact_cache::{ArtifactId, ReadGuard};
use artifact_store::{Store, UploadOutcome};
use axum::http::StatusCode;

use super::{App, Reject, metrics::Metrics};

/// A local miss: fetches `id` from the store into the cache (one download however many
/// requests ask at once: the cache's single flight) and returns it read-locked.
pub(super) async fn read_through(
    app: &App,
    store: &Store,
    id: ArtifactId,
) -> Result<ReadGuard, Reject> {
    match store.download(&app.cache, &id).await {
        Ok(guard) => {
            Metrics::add(&app.metrics.store_fetches, 1);
            tracing::info!(
                store = store.url(),
                bytes = guard.metadata().size,
                "served through the store"
            );
            Ok(guard)
        }
        Err(err) if err.is_not_found() => Err(Reject::NotFound(id)),
        Err(err) => Err(reject(app, id, "fetch from", err)),
    }
}

/// A committed upload (or one the cache had): puts it in the store before the client is
/// answered. The local copy stays whatever the store says.
pub(super) async fn write_through(app: &App, store: &Store, id: ArtifactId) -> Result<(), Reject> {
    match store.upload(&app.cache, &id).await {
        Ok(uploaded) => {
            if uploaded.outcome == UploadOutcome::Created {
                Metrics::add(&app.metrics.store_uploads, 1);
            }
            tracing::info!(store = store.url(), outcome = ?uploaded.outcome, "written through to the store");
            Ok(())
        }
        Err(err) => Err(reject(app, id, "upload to", err)),
    }
}

/// 503 (with `Retry-After`) while the store is down or slow, 507 when the local disk is full,
/// 502 for the rest (refused credentials, a corrupt object, a local cache failure).
fn reject(app: &App, id: ArtifactId, op: &'static str, err: artifact_store::Error) -> Reject {
    let disk_full =
        matches!(&err, artifact_store::Error::Cache { source, .. } if source.is_disk_full());
    let status = if disk_full {
        StatusCode::INSUFFICIENT_STORAGE
    } else if err.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    Reject::Store {
        id,
        op,
        status,
        retry_after: (status == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| app.config.retry_after_secs()),
        reason: err.to_string(),
        source: err,
    }
}
