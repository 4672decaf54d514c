//! `/metrics` lines for jobs: jobs by state, transfers and bytes by endpoint, the current
//! rate; [`EndpointStats`] counts them.

use std::{
    fmt::Write,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
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

impl Jobs {
    /// The jobs' lines for a Prometheus `/metrics` page: `artifact_jobs{state}`,
    /// `artifact_jobs_transfers_total{endpoint,outcome}`, `artifact_jobs_bytes_total{endpoint}`
    /// and `artifact_jobs_rate_bytes_per_second{endpoint}` (over the time since the previous
    /// scrape, at least a second).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the job counts cannot be read.
    pub async fn metrics(&self) -> Result<String, Error> {
        let counts = self.counts().await?;
        let mut out = String::new();
        out.push_str("# HELP artifact_jobs Transfer jobs by state.\n# TYPE artifact_jobs gauge\n");
        for (state, n) in counts {
            let _ = writeln!(out, "artifact_jobs{{state=\"{state}\"}} {n}");
        }
        let mut stats: Vec<_> = {
            let map = self.inner.stats.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str(
            "# HELP artifact_jobs_transfers_total Job transfers by endpoint and outcome.\n\
             # TYPE artifact_jobs_transfers_total counter\n",
        );
        for (endpoint, s) in &stats {
            let endpoint = escape(endpoint);
            for (outcome, n) in [
                ("succeeded", &s.succeeded),
                ("retried", &s.retried),
                ("failed", &s.failed),
                ("cancelled", &s.cancelled),
            ] {
                let n = n.load(Relaxed);
                let _ = writeln!(
                    out,
                    "artifact_jobs_transfers_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP artifact_jobs_bytes_total Body bytes moved by jobs, by endpoint.\n\
             # TYPE artifact_jobs_bytes_total counter\n",
        );
        for (endpoint, s) in &stats {
            let _ = writeln!(
                out,
                "artifact_jobs_bytes_total{{endpoint=\"{}\"}} {}",
                escape(endpoint),
                s.bytes()
            );
        }
        out.push_str(
            "# HELP artifact_jobs_rate_bytes_per_second Current byte rate of jobs, by endpoint.\n\
             # TYPE artifact_jobs_rate_bytes_per_second gauge\n",
        );
        for (endpoint, s) in &stats {
            let _ = writeln!(
                out,
                "artifact_jobs_rate_bytes_per_second{{endpoint=\"{}\"}} {:.0}",
                escape(endpoint),
                s.rate()
            );
        }
        Ok(out)
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
