//! [`Metrics`]: the server's counters (`prometheus-client` metrics), rendered with the values
//! read at scrape time as Prometheus text by `GET /metrics`.

use std::sync::OnceLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::ConstGauge},
    registry::Registry,
};

use artifact_cache::Usage;

/// What an endpoint is called in the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Endpoint {
    Get,
    Head,
    Put,
    Delete,
    List,
    Health,
    Metrics,
    Status,
    Page,
    Other,
}

impl Endpoint {
    /// How many endpoints there are (the variants' discriminants are `0..COUNT`).
    const COUNT: usize = Endpoint::Other as usize + 1;

    pub(crate) fn of(method: &axum::http::Method, path: &str) -> Endpoint {
        use crate::protocol::{
            ARTIFACT_PATH, HEALTH_PATH, LIST_PATH, METRICS_PATH, STATUS_PAGE_PATH, STATUS_PATH,
        };
        use axum::http::Method;
        match (path, method) {
            (ARTIFACT_PATH, &Method::GET) => Endpoint::Get,
            (ARTIFACT_PATH, &Method::HEAD) => Endpoint::Head,
            (ARTIFACT_PATH, &Method::PUT) => Endpoint::Put,
            (ARTIFACT_PATH, &Method::DELETE) => Endpoint::Delete,
            (LIST_PATH, _) => Endpoint::List,
            (HEALTH_PATH, _) => Endpoint::Health,
            (METRICS_PATH, _) => Endpoint::Metrics,
            (STATUS_PATH, _) => Endpoint::Status,
            (STATUS_PAGE_PATH, _) => Endpoint::Page,
            _ => Endpoint::Other,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Get => "get",
            Endpoint::Head => "head",
            Endpoint::Put => "put",
            Endpoint::Delete => "delete",
            Endpoint::List => "list",
            Endpoint::Health => "healthz",
            Endpoint::Metrics => "metrics",
            Endpoint::Status => "status",
            Endpoint::Page => "page",
            Endpoint::Other => "other",
        }
    }

    /// Requests worth an `info` line in the log (the probes and the status page are not).
    pub(crate) fn is_noteworthy(self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Metrics | Endpoint::Status | Endpoint::Page)
    }
}

/// The labels of `artifact_http_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

/// The label of `artifact_store_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// The statuses whose `artifact_http_requests_total` counters are looked up in the family once
/// per endpoint and kept: counting one of those takes no lock and hashes no label set.
const KEPT_STATUSES: [u16; 5] = [200, 201, 204, 206, 404];

/// The server's counters. Each is a handle on shared atomics: clones count into the same value.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Family<RequestLabels, Counter>,
    /// The family's counters of each endpoint for [`KEPT_STATUSES`], each taken from the family
    /// on its first use (so `/metrics` shows only the pairs that were counted).
    kept: [[OnceLock<Counter>; KEPT_STATUSES.len()]; Endpoint::COUNT],
    pub(crate) bytes_sent: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) uploads: Counter,
    pub(crate) uploads_rejected: Counter,
    pub(crate) streams_refused: Counter,
    pub(crate) store_fetches: Counter,
    pub(crate) store_uploads: Counter,
}

/// What `/metrics` reports besides the counters.
pub(crate) struct Gauges {
    pub(crate) active_streams: usize,
    pub(crate) max_streams: usize,
    pub(crate) usage: Option<Usage>,
    pub(crate) evictions: Option<u64>,
    /// The store's counters: requests, bytes down and up, errors by kind.
    pub(crate) store: Option<StoreGauges>,
    /// The small streams kept in memory, when that is on.
    pub(crate) small: Option<super::small::SmallGauges>,
    /// The background scrub, when there is one.
    pub(crate) scrub: Option<super::scrub::ScrubStatus>,
}

/// What `/metrics` reports of the store (feature `store`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct StoreGauges {
    pub(crate) requests: u64,
    pub(crate) bytes_down: u64,
    pub(crate) bytes_up: u64,
    /// (kind, count): `retryable`, `auth`, `corrupt`, `other`.
    pub(crate) errors: [(&'static str, u64); 4],
}

/// A counter holding `value`, for a value kept elsewhere and read at scrape time.
fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

impl Metrics {
    pub(crate) fn request(&self, endpoint: Endpoint, status: u16) {
        let labels = || RequestLabels { endpoint: endpoint.label(), status };
        match KEPT_STATUSES.iter().position(|&kept| kept == status) {
            Some(n) => {
                let counter = &self.kept[endpoint as usize][n];
                counter.get_or_init(|| self.requests.get_or_create(&labels()).clone()).inc();
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
    }

    pub(crate) fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut registry = Registry::default();
        registry.register(
            "artifact_http_requests",
            "HTTP requests answered, by endpoint and status",
            self.requests.clone(),
        );
        for (name, help, counter) in [
            (
                "artifact_http_sent_bytes",
                "Response body bytes sent (after compression)",
                &self.bytes_sent,
            ),
            (
                "artifact_http_received_bytes",
                "Request body bytes received (before decompression)",
                &self.bytes_received,
            ),
            (
                "artifact_http_hits",
                "GET and HEAD requests for an artifact that was there",
                &self.hits,
            ),
            (
                "artifact_http_misses",
                "GET and HEAD requests for an artifact that was absent",
                &self.misses,
            ),
            ("artifact_http_uploads", "Uploads committed", &self.uploads),
            (
                "artifact_http_uploads_rejected",
                "Uploads rejected or cut short (nothing kept)",
                &self.uploads_rejected,
            ),
            (
                "artifact_http_streams_refused",
                "Requests refused with 503 at the stream limit",
                &self.streams_refused,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "artifact_http_active_streams",
            "Tar streams in flight",
            ConstGauge::new(gauges.active_streams as u64),
        );
        registry.register(
            "artifact_http_max_streams",
            "The limit on tar streams in flight",
            ConstGauge::new(gauges.max_streams as u64),
        );
        if let Some(usage) = gauges.usage {
            registry.register(
                "artifact_cache_bytes",
                "Bytes of file content in the cache",
                ConstGauge::new(usage.bytes),
            );
            registry.register(
                "artifact_cache_artifacts",
                "Artifacts in the cache",
                ConstGauge::new(usage.artifacts),
            );
        }
        if let Some(store) = &gauges.store {
            registry.register(
                "artifact_store_fetches",
                "Local misses answered through the store (fetched, or waited for while another \
                 request fetched them; also counted as hits)",
                self.store_fetches.clone(),
            );
            registry.register(
                "artifact_store_uploads",
                "Uploads written through to the store",
                self.store_uploads.clone(),
            );
            for (name, help, value) in [
                ("artifact_store_requests", "Requests sent to the store", store.requests),
                (
                    "artifact_store_received_bytes",
                    "Object bytes received from the store",
                    store.bytes_down,
                ),
                ("artifact_store_sent_bytes", "Object bytes sent to the store", store.bytes_up),
            ] {
                registry.register(name, help, counter(value));
            }
            let errors = Family::<ErrorLabels, Counter>::default();
            for (kind, value) in store.errors {
                errors.get_or_create(&ErrorLabels { kind }).inc_by(value);
            }
            registry.register("artifact_store_errors", "Failed store operations, by kind", errors);
        }
        if let Some(small) = gauges.small {
            registry.register(
                "artifact_http_small_hits",
                "GET and HEAD requests answered from a small artifact's stream kept in memory",
                counter(small.hits),
            );
            registry.register(
                "artifact_http_small_misses",
                "GET and HEAD requests for a small artifact whose stream was not kept in memory",
                counter(small.misses),
            );
            for (name, help, value) in [
                (
                    "artifact_http_small_bytes",
                    "Bytes of small artifacts' streams kept in memory",
                    small.bytes,
                ),
                (
                    "artifact_http_small_streams",
                    "Small artifacts' streams kept in memory",
                    small.streams,
                ),
                (
                    "artifact_http_small_budget_bytes",
                    "The most bytes of small artifacts' streams kept in memory",
                    small.budget,
                ),
            ] {
                registry.register(name, help, ConstGauge::new(value));
            }
        }
        if let Some(scrub) = &gauges.scrub {
            for (name, help, value) in [
                ("artifact_scrub_passes", "Scrub passes finished", scrub.passes),
                ("artifact_scrub_verified", "Artifacts the scrub verified whole", scrub.verified),
                ("artifact_scrub_bytes", "Bytes of file content the scrub read", scrub.bytes),
                ("artifact_scrub_corrupt", "Corrupt artifacts the scrub found", scrub.corrupt),
                (
                    "artifact_scrub_quarantined",
                    "Corrupt artifacts the scrub moved into quarantine",
                    scrub.quarantined,
                ),
                (
                    "artifact_scrub_repaired",
                    "Quarantined artifacts fetched again with their recorded digest",
                    scrub.repaired,
                ),
                (
                    "artifact_scrub_repair_failures",
                    "Quarantined artifacts that could not be fetched again",
                    scrub.repair_failures,
                ),
                (
                    "artifact_scrub_errors",
                    "Artifacts the scrub could not check or quarantine (logged)",
                    scrub.errors,
                ),
            ] {
                registry.register(name, help, counter(value));
            }
            if let Some(pass) = &scrub.last_pass {
                registry.register(
                    "artifact_scrub_last_pass_timestamp_seconds",
                    "When the last finished scrub pass ended (Unix time)",
                    ConstGauge::new(pass.finished),
                );
            }
        }
        if let Some(evictions) = gauges.evictions {
            registry.register(
                "artifact_cache_evictions",
                "Artifacts evicted to keep the cache within its size bound",
                counter(evictions),
            );
        }
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.request(Endpoint::Get, 200);
        metrics.request(Endpoint::Get, 200);
        metrics.request(Endpoint::Put, 413);
        metrics.request(Endpoint::Other, 404);
        Metrics::add(&metrics.bytes_sent, 42);
        let mut usage = Usage::default();
        usage.bytes = 10;
        usage.artifacts = 1;
        let text = metrics.render(&Gauges {
            active_streams: 2,
            max_streams: 8,
            usage: Some(usage),
            evictions: Some(3),
            store: Some(StoreGauges {
                requests: 5,
                errors: [("retryable", 1), ("auth", 0), ("corrupt", 2), ("other", 0)],
                ..StoreGauges::default()
            }),
            small: Some(super::super::small::SmallGauges {
                hits: 4,
                bytes: 2048,
                ..Default::default()
            }),
            scrub: None,
        });
        for line in [
            "artifact_store_requests_total 5",
            "artifact_store_errors_total{kind=\"corrupt\"} 2",
            "artifact_http_requests_total{endpoint=\"get\",status=\"200\"} 2",
            "artifact_http_requests_total{endpoint=\"put\",status=\"413\"} 1",
            "artifact_http_requests_total{endpoint=\"other\",status=\"404\"} 1",
            "# TYPE artifact_http_sent_bytes_total counter",
            "artifact_http_sent_bytes_total 42",
            "artifact_http_active_streams 2",
            "artifact_cache_artifacts 1",
            "artifact_cache_evictions_total 3",
            "artifact_http_small_hits_total 4",
            "artifact_http_small_bytes 2048",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
    }
}
