//! [`Metrics`]: counters kept with atomics, rendered as Prometheus text by `GET /metrics`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use artifact_cache::Usage;

/// What an endpoint is called in the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Get,
    Head,
    Put,
    Delete,
    List,
    Health,
    Metrics,
    Other,
}

impl Endpoint {
    pub(crate) fn of(method: &axum::http::Method, path: &str) -> Endpoint {
        use crate::protocol::{ARTIFACT_PATH, HEALTH_PATH, LIST_PATH, METRICS_PATH};
        use axum::http::Method;
        match (path, method) {
            (ARTIFACT_PATH, &Method::GET) => Endpoint::Get,
            (ARTIFACT_PATH, &Method::HEAD) => Endpoint::Head,
            (ARTIFACT_PATH, &Method::PUT) => Endpoint::Put,
            (ARTIFACT_PATH, &Method::DELETE) => Endpoint::Delete,
            (LIST_PATH, _) => Endpoint::List,
            (HEALTH_PATH, _) => Endpoint::Health,
            (METRICS_PATH, _) => Endpoint::Metrics,
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
            Endpoint::Other => "other",
        }
    }

    /// Requests worth an `info` line in the log (the probes are not).
    pub(crate) fn is_noteworthy(self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Metrics)
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(Endpoint, u16), u64>>,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) uploads: AtomicU64,
    pub(crate) uploads_rejected: AtomicU64,
    pub(crate) streams_refused: AtomicU64,
    pub(crate) store_fetches: AtomicU64,
    pub(crate) store_uploads: AtomicU64,
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
}

/// What `/metrics` reports of the store (feature `store`).
#[derive(Debug, Default)]
pub(crate) struct StoreGauges {
    pub(crate) requests: u64,
    pub(crate) bytes_down: u64,
    pub(crate) bytes_up: u64,
    /// (kind, count): `retryable`, `auth`, `corrupt`, `other`.
    pub(crate) errors: [(&'static str, u64); 4],
}

impl Metrics {
    pub(crate) fn request(&self, endpoint: Endpoint, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((endpoint, status)).or_default() += 1;
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        };
        metric(
            "artifact_http_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status.",
        );
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for ((endpoint, status), n) in requests {
            let _ = writeln!(
                out,
                "artifact_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                endpoint.label()
            );
        }
        let counters = [
            (
                "artifact_http_sent_bytes_total",
                "Response body bytes sent (after compression).",
                &self.bytes_sent,
            ),
            (
                "artifact_http_received_bytes_total",
                "Request body bytes received (before decompression).",
                &self.bytes_received,
            ),
            (
                "artifact_http_hits_total",
                "GET and HEAD requests for an artifact that was there.",
                &self.hits,
            ),
            (
                "artifact_http_misses_total",
                "GET and HEAD requests for an artifact that was absent.",
                &self.misses,
            ),
            ("artifact_http_uploads_total", "Uploads committed.", &self.uploads),
            (
                "artifact_http_uploads_rejected_total",
                "Uploads rejected or cut short (nothing kept).",
                &self.uploads_rejected,
            ),
            (
                "artifact_http_streams_refused_total",
                "Requests refused with 503 at the stream limit.",
                &self.streams_refused,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.load(Relaxed)
            );
        }
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        };
        gauge(
            "artifact_http_active_streams",
            "Tar streams in flight.",
            gauges.active_streams as u64,
        );
        gauge(
            "artifact_http_max_streams",
            "The limit on tar streams in flight.",
            gauges.max_streams as u64,
        );
        if let Some(usage) = gauges.usage {
            gauge("artifact_cache_bytes", "Bytes of file content in the cache.", usage.bytes);
            gauge("artifact_cache_artifacts", "Artifacts in the cache.", usage.artifacts);
        }
        if let Some(store) = &gauges.store {
            let counters = [
                (
                    "artifact_store_fetches_total",
                    "Local misses answered through the store (fetched, or waited for while another request fetched them; also counted as hits).",
                    self.store_fetches.load(Relaxed),
                ),
                (
                    "artifact_store_uploads_total",
                    "Uploads written through to the store.",
                    self.store_uploads.load(Relaxed),
                ),
                ("artifact_store_requests_total", "Requests sent to the store.", store.requests),
                (
                    "artifact_store_received_bytes_total",
                    "Object bytes received from the store.",
                    store.bytes_down,
                ),
                (
                    "artifact_store_sent_bytes_total",
                    "Object bytes sent to the store.",
                    store.bytes_up,
                ),
            ];
            for (name, help, value) in counters {
                let _ =
                    write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
            }
            let name = "artifact_store_errors_total";
            let _ = write!(
                out,
                "# HELP {name} Failed store operations, by kind.\n# TYPE {name} counter\n"
            );
            for (kind, value) in store.errors {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {value}");
            }
        }
        if let Some(small) = gauges.small {
            let counters = [
                (
                    "artifact_http_small_hits_total",
                    "counter",
                    "GET and HEAD requests answered from a small artifact's stream kept in memory.",
                    small.hits,
                ),
                (
                    "artifact_http_small_misses_total",
                    "counter",
                    "GET and HEAD requests for a small artifact whose stream was not kept in memory.",
                    small.misses,
                ),
                (
                    "artifact_http_small_bytes",
                    "gauge",
                    "Bytes of small artifacts' streams kept in memory.",
                    small.bytes,
                ),
                (
                    "artifact_http_small_streams",
                    "gauge",
                    "Small artifacts' streams kept in memory.",
                    small.streams,
                ),
                (
                    "artifact_http_small_budget_bytes",
                    "gauge",
                    "The most bytes of small artifacts' streams kept in memory.",
                    small.budget,
                ),
            ];
            for (name, kind, help, value) in counters {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
            }
        }
        if let Some(evictions) = gauges.evictions {
            let name = "artifact_cache_evictions_total";
            let _ = write!(
                out,
                "# HELP {name} Artifacts evicted to keep the cache within its size bound.\n\
                 # TYPE {name} counter\n{name} {evictions}\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.request(Endpoint::Get, 200);
        metrics.request(Endpoint::Get, 200);
        metrics.request(Endpoint::Put, 413);
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
        });
        for line in [
            "artifact_store_requests_total 5",
            "artifact_store_errors_total{kind=\"corrupt\"} 2",
            "artifact_http_requests_total{endpoint=\"get\",status=\"200\"} 2",
            "artifact_http_requests_total{endpoint=\"put\",status=\"413\"} 1",
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
