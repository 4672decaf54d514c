//! The HTTP API: [`Jobs::router`] serves `POST /jobs`, `GET /jobs`, `GET /jobs/{job}` and
//! `DELETE /jobs/{job}`, with JSON bodies and the bearer-token rules of the artifact server.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use artifact_cache::ArtifactId;
use artifact_http::JobsSource;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::future::{BoxFuture, Either};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{Action, Error, Job, JobId, Jobs, LogEntry, NewJob, State, job::from_millis};

/// The page size of `GET /jobs` when the client names none.
const DEFAULT_LIMIT: usize = 1000;
/// The largest page.
const MAX_LIMIT: usize = 10_000;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
enum Reject {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid token is required")]
    Unauthorized,
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("job {job} has ended ({state})")]
    Ended { job: JobId, state: State },
    #[error("the job queue is full ({max} active jobs); try again later")]
    Full { max: usize, retry_after: u64 },
    #[error("the job scheduler is shutting down")]
    ShuttingDown,
    #[error("internal error")]
    Internal(#[source] Error),
}

impl From<Error> for Reject {
    fn from(err: Error) -> Reject {
        match err {
            Error::NotFound { job } => Reject::NotFound(job),
            Error::IllegalTransition { job, from, .. } => Reject::Ended { job, state: from },
            Error::QueueFull { max } => Reject::Full { max, retry_after: 0 },
            Error::ShutDown => Reject::ShuttingDown,
            other => Reject::Internal(other),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let status = match &self {
            Reject::BadRequest(_) => StatusCode::BAD_REQUEST,
            Reject::Unauthorized => StatusCode::UNAUTHORIZED,
            Reject::NotFound(_) => StatusCode::NOT_FOUND,
            Reject::Ended { .. } => StatusCode::CONFLICT,
            Reject::Full { .. } | Reject::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match &self {
            Reject::Internal(err) => warn!(error = %err, "job request failed"),
            _ => info!(status = status.as_u16(), reason = %self, "job request refused"),
        }
        let mut response =
            (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if let Reject::Full { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            // As the artifact server answers: Bearer for programs, Basic for browsers.
            for challenge in artifact_http::protocol::AUTH_CHALLENGES {
                let value = HeaderValue::from_static(challenge);
                response.headers_mut().append(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The body of `POST /jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    action: String,
    ids: Vec<String>,
    #[serde(default)]
    from: Option<Vec<String>>,
    #[serde(default)]
    to: Option<Vec<String>>,
    #[serde(default)]
    priority: i64,
}

/// One entry of the answer to `POST /jobs`.
#[derive(Debug, Serialize)]
struct Submitted {
    job: JobId,
    id: ArtifactId,
    state: State,
}

/// A job as `GET /jobs/{job}` shows it.
#[derive(Debug, Serialize)]
struct JobView {
    job: JobId,
    action: Action,
    id: ArtifactId,
    endpoints: Vec<String>,
    priority: i64,
    state: State,
    attempts: u32,
    bytes: u64,
    endpoint: Option<String>,
    error: Option<String>,
    created: String,
    updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<String>,
    log: Vec<LogView>,
}

#[derive(Debug, Serialize)]
struct LogView {
    at: String,
    state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl From<Job> for JobView {
    fn from(job: Job) -> JobView {
        JobView {
            job: job.job,
            action: job.action,
            id: job.id,
            endpoints: job.endpoints,
            priority: job.priority,
            state: job.state,
            attempts: job.attempts,
            bytes: job.bytes,
            endpoint: job.endpoint,
            error: job.error,
            created: timestamp(job.created),
            updated: timestamp(job.updated),
            due: job.due.map(timestamp),
            log: job
                .log
                .into_iter()
                .map(|LogEntry { at, state, note }| LogView {
                    at: timestamp(from_millis(at)),
                    state,
                    note,
                })
                .collect(),
        }
    }
}

/// One page of `GET /jobs`.
#[derive(Debug, Serialize)]
struct Page {
    jobs: Vec<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<JobId>,
}

impl Jobs {
    /// The axum [`Router`] of the job API, to merge into the artifact server's:
    ///
    /// | request | answer |
    /// |---|---|
    /// | `POST /jobs` `{"action": "pull", "ids": [...], "from": [...]}` or `{"action": "push", "ids": [...], "to": [...]}`, optional `"priority"` | 202 `{"jobs": [{"job", "id", "state"}...]}`; 400 naming the bad field; 503 + `Retry-After` when the queue is full |
    /// | `GET /jobs[?state=S][&limit=N][&after=JOB]` | a page `{"jobs": [...], "next": JOB}` |
    /// | `GET /jobs/{job}` | the job; 404 |
    /// | `DELETE /jobs/{job}` | 204 cancelled; 409 once ended; 404 |
    ///
    /// Submitting and cancelling need [`JobsConfig::token`](crate::JobsConfig::token) if one
    /// is set, reading too with `token_for_reads`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/jobs", get(list).post(submit))
            .route("/jobs/{job}", get(show).delete(cancel))
            .with_state(self.clone())
    }

    /// Wraps `app` so that its successful `GET /metrics` answers end with the job lines of
    /// [`Jobs::metrics`] (the artifact server's metrics and the jobs' in one page), and the
    /// server's status (`GET /status` and the page at `GET /`) shows the jobs: requests for
    /// those two carry these jobs as an `Arc<dyn JobsSource>` extension.
    ///
    /// Every other request passes through untouched: no extension, no future boxed, no
    /// service cloned (it is the layer around every route of the server, small artifacts and
    /// misses included).
    pub fn with_metrics(&self, app: Router) -> Router {
        app.layer(JobsLayer { jobs: self.clone(), source: Arc::new(self.clone()) })
    }

    fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<(), Reject> {
        let config = &self.inner.config;
        let Some(token) = &config.token else { return Ok(()) };
        if !write && !config.token_for_reads {
            return Ok(());
        }
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match authorization {
            Some(value) if artifact_http::protocol::presents_token(value, token) => Ok(()),
            _ => Err(Reject::Unauthorized),
        }
    }
}

async fn submit(
    AxumState(jobs): AxumState<Jobs>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Reject> {
    jobs.authorize(&headers, true)?;
    let news = parse_submit(&body, jobs.config().max_ids)?;
    let submitted = jobs.submit(news).await.map_err(|err| match Reject::from(err) {
        Reject::Full { max, .. } => Reject::Full {
            max,
            retry_after: jobs.config().retry_after.as_secs_f64().ceil().max(1.0) as u64,
        },
        other => other,
    })?;
    let created = submitted.iter().filter(|(_, created)| *created).count();
    info!(jobs = submitted.len(), created, "jobs submitted");
    let jobs: Vec<Submitted> = submitted
        .into_iter()
        .map(|(job, _)| Submitted { job: job.job, id: job.id, state: job.state })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "jobs": jobs }))).into_response())
}

/// Checks a `POST /jobs` body and makes its jobs: one per id, and per target for a push.
fn parse_submit(body: &[u8], max_ids: usize) -> Result<Vec<NewJob>, Reject> {
    let bad = |msg: String| Reject::BadRequest(msg);
    let submit: Submit =
        serde_json::from_slice(body).map_err(|e| bad(format!("bad job request: {e}")))?;
    let action: Action = submit.action.parse().map_err(|_| {
        bad(format!("`action`: unknown action {:?}, expected \"pull\" or \"push\"", submit.action))
    })?;
    let (field, endpoints) = match action {
        Action::Pull if submit.to.is_some() => {
            return Err(bad("`to`: a pull takes `from`".into()));
        }
        Action::Push if submit.from.is_some() => {
            return Err(bad("`from`: a push takes `to`".into()));
        }
        Action::Pull => ("from", submit.from.unwrap_or_default()),
        Action::Push => ("to", submit.to.unwrap_or_default()),
    };
    if submit.ids.is_empty() {
        return Err(bad("`ids`: no artifact id given".into()));
    }
    if endpoints.is_empty() {
        return Err(bad(format!("`{field}`: no URL given")));
    }
    let count = match action {
        Action::Pull => submit.ids.len(),
        Action::Push => submit.ids.len().saturating_mul(endpoints.len()),
    };
    if count > max_ids {
        return Err(bad(format!(
            "`ids`: {count} jobs in one request, more than the limit of {max_ids}"
        )));
    }
    let ids = submit
        .ids
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<ArtifactId>().map_err(|e| bad(format!("`ids[{i}]`: {text:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let endpoints = endpoints
        .iter()
        .enumerate()
        .map(|(i, url)| check_url(url).map_err(|e| bad(format!("`{field}[{i}]`: {url:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let priority = submit.priority;
    Ok(match action {
        Action::Pull => ids
            .into_iter()
            .map(|id| NewJob { action, id, endpoints: endpoints.clone(), priority })
            .collect(),
        Action::Push => ids
            .into_iter()
            .flat_map(|id| {
                endpoints.iter().map(move |to| NewJob {
                    action,
                    id,
                    endpoints: vec![to.clone()],
                    priority,
                })
            })
            .collect(),
    })
}

/// An endpoint URL as jobs keep it: `http` or `https`, a host, no query or fragment, no
/// trailing slash.
fn check_url(url: &str) -> Result<String, &'static str> {
    let uri: axum::http::Uri = url.parse().map_err(|_| "not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the scheme must be http or https"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host");
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("an endpoint takes no query or fragment");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

async fn list(
    AxumState(jobs): AxumState<Jobs>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    jobs.authorize(&headers, false)?;
    let mut state = None;
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in query.as_deref().unwrap_or("").split('&').filter_map(|p| p.split_once('='))
    {
        match key {
            "state" => {
                state = Some(
                    value
                        .parse::<State>()
                        .map_err(|e| Reject::BadRequest(format!("`state`: {e}")))?,
                );
            }
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
                after = Some(value.parse::<JobId>().map_err(|_| {
                    Reject::BadRequest(format!("`after`: bad job number {value:?}"))
                })?);
            }
            _ => {}
        }
    }
    let page = jobs.list(state, after, limit).await?;
    let next = if page.len() == limit { page.last().map(|j| j.job) } else { None };
    let page = Page { jobs: page.into_iter().map(JobView::from).collect(), next };
    Ok(Json(page).into_response())
}

/// The layer of [`Jobs::with_metrics`].
#[derive(Clone)]
struct JobsLayer {
    jobs: Jobs,
    source: Arc<dyn JobsSource>,
}

impl<S> tower::Layer<S> for JobsLayer {
    type Service = JobsService<S>;

    fn layer(&self, inner: S) -> JobsService<S> {
        JobsService { inner, jobs: self.jobs.clone(), source: self.source.clone() }
    }
}

/// The service of [`JobsLayer`] around one route.
#[derive(Clone)]
struct JobsService<S> {
    inner: S,
    jobs: Jobs,
    source: Arc<dyn JobsSource>,
}

impl<S> tower::Service<axum::extract::Request> for JobsService<S>
where
    S: tower::Service<axum::extract::Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::extract::Request) -> Self::Future {
        let path = request.uri().path();
        if path == artifact_http::protocol::STATUS_PATH
            || path == artifact_http::protocol::STATUS_PAGE_PATH
        {
            request.extensions_mut().insert(self.source.clone());
        }
        let metrics = request.method() == axum::http::Method::GET
            && request.uri().path() == artifact_http::protocol::METRICS_PATH;
        let answer = self.inner.call(request);
        if !metrics {
            return Either::Left(answer);
        }
        let jobs = self.jobs.clone();
        Either::Right(Box::pin(async move { Ok(append_metrics(jobs, answer.await?).await) }))
    }
}

/// Ends a successful metrics page with the jobs' lines.
async fn append_metrics(jobs: Jobs, response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut page = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(bytes) => bytes.to_vec(),
        Err(err) => {
            warn!(error = %err, "reading the metrics page failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    match jobs.metrics().await {
        Ok(lines) => page.extend_from_slice(lines.as_bytes()),
        Err(err) => warn!(error = %err, "job metrics are missing from /metrics"),
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(page))
}

fn parse_job(text: &str) -> Result<JobId, Reject> {
    text.parse().map_err(|_| Reject::BadRequest(format!("bad job number {text:?}")))
}

async fn show(
    AxumState(jobs): AxumState<Jobs>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    jobs.authorize(&headers, false)?;
    let job = jobs.get(parse_job(&job)?).await?;
    Ok(Json(JobView::from(job)).into_response())
}

async fn cancel(
    AxumState(jobs): AxumState<Jobs>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    jobs.authorize(&headers, true)?;
    let job = jobs.cancel(parse_job(&job)?).await?;
    info!(job = %job.job, id = %job.id, "job cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expect: Result<usize, &str>) {
        match (parse_submit(body.as_bytes(), 4), expect) {
            (Ok(jobs), Ok(n)) => assert_eq!(jobs.len(), n, "{body}"),
            (Err(Reject::BadRequest(msg)), Err(part)) => {
                assert!(msg.contains(part), "{body}: {msg:?} lacks {part:?}")
            }
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn submissions_are_checked_field_by_field() {
        check(r#"{"action":"pull","ids":["00","ab"],"from":["http://a:1","http://b:1/"]}"#, Ok(2));
        check(r#"{"action":"push","ids":["00","ab"],"to":["http://a:1","http://b"]}"#, Ok(4));
        check(
            r#"{"action":"push","ids":["00","ab","cd"],"to":["http://a:1","http://b"]}"#,
            Err("`ids`: 6 jobs"),
        );
        check(r#"{"action":"copy","ids":["00"],"from":["http://a"]}"#, Err("`action`"));
        check(r#"{"action":"pull","ids":[],"from":["http://a"]}"#, Err("`ids`"));
        check(r#"{"action":"pull","ids":["0"],"from":["http://a"]}"#, Err("`ids[0]`"));
        check(r#"{"action":"pull","ids":["00","zz"],"from":["http://a"]}"#, Err("`ids[1]`"));
        check(r#"{"action":"pull","ids":["00"],"from":["ftp://a"]}"#, Err("`from[0]`"));
        check(
            r#"{"action":"pull","ids":["00"],"from":["http://a","http://a/?x"]}"#,
            Err("`from[1]`"),
        );
        check(r#"{"action":"pull","ids":["00"],"from":[]}"#, Err("`from`"));
        check(r#"{"action":"pull","ids":["00"]}"#, Err("`from`"));
        check(r#"{"action":"pull","ids":["00"],"to":["http://a"]}"#, Err("`to`"));
        check(r#"{"action":"push","ids":["00"],"from":["http://a"]}"#, Err("`from`"));
        check(r#"{"action":"pull","ids":"00","from":["http://a"]}"#, Err("bad job request"));
        check(
            r#"{"action":"pull","ids":["00"],"from":["http://a"],"x":1}"#,
            Err("unknown field `x`"),
        );
        check(r#"{"ids":["00"],"from":["http://a"]}"#, Err("missing field `action`"));
        check("not json", Err("bad job request"));
    }

    #[test]
    fn urls_lose_their_trailing_slash() {
        assert_eq!(check_url("http://a:1/x/").unwrap(), "http://a:1/x");
        for bad in ["", "a:1", "http://", "http://a/#f", "file:///x"] {
            assert!(check_url(bad).is_err(), "{bad:?}");
        }
    }
}
