//! [`JobsConfig`]: the scheduler's limits, retries, rates and access control.

use std::{collections::HashMap, fmt, time::Duration};

/// Limits, retries, rates and access control for [`Jobs`](crate::Jobs) and its router.
///
/// ```
/// use std::time::Duration;
/// use artifact_jobs::JobsConfig;
///
/// let config = JobsConfig::default()
///     .concurrency(8)
///     .rate("http://peer:8417", 8 << 20)
///     .global_rate(Some(64 << 20))
///     .max_attempts(3)
///     .token(Some("s3cret".into()));
/// assert_eq!(config.rates["http://peer:8417"], 8 << 20);
/// assert!(!format!("{config:?}").contains("s3cret"), "the token is not printed");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct JobsConfig {
    /// Transfers at once per endpoint pool (default 4).
    pub concurrency: usize,
    /// Byte-rate limits of single endpoints, in bytes per second, by endpoint URL as given in
    /// jobs (without a trailing slash).
    pub rates: HashMap<String, u64>,
    /// A byte-rate limit over all transfers, in bytes per second (default none).
    pub global_rate: Option<u64>,
    /// Attempts per job before it fails (default 5; at least 1).
    pub max_attempts: u32,
    /// The backoff after the first failed attempt, doubled after each (default 1 s), drawn
    /// between half and all of that.
    pub backoff: Duration,
    /// The longest backoff (default 5 min).
    pub max_backoff: Duration,
    /// Active (queued, running, retrying) jobs at most; beyond it, submissions are refused
    /// (default 100,000).
    pub max_queued: usize,
    /// Ids per request at most (default 10,000).
    pub max_ids: usize,
    /// How long ended jobs are kept before they are pruned (default 7 days).
    pub keep: Duration,
    /// How often a stats line is logged while jobs are active (default 60 s).
    pub stats_every: Duration,
    /// The bearer token that submitting and cancelling jobs must present; none by default.
    pub token: Option<String>,
    /// Require the token for reading jobs as well (default false).
    pub token_for_reads: bool,
    /// The bearer token presented to the endpoints of jobs; none by default.
    pub remote_token: Option<String>,
    /// The idle timeout of transfers (default 30 s), as for the `Downloader`.
    pub idle_timeout: Duration,
    /// The `Retry-After` of a refusal for a full queue (default 5 s).
    pub retry_after: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            concurrency: 4,
            rates: HashMap::new(),
            global_rate: None,
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_queued: 100_000,
            max_ids: 10_000,
            keep: Duration::from_secs(7 * 24 * 3600),
            stats_every: Duration::from_secs(60),
            token: None,
            token_for_reads: false,
            remote_token: None,
            idle_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for JobsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |token: &Option<String>| token.as_ref().map(|_| "<redacted>");
        f.debug_struct("JobsConfig")
            .field("concurrency", &self.concurrency)
            .field("rates", &self.rates)
            .field("global_rate", &self.global_rate)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_queued", &self.max_queued)
            .field("max_ids", &self.max_ids)
            .field("keep", &self.keep)
            .field("stats_every", &self.stats_every)
            .field("token", &redacted(&self.token))
            .field("token_for_reads", &self.token_for_reads)
            .field("remote_token", &redacted(&self.remote_token))
            .field("idle_timeout", &self.idle_timeout)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl JobsConfig {
    /// Sets [`concurrency`](Self::concurrency).
    pub fn concurrency(mut self, transfers: usize) -> Self {
        self.concurrency = transfers.max(1);
        self
    }

    /// Adds a rate limit for `endpoint`, in bytes per second.
    pub fn rate(mut self, endpoint: &str, bytes_per_second: u64) -> Self {
        self.rates.insert(endpoint.trim_end_matches('/').to_owned(), bytes_per_second);
        self
    }

    /// Sets [`global_rate`](Self::global_rate).
    pub fn global_rate(mut self, bytes_per_second: Option<u64>) -> Self {
        self.global_rate = bytes_per_second;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets [`backoff`](Self::backoff) and [`max_backoff`](Self::max_backoff).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Sets [`max_queued`](Self::max_queued).
    pub fn max_queued(mut self, jobs: usize) -> Self {
        self.max_queued = jobs;
        self
    }

    /// Sets [`max_ids`](Self::max_ids).
    pub fn max_ids(mut self, ids: usize) -> Self {
        self.max_ids = ids.max(1);
        self
    }

    /// Sets [`keep`](Self::keep).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// Sets [`token`](Self::token).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Sets [`token_for_reads`](Self::token_for_reads).
    pub fn token_for_reads(mut self, required: bool) -> Self {
        self.token_for_reads = required;
        self
    }

    /// Sets [`remote_token`](Self::remote_token).
    pub fn remote_token(mut self, token: Option<String>) -> Self {
        self.remote_token = token;
        self
    }

    /// The backoff before attempt `attempt + 1`, after `attempt` failed ones, with equal
    /// jitter.
    pub(crate) fn backoff_after(&self, attempt: u32) -> Duration {
        let exp = self.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.max_backoff);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_equal_jitter_up_to_the_max() {
        let config = JobsConfig::default().backoff(Duration::from_secs(1), Duration::from_secs(5));
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 5), (30, 5)] {
            let full = Duration::from_secs(full);
            for _ in 0..20 {
                let pause = config.backoff_after(attempt);
                assert!(pause >= full / 2 && pause <= full, "attempt {attempt}: {pause:?}");
            }
        }
    }
}
