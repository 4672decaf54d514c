//! The operator's view: `GET /status` (JSON) and `GET /` (the same as an HTML page that
//! refreshes itself), from the cache, the counters, the transfers in flight, the store, the
//! recent warnings and, where a [`JobsSource`] is mounted, the transfer jobs.

mod activity;
mod html;

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use axum::{
    Extension, Json,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

pub(crate) use activity::{Activity, TransferGuard, Warned};
use activity::{TransferView, Warning};

use super::{Access, App, Reject, metrics::StoreGauges};
use crate::bridge;

/// How many unfinished jobs the status page asks a [`JobsSource`] for, per state.
pub const STATUS_JOBS_LISTED: usize = 20;

/// Transfer jobs as the status page shows them: counts by state, the unfinished jobs and the
/// endpoints they talk to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobsStatus {
    /// Jobs by state (`queued`, `running`, `retrying`, `succeeded`, `failed`, `cancelled`).
    pub by_state: BTreeMap<String, u64>,
    /// Unfinished jobs (running first, then retrying, then queued), each with a link to its
    /// detail at `jobs/{job}`.
    pub active: Vec<JobSummary>,
    /// The endpoints (peers) jobs have used, with what moved and their last error.
    pub endpoints: Vec<EndpointStatus>,
}

/// One job in [`JobsStatus::active`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    /// The job number.
    pub job: i64,
    /// `pull` or `push`.
    pub action: String,
    /// The artifact id.
    pub id: String,
    /// Its state.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Body bytes moved.
    pub bytes: u64,
    /// The endpoint of the last attempt.
    pub endpoint: Option<String>,
    /// The last error.
    pub error: Option<String>,
}

/// One endpoint in [`JobsStatus::endpoints`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStatus {
    /// The endpoint's URL (or the set of them a job was given).
    pub endpoint: String,
    /// Body bytes moved through it.
    pub bytes: u64,
    /// Transfers by outcome (`succeeded`, `retried`, `failed`, `cancelled`).
    pub transfers: BTreeMap<String, u64>,
    /// Its last failure.
    pub last_error: Option<String>,
}

/// The future [`JobsSource::jobs_status`] returns.
pub type JobsStatusFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<JobsStatus, Box<dyn std::error::Error + Send + Sync>>>
            + Send
            + 'a,
    >,
>;

/// Something that runs transfer jobs next to the server (the `artifact-jobs` scheduler), for
/// the status page. Put an `Arc<dyn JobsSource>` in the request extensions (a layer around
/// [`router`](crate::router) does) and `/status` and `/` show the jobs.
///
/// ```
/// use artifact_http::{JobsSource, JobsStatus, JobsStatusFuture};
///
/// struct NoJobs;
///
/// impl JobsSource for NoJobs {
///     fn jobs_status(&self, _listed: usize) -> JobsStatusFuture<'_> {
///         Box::pin(async { Ok(JobsStatus::default()) })
///     }
/// }
///
/// let source: std::sync::Arc<dyn JobsSource> = std::sync::Arc::new(NoJobs);
/// let app = artifact_http::router(
///     artifact_cache::Cache::open(tempfile::tempdir()?.path())?,
///     artifact_http::ServerConfig::default(),
/// )
/// .layer(axum::Extension(source));
/// # drop(app);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait JobsSource: Send + Sync + 'static {
    /// The jobs by state, at most `listed` unfinished jobs of each state, and the endpoints.
    fn jobs_status(&self, listed: usize) -> JobsStatusFuture<'_>;
}

/// The answer of `GET /status`.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub(crate) version: &'static str,
    pub(crate) uptime_secs: u64,
    pub(crate) cache: CacheStatus,
    pub(crate) traffic: Traffic,
    pub(crate) transfers: Transfers,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jobs: Option<JobsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<StoreStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scrub: Option<super::scrub::ScrubStatus>,
    pub(crate) warnings: Vec<Warning>,
}

/// The cache against its bounds.
#[derive(Debug, Serialize)]
pub(crate) struct CacheStatus {
    pub(crate) root: String,
    /// Bytes of file content (absent if the cache could not be measured).
    pub(crate) bytes: Option<u64>,
    pub(crate) artifacts: Option<u64>,
    /// `--max-size`; absent when unbounded.
    pub(crate) max_bytes: Option<u64>,
    /// `bytes` as a share of `max_bytes`, 0 to 1.
    pub(crate) used: Option<f64>,
    /// The free-space floor; 0 when none.
    pub(crate) min_free_bytes: u64,
    /// Free space on the cache's file system.
    pub(crate) free_bytes: Option<u64>,
    pub(crate) evictions: u64,
    /// Why the cache could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Requests and bytes since the server started.
#[derive(Debug, Serialize)]
pub(crate) struct Traffic {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// `hits / (hits + misses)`; absent before the first.
    pub(crate) hit_rate: Option<f64>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) uploads: u64,
    pub(crate) uploads_rejected: u64,
    pub(crate) streams_refused: u64,
}

/// Transfers in flight.
#[derive(Debug, Serialize)]
pub(crate) struct Transfers {
    pub(crate) active_streams: usize,
    pub(crate) max_streams: usize,
    /// All transfers in flight (`list` shows at most 100).
    pub(crate) count: usize,
    pub(crate) list: Vec<TransferView>,
}

/// The jobs, or why they could not be read.
#[derive(Debug, Serialize)]
pub(crate) struct JobsView {
    #[serde(flatten)]
    pub(crate) status: JobsStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The object store behind the cache.
#[derive(Debug, Serialize)]
pub(crate) struct StoreStatus {
    pub(crate) url: String,
    #[serde(flatten)]
    pub(crate) counters: StoreGauges,
    pub(crate) last_error: Option<Warning>,
}

/// What the status handlers gather.
async fn gather(app: &App, jobs: Option<Arc<dyn JobsSource>>) -> Status {
    let cache = app.cache.clone();
    let measured = bridge::blocking(move || {
        Ok::<_, artifact_cache::Error>((cache.usage()?, cache.free_bytes().ok()))
    })
    .await;
    let (usage, free_bytes, error) = match measured {
        Ok((usage, free)) => (Some(usage), free, None),
        Err(err) => (None, None, Some(crate::error::error_chain(&err))),
    };
    let options = app.cache.options();
    let max_bytes = options.get_max_bytes();
    let metrics = &app.metrics;
    let (hits, misses) = (metrics.hits.get(), metrics.misses.get());
    let (list, count) = app.activity.transfers();
    let jobs = match jobs {
        Some(source) => Some(match source.jobs_status(STATUS_JOBS_LISTED).await {
            Ok(status) => JobsView { status, error: None },
            Err(err) => JobsView {
                status: JobsStatus::default(),
                error: Some(crate::error::error_chain(&*err)),
            },
        }),
        None => None,
    };
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: app.started.elapsed().as_secs(),
        cache: CacheStatus {
            root: app.cache.root().display().to_string(),
            bytes: usage.map(|u| u.bytes),
            artifacts: usage.map(|u| u.artifacts),
            max_bytes,
            used: usage.zip(max_bytes).map(|(u, max)| u.bytes as f64 / max.max(1) as f64),
            min_free_bytes: options.get_min_free_bytes(),
            free_bytes,
            evictions: app.cache.evictions(),
            error,
        },
        traffic: Traffic {
            hits,
            misses,
            hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            bytes_in: metrics.bytes_received.get(),
            bytes_out: metrics.bytes_sent.get(),
            uploads: metrics.uploads.get(),
            uploads_rejected: metrics.uploads_rejected.get(),
            streams_refused: metrics.streams_refused.get(),
        },
        transfers: Transfers {
            active_streams: app.config.max_streams - app.streams.available_permits(),
            max_streams: app.config.max_streams,
            count,
            list,
        },
        jobs,
        store: store_status(app),
        scrub: app.config.scrub.as_ref().map(super::scrub::Scrubber::status),
        warnings: app.activity.warnings(),
    }
}

fn store_status(app: &App) -> Option<StoreStatus> {
    #[cfg(feature = "store")]
    if let Some(store) = &app.config.store {
        return Some(StoreStatus {
            url: store.url().to_string(),
            counters: super::list::store_gauges(app).unwrap_or_default(),
            last_error: app.activity.store_error(),
        });
    }
    let _ = app;
    None
}

/// The jobs source a layer put in the request extensions, if any.
type Jobs = Option<Extension<Arc<dyn JobsSource>>>;

/// `GET /status`: the operator's view as JSON.
pub(super) async fn json(
    State(app): State<App>,
    jobs: Jobs,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    app.authorize(&headers, Access::Read)?;
    let status = gather(&app, jobs.map(|Extension(jobs)| jobs)).await;
    Ok(Json(status).into_response())
}

/// `GET /`: the operator's view as an HTML page.
pub(super) async fn page(
    State(app): State<App>,
    jobs: Jobs,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    app.authorize(&headers, Access::Read)?;
    let status = gather(&app, jobs.map(|Extension(jobs)| jobs)).await;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, html::render(&status)).into_response())
}
