//! [`FakePeer`]: a TCP server on `127.0.0.1:0` that misbehaves the way broken or hostile peers
//! do: it stalls, talks garbage, or hangs up; and [`refused_url`], an address nobody listens
//! on.
//!
//! ```
//! use artifact_testkit::peer::{Behavior, FakePeer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let peer = FakePeer::start(Behavior::Garbage).await;
//! assert!(peer.url().starts_with("http://127.0.0.1:"));
//! # }
//! ```

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// How a [`FakePeer`] treats each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// Accepts, reads the request, never answers.
    Stall,
    /// Answers `200` with a tar content type and a (made-up) digest header, sends these body
    /// bytes, then stalls with the connection open.
    StallAfterHeaders(Vec<u8>),
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers `200` with a valid-looking header and a body that is not a tar stream.
    GarbageBody,
    /// Closes the connection as soon as the request has arrived.
    HangUp,
}

/// A misbehaving peer; stops when dropped.
#[derive(Debug)]
pub struct FakePeer {
    addr: SocketAddr,
    url: String,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FakePeer {
    /// Starts listening; every connection gets `behavior`.
    pub async fn start(behavior: Behavior) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("a bound address");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, SeqCst);
                tokio::spawn(misbehave(stream, behavior.clone()));
            }
        });
        FakePeer { addr, url: format!("http://{addr}"), connections, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(SeqCst)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A digest header value that matches nothing.
const FAKE_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

async fn misbehave(mut stream: TcpStream, behavior: Behavior) {
    read_head(&mut stream).await;
    match behavior {
        Behavior::Stall => stall(stream).await,
        Behavior::StallAfterHeaders(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-artifact-digest: {FAKE_DIGEST}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.write_all(b"\r\n").await;
            stall(stream).await;
        }
        Behavior::Garbage => {
            let _ = stream.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n\xff\xfe").await;
        }
        Behavior::GarbageBody => {
            let body = [0x5au8; 1536];
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-artifact-digest: {FAKE_DIGEST}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
        }
        Behavior::HangUp => {}
    }
}

/// Reads until the end of the request head (or EOF), discarding it.
async fn read_head(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 1 << 20 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Keeps the connection open, reading and discarding, until the other side closes it.
async fn stall(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// An `http://127.0.0.1:<port>` URL where nothing listens (connections are refused).
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}")
}
