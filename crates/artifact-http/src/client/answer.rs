//! The pieces of an answer below the retry loop: its header values, the bound on a stream
//! from what a server announced, the low-speed check of a body, zstd decoding, and the
//! errors made of failed requests and error answers; `Inner::send`, one request under the token
//! and the idle timeout.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use artifact_cache::ArtifactId;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header;

use super::{Endpoint, Inner};
use crate::{Error, TimeoutKind, error::escape_remote, protocol};

pub(super) type BoxStream<'a> =
    std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>>;

/// A decimal header of `response`, if present and a number.
pub(super) fn header_number(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The most bytes of tar stream a tree can take, from what its server announced: `size`
/// bytes of file content, and `entries` entries (files, directories, symlinks), or `files`
/// files and up to [`UNANNOUNCED_ENTRIES`] others when the server does not say.
pub(crate) fn stream_bound(size: u64, files: Option<u64>, entries: Option<u64>) -> u64 {
    let entries = entries.unwrap_or_else(|| files.unwrap_or(0).saturating_add(UNANNOUNCED_ENTRIES));
    size.saturating_add(entries.saturating_mul(ENTRY_OVERHEAD)).saturating_add(END_OVERHEAD)
}

/// The most bytes an entry adds to a stream beyond its content: its header block, a PAX
/// header block and records carrying a path and a link target of up to 4 KiB each, and its
/// data's padding.
const ENTRY_OVERHEAD: u64 = 10 * 1024;
/// The end-of-archive marker, with room to spare.
const END_OVERHEAD: u64 = 2 * 1024;
/// Directories and symlinks assumed when a server announces no entry count.
const UNANNOUNCED_ENTRIES: u64 = 1 << 16;

/// `wire`, failing (and setting `too_slow`) once less than `rate` bytes per second arrived over
/// a whole `window`, like curl's `--speed-limit`/`--speed-time`.
pub(super) fn low_speed<'a>(
    wire: impl Stream<Item = io::Result<Bytes>> + Send + 'a,
    rate: u64,
    window: Duration,
    too_slow: Arc<AtomicBool>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'a {
    let wanted = (rate as f64 * window.as_secs_f64()) as u64;
    let window_end = tokio::time::Instant::now() + window;
    let state = (Box::pin(wire), window_end, 0u64, false);
    futures_util::stream::unfold(state, move |(mut wire, mut window_end, mut bytes, done)| {
        let too_slow = too_slow.clone();
        async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    next = wire.next() => {
                        let item = next?;
                        if let Ok(chunk) = &item {
                            bytes += chunk.len() as u64;
                        }
                        return Some((item, (wire, window_end, bytes, false)));
                    }
                    () = tokio::time::sleep_until(window_end) => {
                        if bytes < wanted {
                            too_slow.store(true, Ordering::Release);
                            let err = io::Error::new(io::ErrorKind::TimedOut, "below the low-speed limit");
                            return Some((Err(err), (wire, window_end, bytes, true)));
                        }
                        bytes = 0;
                        window_end += window;
                    }
                }
            }
        }
    })
}

/// The response body, zstd-decoded if the server compressed it.
pub(super) fn decode<'a>(
    wire: impl Stream<Item = io::Result<Bytes>> + Send + 'a,
    zstd: bool,
) -> std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>> {
    #[cfg(feature = "zstd")]
    if zstd {
        return Box::pin(crate::compress::zstd_decode(wire));
    }
    debug_assert!(!zstd, "zstd is only accepted when asked for");
    Box::pin(wire)
}

/// A `send` failure: connect errors apart from the rest.
pub(super) fn request_error(id: ArtifactId, endpoint: &Endpoint, err: reqwest::Error) -> Error {
    let endpoint = endpoint.base.to_string();
    if err.is_connect() && is_tls_failure(&err) {
        Error::TlsHandshake { endpoint, source: Arc::new(err) }
    } else if err.is_connect() {
        Error::Connect { endpoint, source: Arc::new(err) }
    } else {
        Error::Transfer { id, endpoint, source: Arc::new(err) }
    }
}

/// Whether the TLS library refused the connection (an untrusted certificate, say), as opposed
/// to the network. The reason travels inside an `io::Error` somewhere in the chain; only a TLS
/// build can tell.
fn is_tls_failure(err: &reqwest::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        // An `io::Error` hides what it wraps from `source()`: look inside, through any nesting.
        fn is_tls(mut err: &(dyn std::error::Error + 'static)) -> bool {
            loop {
                if err.is::<tokio_rustls::rustls::Error>() {
                    return true;
                }
                match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                    Some(inner) => err = inner,
                    None => return false,
                }
            }
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(err) = source {
            if is_tls(err) {
                return true;
            }
            source = err.source();
        }
    }
    let _ = err;
    false
}

/// The most of an error body read for its message.
const ERROR_BODY_BYTES: usize = 4096;
/// The longest an error body is read for its message (or the idle timeout, if shorter).
const ERROR_BODY_TIME: Duration = Duration::from_secs(5);

/// An [`Error::Status`] from a non-success response, with the server's message (at most
/// 4 KiB of it, read within 5 s or `idle` if shorter, control characters escaped); an
/// [`Error::Redirect`] for a 3xx.
pub(super) async fn status_error(
    id: ArtifactId,
    endpoint: &Endpoint,
    response: reqwest::Response,
    idle: Duration,
) -> Error {
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        let location = response.headers().get(header::LOCATION);
        let location = location.map(|v| escape_remote(&String::from_utf8_lossy(v.as_bytes())));
        let endpoint = endpoint.base.to_string();
        return Error::Redirect { id, endpoint, status, location: location.unwrap_or_default() };
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(protocol::parse_retry_after);
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_BYTES {
                break;
            }
        }
    };
    // A body that drips (or never ends) must not hold the attempt: what came in time will do.
    let _ = tokio::time::timeout(idle.min(ERROR_BODY_TIME), read).await;
    body.truncate(ERROR_BODY_BYTES);
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim().to_owned()
        });
    let message = escape_remote(&message);
    Error::Status { id, endpoint: endpoint.base.to_string(), status, message, retry_after }
}

impl Inner {
    /// `request` with the bearer token, if there is one.
    pub(super) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` with the token, waiting at most the idle timeout for the answer's head.
    pub(super) async fn send(
        &self,
        id: ArtifactId,
        endpoint: &Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let idle = self.settings.idle_timeout;
        match tokio::time::timeout(idle, self.authorized(request).send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(request_error(id, endpoint, err)),
            Err(_) => Err(idle_error(id, endpoint, idle)),
        }
    }
}

/// The error of an endpoint that sent nothing for `after`.
pub(super) fn idle_error(id: ArtifactId, endpoint: &Endpoint, after: Duration) -> Error {
    Error::Timeout { id, endpoint: Some(endpoint.base.to_string()), what: TimeoutKind::Idle, after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_honest_stream_fits_the_bound_its_headers_give() {
        let dir = tempfile::tempdir().unwrap();
        // Long paths and link targets (PAX headers), an empty file, odd sizes, deep dirs.
        let deep = (0..40).map(|i| format!("{i:0>90}")).collect::<Vec<_>>().join("/");
        std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
        std::fs::write(dir.path().join(&deep).join("f"), vec![1u8; 513]).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::os::unix::fs::symlink(format!("{deep}/f"), dir.path().join("link")).unwrap();
        let mut stream = Vec::new();
        let summary = tarstream::send(dir.path(), &mut stream).unwrap();
        let bound = stream_bound(summary.file_bytes, Some(summary.files), Some(summary.entries()));
        assert!(stream.len() as u64 <= bound, "{} > {bound}", stream.len());
        // Without an entry count, room for directories and symlinks is assumed.
        assert!(stream.len() as u64 <= stream_bound(summary.file_bytes, Some(summary.files), None));
        // A 16-byte tree of one file cannot carry a 100 GiB entry.
        assert!(stream_bound(16, Some(1), Some(1)) < 1 << 20);
        assert_eq!(stream_bound(u64::MAX, None, None), u64::MAX);
    }
}
