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

/// The `WWW-Authenticate` challenges of a 401, one header each: Bearer for programs, and Basic,
/// which makes a browser ask for a user name and password (the token is the password; see
/// [`presents_token`]).
pub const AUTH_CHALLENGES: [&str; 2] =
    ["Bearer realm=\"artifact\"", "Basic realm=\"artifact\", charset=\"UTF-8\""];

/// Whether `authorization`, the value of an `Authorization` header, presents `token`:
/// `Bearer TOKEN`, or `Basic` credentials whose password is the token under any user name
/// (what a browser sends once it has asked for a user name and password). Scheme names are
/// case-insensitive, as in every HTTP authentication scheme; the token is compared in constant
/// time.
///
/// ```
/// use artifact_http::protocol::presents_token;
///
/// assert!(presents_token("Bearer s3cret", "s3cret"));
/// // `ops:s3cret` in base64: the user name is not checked.
/// assert!(presents_token("Basic b3BzOnMzY3JldA==", "s3cret"));
/// assert!(!presents_token("Bearer s3cre", "s3cret"));
/// ```
#[cfg(feature = "server")]
pub fn presents_token(authorization: &str, token: &str) -> bool {
    use base64::Engine as _;
    use subtle::ConstantTimeEq as _;
    let Some((scheme, credentials)) = authorization.trim_start().split_once(' ') else {
        return false;
    };
    let credentials = credentials.trim();
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        std::borrow::Cow::Borrowed(credentials.as_bytes())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let Some(colon) = pair.iter().position(|&b| b == b':') else { return false };
        std::borrow::Cow::Owned(pair[colon + 1..].to_vec())
    } else {
        return false;
    };
    bool::from(presented.ct_eq(token.as_bytes()))
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

    #[cfg(feature = "server")]
    #[test]
    fn tokens_are_presented_as_bearer_or_as_the_basic_password() {
        for (value, presents) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("BEARER   s3cret ", true),
            ("Bearer s3cre", false),
            ("Bearer s3cret2", false),
            // ops:s3cret, and :s3cret (no user name)
            ("Basic b3BzOnMzY3JldA==", true),
            ("basic  OnMzY3JldA== ", true),
            // ops:s3:cret (the password runs to the end, colons included)
            ("Basic b3BzOnMzOmNyZXQ=", false),
            // s3cret: no colon, so no password
            ("Basic czNjcmV0", false),
            ("Basic not*base64", false),
            ("Bearers3cret", false),
            ("Digest s3cret", false),
            ("s3cret", false),
            ("", false),
        ] {
            assert_eq!(presents_token(value, "s3cret"), presents, "{value:?}");
        }
        // ops:s3:cret
        assert!(presents_token("Basic b3BzOnMzOmNyZXQ=", "s3:cret"));
    }

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
