//! [`Reject`]: why the server refused or failed a request, mapped to a status, a JSON body and
//! headers, and logged once, in `into_response`.

use std::time::Duration;

use artifact_cache::ArtifactId;
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tarstream::Digest;
use tracing::{debug, info, warn};

use crate::{error::error_chain, protocol};

/// A request the server refused, or could not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Reject {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid token is required")]
    Unauthorized,
    #[error("artifact {0} not found")]
    NotFound(ArtifactId),
    #[error("artifact {id} is {reason}; try again later")]
    Busy { id: ArtifactId, reason: &'static str, retry_after: u64 },
    #[error("too many streams in flight; try again later")]
    Overloaded { retry_after: u64 },
    #[error("upload larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bad tar stream for artifact {id}")]
    BadStream {
        id: ArtifactId,
        #[source]
        source: tarstream::Error,
    },
    #[error("artifact {id}: the upload has tree digest {actual}, but {expected} was announced")]
    DigestMismatch { id: ArtifactId, expected: Digest, actual: Digest },
    #[error("upload of artifact {id} was cut short: {reason}")]
    UploadCut { id: ArtifactId, reason: String },
    #[error("upload of artifact {id} sent nothing for {after:?}")]
    UploadStalled { id: ArtifactId, after: Duration },
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("not enough disk space for artifact {id}")]
    DiskFull {
        id: ArtifactId,
        #[source]
        source: artifact_cache::Error,
    },
    /// `/healthz`: the cache cannot be used (its root deleted, unmounted or read-only).
    #[error(transparent)]
    Unhealthy(artifact_cache::Error),
    #[cfg(feature = "store")]
    #[error("{op} the store failed for artifact {id}: {reason}")]
    Store {
        id: ArtifactId,
        op: &'static str,
        status: StatusCode,
        retry_after: Option<u64>,
        reason: String,
        #[source]
        source: artifact_store::Error,
    },
    #[error("internal error: {what}")]
    Internal {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Reject {
    /// A 500 for `source`, saying what was being done.
    pub(crate) fn internal(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Reject {
        Reject::Internal { what: what.into(), source: source.into() }
    }

    /// Maps a cache error about `id` that no caller handled more precisely.
    pub(crate) fn from_cache(
        id: ArtifactId,
        err: artifact_cache::Error,
        retry_after: u64,
    ) -> Reject {
        match err {
            artifact_cache::Error::NotFound { .. } => Reject::NotFound(id),
            artifact_cache::Error::WriteLocked { .. } => {
                Reject::Busy { id, reason: "being written or removed", retry_after }
            }
            artifact_cache::Error::ReadLocked { .. } => {
                Reject::Busy { id, reason: "being read", retry_after }
            }
            artifact_cache::Error::Timeout { .. } => {
                Reject::Busy { id, reason: "being written by another upload", retry_after }
            }
            err if err.is_disk_full() => Reject::DiskFull { id, source: err },
            err => Reject::internal(format!("cache operation on {id}"), err),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reject::BadRequest(_)
            | Reject::BadStream { .. }
            | Reject::DigestMismatch { .. }
            | Reject::UploadCut { .. } => StatusCode::BAD_REQUEST,
            Reject::Unauthorized => StatusCode::UNAUTHORIZED,
            Reject::NotFound(_) => StatusCode::NOT_FOUND,
            Reject::Busy { .. } => StatusCode::CONFLICT,
            Reject::Overloaded { .. } | Reject::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Reject::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::UploadStalled { .. } => StatusCode::REQUEST_TIMEOUT,
            Reject::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reject::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Reject::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            #[cfg(feature = "store")]
            Reject::Store { status, .. } => *status,
        }
    }

    /// Whether [`log`](Self::log) warns (the status page lists those).
    fn is_warning(&self) -> bool {
        match self {
            Reject::BadStream { .. }
            | Reject::DigestMismatch { .. }
            | Reject::DiskFull { .. }
            | Reject::Internal { .. }
            | Reject::Unhealthy(_) => true,
            #[cfg(feature = "store")]
            Reject::Store { .. } => true,
            _ => false,
        }
    }

    /// Logs the rejection once, with its error `chain`, at a level that fits how interesting
    /// it is.
    fn log(&self, chain: &str) {
        match self {
            Reject::NotFound(_) => debug!("{chain}"),
            Reject::BadRequest(_) | Reject::Unauthorized | Reject::UnsupportedEncoding(_) => {
                info!("{chain}")
            }
            Reject::Busy { .. } => info!(conflict = true, "{chain}"),
            Reject::Overloaded { .. } | Reject::TooLarge { .. } => info!("{chain}"),
            Reject::BadStream { .. } | Reject::DigestMismatch { .. } => {
                warn!(verification_failed = true, "upload rejected, nothing kept: {chain}")
            }
            Reject::UploadCut { .. } | Reject::UploadStalled { .. } => {
                info!("upload aborted, nothing kept: {chain}")
            }
            Reject::DiskFull { .. } | Reject::Internal { .. } => warn!("{chain}"),
            Reject::Unhealthy(_) => warn!("health check failed: {chain}"),
            #[cfg(feature = "store")]
            Reject::Store { .. } => warn!(store_failed = true, "{chain}"),
        }
    }
}

/// The JSON body of an error answer.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        if let Reject::NotFound(id) = &self {
            // The most common answer of a build cache: the same body as below, written at
            // once (an id is hexadecimal, so it needs no escaping in JSON).
            debug!("artifact {id} not found");
            // Exactly as long as it needs to be: the `Vec` becomes the body's `Bytes` without
            // another allocation or a copy.
            let (head, tail) = ("{\"error\":\"artifact ", " not found\"}");
            let mut body = Vec::with_capacity(head.len() + 2 * id.as_bytes().len() + tail.len());
            body.extend_from_slice(head.as_bytes());
            std::io::Write::write_fmt(&mut body, format_args!("{id}")).expect("a Vec takes it");
            body.extend_from_slice(tail.as_bytes());
            let body = axum::body::Bytes::from(body);
            let content_type = HeaderValue::from_static("application/json");
            return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, content_type)], body)
                .into_response();
        }
        let chain = error_chain(&self);
        self.log(&chain);
        let status = self.status();
        // Clients get the whole story for their own mistakes; server-side details stay in the log.
        let message = if status.is_server_error() { self.to_string() } else { chain };
        let warned = self.is_warning().then(|| super::status::Warned {
            message: message.clone(),
            #[cfg(feature = "store")]
            store: matches!(self, Reject::Store { .. }),
            #[cfg(not(feature = "store"))]
            store: false,
        });
        let mut response = (status, Json(ErrorBody { error: &message })).into_response();
        if let Some(warned) = warned {
            response.extensions_mut().insert(warned);
        }
        let headers = response.headers_mut();
        match &self {
            Reject::Busy { retry_after, .. } | Reject::Overloaded { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            #[cfg(feature = "store")]
            Reject::Store { retry_after: Some(retry_after), .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Reject::Unauthorized => {
                for challenge in protocol::AUTH_CHALLENGES {
                    headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 404 written at once says what the general path would: the same status, type and
    /// JSON, which parses back to the error's message.
    #[tokio::test]
    async fn a_not_found_answer_is_the_general_one() {
        for text in ["0bad", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"] {
            let id: ArtifactId = text.parse().unwrap();
            let response = Reject::NotFound(id).into_response();
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let general =
                serde_json::to_vec(&ErrorBody { error: &Reject::NotFound(id).to_string() })
                    .unwrap();
            assert_eq!(body, general);
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed["error"], format!("artifact {text} not found"));
        }
    }
}
