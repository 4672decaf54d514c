//! `/metrics` lines for jobs (jobs by state, transfers and bytes by endpoint, the current
//! rate), written by `prometheus-client`; [`EndpointStats`] counts them.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{Error, Jobs, State};

/// What moved through one endpoint's pool since the process started.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    bytes: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// The last failure of a transfer through this endpoint.
    last_error: Mutex<Option<String>>,
    /// The last rate sample: when, the byte count then, and the rate it gave.
    sample: Mutex<Option<(Instant, u64, f64)>>,
}

impl EndpointStats {
    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Counts a transfer's outcome.
    pub(crate) fn count(&self, outcome: State) {
        let counter = match outcome {
            State::Succeeded => &self.succeeded,
            State::Retrying => &self.retried,
            State::Failed => &self.failed,
            State::Cancelled => &self.cancelled,
            State::Queued | State::Running => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Keeps `error` as the endpoint's last failure.
    pub(crate) fn set_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The endpoint's last failure.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Transfers by outcome: succeeded, retried, failed, cancelled.
    pub(crate) fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("succeeded", self.succeeded.load(Relaxed)),
            ("retried", self.retried.load(Relaxed)),
            ("failed", self.failed.load(Relaxed)),
            ("cancelled", self.cancelled.load(Relaxed)),
        ]
    }

    /// Bytes per second since the previous sample (taken at least a second apart; the first
    /// sample gives 0).
    pub(crate) fn rate(&self) -> f64 {
        let now = Instant::now();
        let bytes = self.bytes();
        let mut sample = self.sample.lock().unwrap_or_else(PoisonError::into_inner);
        match *sample {
            Some((at, _, rate)) if now.duration_since(at) < Duration::from_secs(1) => rate,
            Some((at, before, _)) => {
                let rate = (bytes - before) as f64 / now.duration_since(at).as_secs_f64();
                *sample = Some((now, bytes, rate));
                rate
            }
            None => {
                *sample = Some((now, bytes, 0.0));
                0.0
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    endpoint: String,
    outcome: &'static str,
}

impl Jobs {
    /// The jobs' lines for a Prometheus `/metrics` page (text format 0.0.4):
    /// `artifact_jobs{state}`, `artifact_jobs_transfers_total{endpoint,outcome}`,
    /// `artifact_jobs_bytes_total{endpoint}` and `artifact_jobs_rate_bytes_per_second{endpoint}`
    /// (over the time since the previous scrape, at least a second).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the job counts cannot be read.
    pub async fn metrics(&self) -> Result<String, Error> {
        let counts = self.counts().await?;
        Ok(render(&counts, &self.endpoint_stats()))
    }

    /// Each endpoint's counters, in endpoint order.
    pub(crate) fn endpoint_stats(&self) -> Vec<(Arc<str>, Arc<EndpointStats>)> {
        let mut stats: Vec<_> = {
            let map = self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }
}

/// The Prometheus text of job `counts` and endpoint `stats`; the library escapes the labels.
fn render(counts: &[(State, u64)], stats: &[(Arc<str>, Arc<EndpointStats>)]) -> String {
    let mut registry = Registry::default();
    let jobs = Family::<StateLabel, Gauge<u64, AtomicU64>>::default();
    for (state, n) in counts {
        jobs.get_or_create(&StateLabel { state: state.to_string() }).set(*n);
    }
    registry.register("artifact_jobs", "Transfer jobs by state", jobs);
    let transfers = Family::<OutcomeLabels, Counter>::default();
    let bytes = Family::<EndpointLabel, Counter>::default();
    let rate = Family::<EndpointLabel, Gauge<f64, AtomicU64>>::default();
    for (endpoint, s) in stats {
        for (outcome, n) in s.outcomes() {
            let labels = OutcomeLabels { endpoint: endpoint.to_string(), outcome };
            transfers.get_or_create(&labels).inc_by(n);
        }
        let label = EndpointLabel { endpoint: endpoint.to_string() };
        bytes.get_or_create(&label).inc_by(s.bytes());
        rate.get_or_create(&label).set(s.rate().round());
    }
    registry.register(
        "artifact_jobs_transfers",
        "Job transfers by endpoint and outcome",
        transfers,
    );
    registry.register("artifact_jobs_bytes", "Body bytes moved by jobs, by endpoint", bytes);
    registry.register(
        "artifact_jobs_rate_bytes_per_second",
        "Current byte rate of jobs, by endpoint",
        rate,
    );
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_endpoints_are_escaped_in_labels() {
        let stats = Arc::new(EndpointStats::default());
        stats.add_bytes(7);
        stats.count(State::Failed);
        let endpoint: Arc<str> = "http://a/\\\"quoted\"\nnext{x=\"1\"}".into();
        let text = render(&[(State::Queued, 2), (State::Failed, 1)], &[(endpoint, stats)]);
        let escaped = r#"http://a/\\\"quoted\"\nnext{x=\"1\"}"#;
        for line in [
            "# TYPE artifact_jobs gauge".to_owned(),
            "artifact_jobs{state=\"queued\"} 2".to_owned(),
            "# TYPE artifact_jobs_transfers_total counter".to_owned(),
            format!("artifact_jobs_transfers_total{{endpoint=\"{escaped}\",outcome=\"failed\"}} 1"),
            format!("artifact_jobs_bytes_total{{endpoint=\"{escaped}\"}} 7"),
            format!("artifact_jobs_rate_bytes_per_second{{endpoint=\"{escaped}\"}} 0.0"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // The newline stays escaped: no sample line is split.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
            assert!(line.starts_with("artifact_jobs"), "{line:?}");
        }
    }
}
