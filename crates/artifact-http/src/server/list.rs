//! `GET /artifacts` (JSON pages with a cursor, or all of it as NDJSON) and `GET /metrics`.

use std::{collections::BinaryHeap, io::Write};

use artifact_cache::{ArtifactId, Cache, Metadata};
use axum::{
    Json,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Access, App, Reject, metrics::Gauges};
use crate::{bridge, protocol::NDJSON_MEDIA_TYPE};

/// The page size when the client names none.
const DEFAULT_LIMIT: usize = 1000;
/// The largest page.
const MAX_LIMIT: usize = 10_000;

/// One page of the listing.
#[derive(Debug, Serialize)]
struct Page {
    /// The artifacts, in id order.
    artifacts: Vec<Metadata>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<ArtifactId>,
}

/// `GET /artifacts[?limit=N][&after=ID]`: a page of metadata in id order, or with
/// `Accept: application/x-ndjson`, every artifact as one JSON object per line, streamed.
pub(super) async fn list(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    app.authorize(&headers, Access::Read)?;
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains(NDJSON_MEDIA_TYPE));
    if ndjson {
        return Ok(stream_all(app.cache.clone()));
    }
    let (limit, after) = page_params(query.as_deref())?;
    let cache = app.cache.clone();
    let page = bridge::blocking(move || page(&cache, limit, after))
        .await
        .map_err(|err| Reject::internal("listing the cache", err))?;
    Ok(Json(page).into_response())
}

fn page_params(query: Option<&str>) -> Result<(usize, Option<ArtifactId>), Reject> {
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in query.unwrap_or("").split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Reject::BadRequest(format!("`limit` must be 1 to {MAX_LIMIT}"))
                    })?;
            }
            "after" => {
                after = Some(
                    value
                        .parse()
                        .map_err(|err| Reject::BadRequest(format!("bad `after` cursor: {err}")))?,
                );
            }
            _ => {}
        }
    }
    Ok((limit, after))
}

/// The `limit` smallest ids above `after`, with their metadata. Scans the directory once,
/// keeping at most `limit + 1` ids in memory.
fn page(
    cache: &Cache,
    limit: usize,
    after: Option<ArtifactId>,
) -> Result<Page, artifact_cache::Error> {
    let mut smallest = BinaryHeap::with_capacity(limit + 1);
    for id in cache.list()? {
        let id = id?;
        if after.is_some_and(|after| id <= after) {
            continue;
        }
        smallest.push(id);
        if smallest.len() > limit + 1 {
            smallest.pop();
        }
    }
    let mut ids = smallest.into_sorted_vec();
    let more = ids.len() > limit;
    ids.truncate(limit);
    let next = if more { ids.last().copied() } else { None };
    let artifacts = ids.iter().filter_map(|id| stat(cache, id)).collect();
    Ok(Page { artifacts, next })
}

/// Metadata of `id`, or `None` if it went away meanwhile (or is unreadable: logged).
fn stat(cache: &Cache, id: &ArtifactId) -> Option<Metadata> {
    match cache.stat(id) {
        Ok(meta) => Some(meta),
        Err(err) if err.is_not_found() => None,
        Err(err) => {
            tracing::warn!(id = %id, error = %err, "cannot read metadata; left out of the listing");
            None
        }
    }
}

/// Every artifact as NDJSON, produced on a blocking thread as the client reads.
fn stream_all(cache: Cache) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let mut line = Vec::with_capacity(512);
        let ids = match cache.list() {
            Ok(ids) => ids,
            Err(err) => return tracing::warn!(error = %err, "cannot list the cache"),
        };
        for id in ids {
            let Some(meta) = id.ok().and_then(|id| stat(&cache, &id)) else { continue };
            line.clear();
            serde_json::to_writer(&mut line, &meta).expect("metadata serialises");
            let _ = line.write_all(b"\n");
            if tx.blocking_send(Bytes::copy_from_slice(&line)).is_err() {
                return; // The client went away.
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON_MEDIA_TYPE))];
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}

/// The store's counters, when there is one.
pub(super) fn store_gauges(app: &App) -> Option<super::metrics::StoreGauges> {
    #[cfg(feature = "store")]
    if let Some(store) = &app.config.store {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = store.stats();
        return Some(super::metrics::StoreGauges {
            requests: stats.requests.load(Relaxed),
            bytes_down: stats.bytes_down.load(Relaxed),
            bytes_up: stats.bytes_up.load(Relaxed),
            errors: [
                ("retryable", stats.errors_retryable.load(Relaxed)),
                ("auth", stats.errors_auth.load(Relaxed)),
                ("corrupt", stats.errors_corrupt.load(Relaxed)),
                ("other", stats.errors_other.load(Relaxed)),
            ],
        });
    }
    let _ = app;
    None
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    app.authorize(&headers, Access::Read)?;
    let cache = app.cache.clone();
    let usage = match bridge::blocking(move || cache.usage()).await {
        Ok(usage) => Some(usage),
        Err(err) => {
            tracing::warn!(error = %err, "cannot measure the cache for /metrics");
            None
        }
    };
    let gauges = Gauges {
        active_streams: app.config.max_streams - app.streams.available_permits(),
        max_streams: app.config.max_streams,
        usage,
        evictions: Some(app.cache.evictions()),
        store: store_gauges(&app),
        small: app.small.as_ref().map(super::small::SmallStreams::gauges),
        scrub: app.config.scrub.as_ref().map(super::scrub::Scrubber::status),
    };
    let text = app.metrics.render(&gauges);
    let content_type = HeaderValue::from_static(super::metrics::CONTENT_TYPE);
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}
