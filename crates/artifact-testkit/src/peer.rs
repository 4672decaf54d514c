//! [`FakePeer`]: a TCP server on `127.0.0.1:0` that misbehaves the way broken or hostile peers
//! do: it stalls, talks garbage, or hangs up; and [`refused_url`], an address nobody listens
//! on.
//!
//! # The hostile catalogue
//!
//! Besides broken peers, [`Behavior`] has the peers a client must survive in a fleet where
//! any worker may be compromised; each should cost a client at most that endpoint (the next
//! one is tried), never its time, its disk or its terminal:
//!
//! | behavior | what the peer does | what a sound client does |
//! |---|---|---|
//! | [`LongNameEntry`](Behavior::LongNameEntry) | a stream with a 300-byte name component | rules the peer out (`ENAMETOOLONG` is the stream's fault, not the disk's) |
//! | [`SlowErrorBody`](Behavior::SlowErrorBody) | a 500 whose body drips | bounds the whole read of the error body in time |
//! | [`CompleteThenDrip`](Behavior::CompleteThenDrip) | a whole stream, then zeros that drip | commits nothing once its deadline passed |
//! | [`OversizedEntry`](Behavior::OversizedEntry) | announces 16 bytes, then an entry declaring 100 GiB | holds the peer to what it announced |
//! | [`EndlessZeros`](Behavior::EndlessZeros) | a whole stream, then zeros at full speed, forever | holds the peer to what it announced |
//! | [`Crawl`](Behavior::Crawl) | a valid stream, one byte per tick | gives up below a low-speed limit |
//! | [`Redirect`](Behavior::Redirect), [`RedirectLoop`](Behavior::RedirectLoop) | a 302 elsewhere, or to itself | follows no redirect |
//! | [`EscapeInjection`](Behavior::EscapeInjection) | an error message full of terminal escapes and NUL | escapes control characters before printing |
//!
//! [`Served`] is an honest answer (a stream, its digest and sizes) for the modes that send
//! one, and [`raw_tar`] builds streams no well-behaved writer would.
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
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::Duration,
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
    /// Answers `200` with a valid stream of one file whose name has a 300-byte component:
    /// no Linux file system can create it (`ENAMETOOLONG`).
    LongNameEntry,
    /// Answers `500` with a 4 KiB error body that arrives one byte per `every`.
    SlowErrorBody {
        /// The pause before each byte.
        every: Duration,
    },
    /// Answers `200` with the whole of `served` (a valid, verifiable stream), then one zero
    /// byte per `every`, forever: the stream is complete, the body never ends.
    CompleteThenDrip {
        /// The honest answer.
        served: Served,
        /// The pause before each trailing zero.
        every: Duration,
    },
    /// Answers `200` announcing a 16-byte tree of one file (`X-Artifact-Size: 16`), then
    /// sends an entry whose header declares 100 GiB, and zeros as fast as they are taken.
    OversizedEntry,
    /// Answers `200` with the honest headers and stream of `served`, then zeros as fast as
    /// they are taken, forever.
    EndlessZeros(Served),
    /// Answers `200` with the honest headers of `served`, then its stream one byte per
    /// `every`: never silent for long, never done.
    Crawl {
        /// The honest answer.
        served: Served,
        /// The pause before each byte.
        every: Duration,
    },
    /// Answers `302 Found` with this `Location`.
    Redirect(String),
    /// Answers `302 Found` with a `Location` that is the request's own URL.
    RedirectLoop,
    /// Answers `500` with a JSON error message full of terminal escape sequences (clear the
    /// screen, set the window title, ring the bell) and a NUL byte.
    EscapeInjection,
}

/// An honest answer for a [`FakePeer`] to send: a tar stream and the headers that describe
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The tar stream.
    pub stream: Vec<u8>,
    /// Its tree digest (`X-Artifact-Digest`).
    pub digest: String,
    /// Bytes of file content (`X-Artifact-Size`).
    pub size: u64,
    /// Regular files (`X-Artifact-Files`).
    pub files: u64,
    /// Entries: files, directories and symlinks (`X-Artifact-Entries`).
    pub entries: u64,
}

impl Served {
    /// The stream `tarstream::send` writes for `dir`, with its digest and sizes.
    ///
    /// # Panics
    ///
    /// If `dir` cannot be read.
    pub fn of(dir: &Path) -> Served {
        let mut stream = Vec::new();
        let summary = tarstream::send(dir, &mut stream).expect("send the tree");
        Served {
            stream,
            digest: summary.digest.to_string(),
            size: summary.file_bytes,
            files: summary.files,
            entries: summary.entries(),
        }
    }

    /// The headers of a `200` answer for it, without the framing.
    fn head(&self) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-artifact-digest: {}\r\nx-artifact-size: {}\r\nx-artifact-files: {}\r\nx-artifact-entries: {}\r\n",
            self.digest, self.size, self.files, self.entries
        )
    }
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
                tokio::spawn(misbehave(stream, behavior.clone(), addr));
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

async fn misbehave(mut stream: TcpStream, behavior: Behavior, addr: SocketAddr) {
    let head = read_head(&mut stream).await;
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
        Behavior::LongNameEntry => {
            let name = format!("dir/{}", "n".repeat(300));
            let body = raw_tar(name.as_bytes(), b"long\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-artifact-digest: {FAKE_DIGEST}\r\nx-artifact-size: 5\r\nx-artifact-files: 1\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            stall(stream).await;
        }
        Behavior::SlowErrorBody { every } => {
            let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 4096\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_ok() {
                drip(&mut stream, &[b'x'; 4096], every).await;
            }
        }
        Behavior::CompleteThenDrip { served, every } => {
            let head = format!("{}transfer-encoding: chunked\r\n\r\n", served.head());
            if stream.write_all(head.as_bytes()).await.is_ok()
                && write_chunk(&mut stream, &served.stream).await.is_ok()
            {
                loop {
                    tokio::time::sleep(every).await;
                    if write_chunk(&mut stream, &[0]).await.is_err() {
                        break;
                    }
                }
            }
        }
        Behavior::OversizedEntry => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\nx-artifact-digest: {FAKE_DIGEST}\r\nx-artifact-size: 16\r\nx-artifact-files: 1\r\nx-artifact-entries: 1\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            let header = raw_header(b"big", 100 << 30, b'0');
            if stream.write_all(head.as_bytes()).await.is_ok()
                && write_chunk(&mut stream, &header).await.is_ok()
            {
                zeros(&mut stream).await;
            }
        }
        Behavior::EndlessZeros(served) => {
            let head = format!("{}transfer-encoding: chunked\r\n\r\n", served.head());
            if stream.write_all(head.as_bytes()).await.is_ok()
                && write_chunk(&mut stream, &served.stream).await.is_ok()
            {
                zeros(&mut stream).await;
            }
        }
        Behavior::Crawl { served, every } => {
            let head = format!("{}content-length: {}\r\n\r\n", served.head(), served.stream.len());
            if stream.write_all(head.as_bytes()).await.is_ok() {
                drip(&mut stream, &served.stream, every).await;
            }
        }
        Behavior::Redirect(location) => redirect(&mut stream, &location).await,
        Behavior::RedirectLoop => {
            let target = request_target(&head).unwrap_or_else(|| "/".into());
            redirect(&mut stream, &format!("http://{addr}{target}")).await;
        }
        Behavior::EscapeInjection => {
            let body = r#"{"error":"\u001b[2J\u001b[H\u001b]0;pwned\u0007\u0000 all your base \u009b31m"}"#;
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
    }
}

/// Answers `302 Found` pointing at `location`.
async fn redirect(stream: &mut TcpStream, location: &str) {
    let head = format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
}

/// The path and query of the request line in `head`.
fn request_target(head: &[u8]) -> Option<String> {
    let line = head.split(|b| *b == b'\n').next()?;
    let target = line.split(|b| *b == b' ').nth(1)?;
    Some(String::from_utf8_lossy(target).into_owned())
}

/// Writes `bytes` one at a time, pausing `every` before each.
async fn drip(stream: &mut TcpStream, bytes: &[u8], every: Duration) {
    for byte in bytes {
        tokio::time::sleep(every).await;
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return;
        }
    }
}

/// Writes one chunk of a chunked body.
async fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
    stream.write_all(data).await?;
    stream.write_all(b"\r\n").await
}

/// Sends chunks of zeros for as long as the other side takes them.
async fn zeros(stream: &mut TcpStream) {
    let block = vec![0u8; 64 * 1024];
    while write_chunk(stream, &block).await.is_ok() {}
}

/// A ustar header block for an entry `name` of `size` bytes (base-256 from 8 GiB) and type
/// `kind`, bypassing every writer's checks (`name` is cut at 100 bytes).
fn raw_header(name: &[u8], size: u64, kind: u8) -> [u8; 512] {
    let mut header = [0u8; 512];
    let name = &name[..name.len().min(100)];
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256: a set high bit, then the size big-endian.
        header[124] = 0x80;
        header[128..136].copy_from_slice(&size.to_be_bytes());
    }
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = kind;
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// A one-entry tar stream of a regular file named `name` (of any length: a GNU long-name
/// entry carries one past 100 bytes) holding `data`, bypassing every writer's checks.
pub fn raw_tar(name: &[u8], data: &[u8]) -> Vec<u8> {
    fn push_padded(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let mut out = Vec::new();
    if name.len() > 100 {
        out.extend_from_slice(&raw_header(b"././@LongLink", name.len() as u64 + 1, b'L'));
        push_padded(&mut out, &[name, b"\0"].concat());
    }
    out.extend_from_slice(&raw_header(name, data.len() as u64, b'0'));
    push_padded(&mut out, data);
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Reads until the end of the request head (or EOF), and returns what it read.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 1 << 20 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
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
