//! The names the server and the client agree on: paths, headers and media types (the HTTP
//! section of `docs/protocol.md` describes the whole exchange).
//!
//! ```
//! use artifact_http::protocol;
//!
//! let id: artifact_cache::ArtifactId = "c0ffee".parse()?;
//! assert_eq!(protocol::artifact_path(&id), "/artifact?id=c0ffee");
//! assert_eq!(protocol::DIGEST_HEADER, "x-artifact-digest");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use artifact_cache::ArtifactId;

mod range;

pub use range::{
    RangeAnswer, content_range, etag, if_none_match, if_range_matches, parse_content_range,
    parse_range, unsatisfied_range,
};

/// The path of the artifact endpoints (`GET`, `HEAD`, `PUT`, `DELETE`, with `?id=<hex>`).
pub const ARTIFACT_PATH: &str = "/artifact";
/// The path of the listing (`GET`, JSON pages or NDJSON).
pub const LIST_PATH: &str = "/artifacts";
/// The liveness endpoint.
pub const HEALTH_PATH: &str = "/healthz";
/// The Prometheus metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// The operator's status as JSON.
pub const STATUS_PATH: &str = "/status";
/// The operator's status page (HTML).
pub const STATUS_PAGE_PATH: &str = "/";

/// The tree digest of the artifact (64 lowercase hex digits): in every `GET`/`HEAD`/`PUT`
/// answer about an artifact, and optionally in a `PUT` request, where the server checks it.
pub const DIGEST_HEADER: &str = "x-artifact-digest";
/// Bytes of regular-file content in the artifact (decimal).
pub const SIZE_HEADER: &str = "x-artifact-size";
/// Regular files in the artifact (decimal).
pub const FILES_HEADER: &str = "x-artifact-files";
/// Entries in the artifact: regular files, directories and symlinks (decimal). With
/// [`SIZE_HEADER`], it bounds the length of the tar stream.
pub const ENTRIES_HEADER: &str = "x-artifact-entries";
/// The media type of a tar stream.
pub const TAR_MEDIA_TYPE: &str = "application/x-tar";
/// The media type of the streamed listing: one JSON object per line.
pub const NDJSON_MEDIA_TYPE: &str = "application/x-ndjson";
/// The content coding for zstd-compressed bodies (feature `zstd`).
pub const ZSTD: &str = "zstd";

/// `/artifact?id=<hex>`.
pub fn artifact_path(id: &ArtifactId) -> String {
    format!("{ARTIFACT_PATH}?id={id}")
}

/// Parses a `Retry-After` value in seconds (the HTTP-date form is not used by our server and
/// is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether an `Accept-Encoding` header value accepts `coding` (a `q=0` parameter refuses it).
pub fn accepts_encoding(header: &str, coding: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        if !name.eq_ignore_ascii_case(coding) {
            return false;
        }
        parts.all(|param| {
            let Some(q) = param.strip_prefix("q=").or_else(|| param.strip_prefix("Q=")) else {
                return true;
            };
            q.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding() {
        for (header, yes) in [
            ("zstd", true),
            ("gzip, zstd;q=0.5", true),
            ("gzip,ZSTD", true),
            ("zstd;q=0", false),
            ("zstd; q=0.0", false),
            ("gzip, br", false),
            ("", false),
            ("zstdx", false),
        ] {
            assert_eq!(accepts_encoding(header, "zstd"), yes, "{header:?}");
        }
    }

    #[test]
    fn retry_after() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
