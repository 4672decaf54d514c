//! [`Error`]: everything that can go wrong while serving, downloading or uploading, with the
//! artifact and the endpoint it concerns.

use std::{io, sync::Arc, time::Duration};

use artifact_cache::ArtifactId;
use tarstream::Digest;

/// An error from the server ([`serve`](crate::serve)) or the client ([`Downloader`],
/// [`download`](crate::download), [`upload`](crate::upload)).
///
/// Errors are cheap to clone (their sources are shared), so that concurrent downloads of one
/// id that share a transfer can all report its failure.
///
/// # Treating a remote failure as a cache miss
///
/// A build system that can rebuild an artifact should not fail a job because a cache server is
/// down. [`is_remote`](Error::is_remote) tells a failure of the remote side (absent, refused,
/// unreachable, slow, corrupt) from a local problem (the local cache's disk, a malformed
/// endpoint):
///
/// ```no_run
/// # async fn example(downloader: artifact_http::Downloader, cache: artifact_cache::Cache,
/// #                  id: artifact_cache::ArtifactId) -> Result<(), artifact_http::Error> {
/// match downloader.download(&cache, &id).await {
///     Ok(downloaded) => println!("hit: {}", downloaded.path().display()),
///     // Absent everywhere, or every peer failed: build it instead.
///     Err(err) if err.is_remote() => println!("miss: {err}"),
///     // The local cache is broken: that is worth stopping for.
///     Err(err) => return Err(err),
/// }
/// # Ok(())
/// # }
/// ```
///
/// [`Downloader`]: crate::Downloader
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint URL that cannot be used.
    #[error("invalid endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every endpoint asked answered 404: the artifact is absent remotely.
    #[error("artifact {id} not found on {} endpoint(s)", endpoints.len())]
    NotFound {
        /// The artifact.
        id: ArtifactId,
        /// The endpoints that said so.
        endpoints: Vec<String>,
    },
    /// The server answered with a status that is neither success nor 404.
    #[error("{endpoint} answered {status} for artifact {id}{}", message_suffix(.message))]
    Status {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The server's explanation (the `error` field of its JSON body), if any.
        message: String,
        /// How long the server asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// Connecting to the endpoint failed (refused, unreachable, DNS, connect timeout).
    #[cfg(feature = "client")]
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What the HTTP client said.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The request or the response body failed after connecting (a connection reset, a body
    /// cut short).
    #[cfg(feature = "client")]
    #[error("transfer of artifact {id} with {endpoint} failed")]
    Transfer {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint.
        endpoint: String,
        /// What the HTTP client said.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// Nothing arrived (or nothing could be sent) for too long, or the whole operation took
    /// too long.
    #[error("{what} timed out after {after:?} (artifact {id}{})", endpoint_suffix(.endpoint))]
    Timeout {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint, when one was being talked to.
        endpoint: Option<String>,
        /// Which timeout fired.
        what: TimeoutKind,
        /// Its duration.
        after: Duration,
    },
    /// The tar stream received was malformed, truncated, unsafe or over a limit (nothing was
    /// kept).
    #[error("bad tar stream for artifact {id} from {endpoint}")]
    Stream {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint that sent it.
        endpoint: String,
        /// What tarstream found.
        #[source]
        source: Arc<tarstream::Error>,
    },
    /// The tree received does not have the digest the server announced (nothing was kept), or
    /// the server holds another tree under the id being uploaded.
    #[error("artifact {id} from {endpoint} has tree digest {actual}, but {expected} was announced")]
    DigestMismatch {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint.
        endpoint: String,
        /// The digest announced (by the server for a download, by us for an upload).
        expected: Digest,
        /// The digest of what was received (or of what the server holds).
        actual: Digest,
    },
    /// The tar stream received names an entry that cannot be created here (a name component
    /// too long for the local file system, say): the stream's content is at fault, so the
    /// endpoint is ruled out and the next one tried (nothing was kept).
    #[error("artifact {id} from {endpoint} has an entry that cannot be created here: {entry:?}")]
    Unwritable {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint that sent it.
        endpoint: String,
        /// Where the entry was to be created.
        entry: std::path::PathBuf,
        /// What the file system said.
        #[source]
        source: Arc<io::Error>,
    },
    /// The server answered with a redirect (3xx): the protocol has none, so it is not
    /// followed and the endpoint counts as failed.
    #[error(
        "{endpoint} answered {status} for artifact {id}: a redirect to \"{location}\", not followed"
    )]
    Redirect {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The `Location` header, control characters escaped (empty if none).
        location: String,
    },
    /// The server's answer breaks the protocol (for example, no digest header).
    #[error("bad response from {endpoint} for artifact {id}: {reason}")]
    Protocol {
        /// The artifact.
        id: ArtifactId,
        /// The endpoint.
        endpoint: String,
        /// The rule broken.
        reason: String,
    },
    /// The local cache failed (disk full, lock wait timed out, i/o).
    #[error("local cache error for artifact {id}")]
    Cache {
        /// The artifact.
        id: ArtifactId,
        /// What the cache said.
        #[source]
        source: Arc<artifact_cache::Error>,
    },
    /// Reading the local artifact for an upload failed.
    #[error("cannot read local artifact {id} for upload")]
    Local {
        /// The artifact.
        id: ArtifactId,
        /// What tarstream said.
        #[source]
        source: Arc<tarstream::Error>,
    },
    /// The server's TLS certificate or key cannot be used (feature `tls`).
    #[cfg(feature = "tls")]
    #[error("cannot use the TLS {what} {}: {reason}", path.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file (`<memory>` for PEM given in memory).
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The OS error, when the file cannot be read.
        #[source]
        source: Option<Arc<io::Error>>,
    },
    /// The TLS handshake with an `https://` endpoint failed: most often its certificate is
    /// not signed by a trusted authority, or is not for that host name. Not retried: the
    /// same certificate would come again.
    #[cfg(feature = "client")]
    #[error(
        "TLS handshake with {endpoint} failed (is its certificate trusted, and for this host?)"
    )]
    TlsHandshake {
        /// The endpoint.
        endpoint: String,
        /// What the HTTP client said (the TLS library's reason is among its sources).
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// An object-store endpoint of a [`Downloader`](crate::Downloader) failed (feature
    /// `store`): the artifact is absent there, the store refused the credentials, was
    /// unreachable, or holds a damaged object.
    #[cfg(feature = "store")]
    #[error("store {endpoint} failed for artifact {id}")]
    Store {
        /// The artifact.
        id: ArtifactId,
        /// The store URL.
        endpoint: String,
        /// What the store said.
        #[source]
        source: Arc<artifact_store::Error>,
    },
    /// A server-side i/o operation failed (accepting connections, for example).
    #[error("server i/o failed: {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
}

/// Which timeout fired ([`Error::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No byte of the response (or room for the request body) for the idle timeout.
    Idle,
    /// The whole operation, retries included, took longer than its overall timeout.
    Overall,
    /// Waiting for another writer of the same id in the local cache took too long.
    LockWait,
    /// The body arrived slower than the low-speed limit for a whole window
    /// ([`low_speed_limit`](crate::DownloaderBuilder::low_speed_limit)).
    LowSpeed,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutKind::Idle => "idle read",
            TimeoutKind::Overall => "overall deadline",
            TimeoutKind::LockWait => "waiting for the local writer",
            TimeoutKind::LowSpeed => "transfer below the low-speed limit",
        })
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

fn endpoint_suffix(endpoint: &Option<String>) -> String {
    match endpoint {
        Some(endpoint) => format!(" from {endpoint}"),
        None => String::new(),
    }
}

impl Error {
    /// The artifact is absent: every endpoint asked answered 404 ([`Error::NotFound`]), or,
    /// for an upload, the local cache does not have it.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Cache { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// Trying again later, or elsewhere, may succeed: connect errors, timeouts, a body cut
    /// short, a digest mismatch, 5xx answers, 408, 409 and 429 (the id is being written, or
    /// the server is busy), a lock conflict in the local cache. Not for 404, other 4xx, or a
    /// stream that breaks tarstream's rules (the same bytes would come again).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || (500..600).contains(status)
            }
            #[cfg(feature = "client")]
            Error::Connect { .. } | Error::Transfer { .. } => true,
            Error::Timeout { what, .. } => *what != TimeoutKind::Overall,
            Error::Stream { source, .. } => source.is_truncated() || source.is_io(),
            Error::DigestMismatch { .. } => true,
            Error::Cache { source, .. } => source.is_retryable(),
            #[cfg(feature = "store")]
            Error::Store { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The failure is on the remote side or between us and it: absent remotely, refused,
    /// unreachable, too slow, redirected elsewhere, or sent bad data (a stream over the size it
    /// announced, or one whose entries cannot be created here). A build system that can
    /// rebuild the artifact may treat these as a cache miss. False for local problems: the
    /// local cache (its disk full, its root unwritable), reading the local artifact, a
    /// malformed endpoint URL, the server's own i/o.
    pub fn is_remote(&self) -> bool {
        match self {
            Error::NotFound { .. }
            | Error::Status { .. }
            | Error::Timeout { .. }
            | Error::Stream { .. }
            | Error::DigestMismatch { .. }
            | Error::Unwritable { .. }
            | Error::Redirect { .. }
            | Error::Protocol { .. } => true,
            #[cfg(feature = "client")]
            Error::Connect { .. } | Error::Transfer { .. } | Error::TlsHandshake { .. } => true,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => false,
            #[cfg(feature = "store")]
            Error::Store { source, .. } => source.is_remote(),
            Error::InvalidEndpoint { .. }
            | Error::Cache { .. }
            | Error::Local { .. }
            | Error::Io { .. } => false,
        }
    }

    /// The HTTP status the server answered, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked us to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The endpoint the error concerns, if one.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Error::InvalidEndpoint { url, .. } => Some(url),
            Error::Status { endpoint, .. }
            | Error::Unwritable { endpoint, .. }
            | Error::Redirect { endpoint, .. }
            | Error::Stream { endpoint, .. }
            | Error::DigestMismatch { endpoint, .. }
            | Error::Protocol { endpoint, .. } => Some(endpoint),
            #[cfg(feature = "client")]
            Error::Connect { endpoint, .. }
            | Error::Transfer { endpoint, .. }
            | Error::TlsHandshake { endpoint, .. } => Some(endpoint),
            #[cfg(feature = "tls")]
            Error::Tls { .. } => None,
            #[cfg(feature = "store")]
            Error::Store { endpoint, .. } => Some(endpoint),
            Error::Timeout { endpoint, .. } => endpoint.as_deref(),
            Error::NotFound { .. }
            | Error::Cache { .. }
            | Error::Local { .. }
            | Error::Io { .. } => None,
        }
    }

    /// Whether the bytes received failed a check (the digest, a header's checksum, a rule of
    /// the stream) rather than stopping short.
    #[cfg(feature = "client")]
    pub(crate) fn is_check_failure(&self) -> bool {
        match self {
            Error::DigestMismatch { .. } | Error::Unwritable { .. } => true,
            Error::Stream { source, .. } => !(source.is_truncated() || source.is_io()),
            _ => false,
        }
    }

    /// Whether this is how a server without the protocol's headers (the original seed
    /// server) says it lacks the artifact: a 400 whose message says "not found".
    #[cfg(feature = "client")]
    pub(crate) fn is_seed_miss(&self) -> bool {
        matches!(self, Error::Status { status: 400, message, .. }
            if message.to_ascii_lowercase().contains("not found"))
    }

    /// Whether this is a 404 from one endpoint (the failover loop moves on without retrying).
    #[cfg(feature = "client")]
    pub(crate) fn is_absent_here(&self) -> bool {
        #[cfg(feature = "store")]
        if let Error::Store { source, .. } = self {
            return matches!(**source, artifact_store::Error::NotFound { .. });
        }
        matches!(self, Error::Status { status: 404, .. })
    }
}

/// The one classification of a failed receive of a tar stream from `endpoint` into the local
/// cache: whatever the stream's content causes is the remote's fault, the rest is local.
///
/// - An i/o error that the shape of an entry explains ([`tarstream::Error::is_entry_fault`]: a name too long,
///   a file too large, a loop, too many links) is [`Error::Unwritable`]: remote.
/// - Any other i/o error (a full disk, a read-only or unwritable root) is [`Error::Cache`]:
///   local, no endpoint can help.
/// - A stream that breaks a rule or a limit (the size the peer announced included) is
///   [`Error::Stream`]: remote.
#[cfg(feature = "client")]
pub(crate) fn receive_error(id: ArtifactId, endpoint: &str, err: tarstream::Error) -> Error {
    let entry_fault = err.is_entry_fault();
    match err {
        tarstream::Error::Io { path, source } if entry_fault => Error::Unwritable {
            id,
            endpoint: endpoint.to_owned(),
            entry: path,
            source: Arc::new(source),
        },
        tarstream::Error::Io { path, source } => {
            Error::Cache { id, source: Arc::new(artifact_cache::Error::from_io(path, source)) }
        }
        err => Error::Stream { id, endpoint: endpoint.to_owned(), source: Arc::new(err) },
    }
}

#[cfg(any(feature = "server", feature = "client"))]
/// Remote text (an error body, a header value, a name) made safe to print: control
/// characters (ESC, NUL, CR, BEL...) are escaped as `\u{1b}`, so a peer cannot drive the
/// terminal that shows our messages.
pub(crate) fn escape_remote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error and its root cause on one line, `error: root cause`, for the log line of each
/// failed attempt: short, while the final error carries the whole chain once.
#[cfg(feature = "client")]
pub(crate) fn error_brief(err: &(dyn std::error::Error + 'static)) -> String {
    let mut root = None;
    let mut source = err.source();
    while let Some(err) = source {
        root = Some(err);
        source = err.source();
    }
    match root {
        Some(root) => escape_remote(&format!("{err}: {root}")),
        None => escape_remote(&err.to_string()),
    }
}

/// An error and its sources on one line, `error: source: source...`, for logs and for the
/// messages a server sends its clients.
#[cfg(any(feature = "server", feature = "client"))]
#[cfg_attr(not(any(feature = "server", feature = "tls")), allow(dead_code))]
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    // Printable ASCII needs no escape: kept as it is, without a copy (every 404 comes here).
    if text.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
        return text;
    }
    escape_remote(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ArtifactId {
        "ab".parse().unwrap()
    }

    fn status(status: u16) -> Error {
        Error::Status {
            id: id(),
            endpoint: "http://x".into(),
            status,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn statuses_are_classified() {
        for (code, retryable) in
            [(400, false), (401, false), (404, false), (409, true), (413, false), (429, true)]
        {
            assert_eq!(status(code).is_retryable(), retryable, "{code}");
        }
        for code in [500, 502, 503, 507] {
            assert!(status(code).is_retryable(), "{code}");
        }
        assert!(status(500).is_remote());
        assert_eq!(status(503).status(), Some(503));
    }

    #[test]
    fn local_failures_are_not_remote() {
        let err = Error::Cache {
            id: id(),
            source: Arc::new(artifact_cache::Error::NotFound { id: id() }),
        };
        assert!(!err.is_remote());
        assert!(err.is_not_found());
        let err = Error::NotFound { id: id(), endpoints: vec!["http://a".into()] };
        assert!(err.is_remote() && err.is_not_found() && !err.is_retryable());
        assert_eq!(err.to_string(), "artifact ab not found on 1 endpoint(s)");
    }

    #[cfg(any(feature = "server", feature = "client"))]
    #[test]
    fn remote_text_loses_its_control_characters() {
        let escaped = escape_remote("a\u{1b}[2Jb\0c\u{7}\r\nd\u{9b}e\u{202e}f é");
        assert_eq!(escaped, "a\\u{1b}[2Jb\\u{0}c\\u{7}\\r\\nd\\u{9b}e\\u{202e}f é");
        assert!(!escaped.chars().any(char::is_control));
    }

    #[cfg(any(feature = "server", feature = "client"))]
    #[test]
    fn error_chains_are_escaped_unless_plain() {
        let plain = io::Error::other("disk on fire: errno 5");
        assert_eq!(error_chain(&plain), "disk on fire: errno 5");
        let hostile =
            Error::Io { what: "reading", source: Arc::new(io::Error::other("a\u{1b}[2Jb é")) };
        assert_eq!(error_chain(&hostile), "server i/o failed: reading: a\\u{1b}[2Jb é");
    }

    #[cfg(feature = "client")]
    #[test]
    fn the_streams_entries_are_the_remotes_fault_the_disk_is_ours() {
        let classify = |kind: io::ErrorKind| {
            let err = tarstream::Error::Io { path: "x".into(), source: io::Error::from(kind) };
            receive_error(id(), "http://a", err)
        };
        for kind in [io::ErrorKind::InvalidFilename, io::ErrorKind::FileTooLarge] {
            let err = classify(kind);
            assert!(matches!(err, Error::Unwritable { .. }), "{kind:?}: {err:?}");
            assert!(err.is_remote() && !err.is_retryable(), "{kind:?}");
        }
        let enametoolong = io::Error::from_raw_os_error(36);
        let enametoolong = tarstream::Error::Io { path: "x".into(), source: enametoolong };
        assert!(enametoolong.is_entry_fault(), "ENAMETOOLONG is the entry's name");
        for kind in [
            io::ErrorKind::StorageFull,
            io::ErrorKind::QuotaExceeded,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let err = classify(kind);
            assert!(matches!(err, Error::Cache { .. }) && !err.is_remote(), "{kind:?}: {err:?}");
        }
        let full =
            artifact_cache::Error::from_io("/c/tmp/x".into(), io::ErrorKind::StorageFull.into());
        assert!(full.is_disk_full());
        assert_eq!(
            full.to_string(),
            r#"not enough free space at "/c/tmp/x""#,
            "no made-up numbers"
        );
        let limit = tarstream::Error::LimitExceeded {
            limit: tarstream::Limit::Bytes(16),
            entry: Some("big".into()),
        };
        let err = receive_error(id(), "http://a", limit);
        assert!(matches!(err, Error::Stream { .. }) && err.is_remote() && !err.is_retryable());
    }

    #[test]
    fn messages_are_lowercase_without_full_stop() {
        let err = Error::Timeout {
            id: id(),
            endpoint: Some("http://a".into()),
            what: TimeoutKind::Idle,
            after: Duration::from_secs(2),
        };
        assert_eq!(err.to_string(), "idle read timed out after 2s (artifact ab from http://a)");
        assert!(err.is_retryable());
        let mut with_message = status(503);
        if let Error::Status { message, .. } = &mut with_message {
            *message = "too many streams".into();
        }
        assert_eq!(
            with_message.to_string(),
            "http://x answered 503 for artifact ab: too many streams"
        );
    }
}
