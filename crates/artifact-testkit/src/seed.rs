//! [`SeedServer`]: a fake of the original distbuild seed server, which answers
//! `GET /artifact?id=ID` with a bare tar stream (no digest, size or length headers, no
//! ranges) and a 400 `artifact not found` for an id it lacks.
//!
//! ```
//! use artifact_testkit::seed::SeedServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = SeedServer::start().await;
//! server.insert("a1", b"not even a tar stream".to_vec());
//! let url = format!("{}/artifact?id=a1", server.url());
//! assert!(url.starts_with("http://127.0.0.1:"));
//! # }
//! ```

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    body::{Body, Bytes},
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

/// The streams it serves, by id, and where to cut the next answer.
#[derive(Debug, Default)]
struct Shared {
    streams: Mutex<HashMap<String, Vec<u8>>>,
    cut_next: Mutex<Option<usize>>,
}

type Streams = Arc<Shared>;

/// A fake seed server on `127.0.0.1:0`; stops when dropped.
#[derive(Debug)]
pub struct SeedServer {
    addr: SocketAddr,
    url: String,
    streams: Streams,
    task: JoinHandle<()>,
}

impl SeedServer {
    /// Starts one, serving nothing yet.
    pub async fn start() -> SeedServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("a bound address");
        let streams = Streams::default();
        let app = axum::Router::new().route("/artifact", get(answer)).with_state(streams.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the seed server runs");
        });
        SeedServer { addr, url: format!("http://{addr}"), streams, task }
    }

    /// Serves `stream` (any bytes: a tar stream, or not) for `id`.
    pub fn insert(&self, id: &str, stream: Vec<u8>) {
        let mut streams = self.streams.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.insert(id.to_owned(), stream);
    }

    /// Breaks the connection of the next answer after its first `n` body bytes.
    pub fn cut_next_after(&self, n: usize) {
        *self.streams.cut_next.lock().unwrap_or_else(PoisonError::into_inner) = Some(n);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The seed's answer: the stream in chunks (so no `Content-Length`), whatever the request's
/// other headers say (a `Range` is ignored), or 400 for an unknown id.
async fn answer(State(streams): State<Streams>, RawQuery(query): RawQuery) -> Response {
    let id = query.as_deref().unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("id="));
    let stream = id.and_then(|id| {
        streams.streams.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    });
    let Some(stream) = stream else {
        return (StatusCode::BAD_REQUEST, "artifact not found").into_response();
    };
    let cut = streams.cut_next.lock().unwrap_or_else(PoisonError::into_inner).take();
    let sent = cut.map_or(&stream[..], |n| &stream[..n.min(stream.len())]);
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        sent.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let end = cut.map(|_| async {
        // Yield once first, so that what went before the cut is written out.
        tokio::task::yield_now().await;
        Err(std::io::Error::other("injected fault: connection cut"))
    });
    let end = futures_util::stream::iter(end).then(|cut| cut);
    Response::new(Body::from_stream(futures_util::stream::iter(chunks).chain(end)))
}
