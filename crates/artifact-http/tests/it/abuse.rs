//! What a hostile or careless client may try: decompression bombs, zeros after the end marker,
//! slow and stalled readers, connection and stream exhaustion. Each attack is bounded and
//! runs on loopback; a well-behaved client must still get through.

use std::time::Duration;

use artifact_http::{ServerConfig, protocol};
use artifact_testkit::{cache::TempCache, server::TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{assert_absent_and_unlocked, commit_tree, fill, id, run, tar_of};

/// A tar stream of a small tree.
fn small_tar() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), &id(1), 10_000);
    tar_of(dir.path())
}

async fn put(
    server: &TestServer,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (reqwest::StatusCode, String) {
    let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
    let mut request = reqwest::Client::new().put(url).body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[test]
fn an_upload_with_a_run_of_zeros_after_the_end_marker_is_refused() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let mut body = small_tar();
        body.resize(body.len() + (1 << 20), 0);
        let (status, text) = put(&server, body, None).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("zero bytes after the end-of-archive marker"), "{text}");
        assert_absent_and_unlocked(&remote, &id(1)).await;
        // GNU tar's padding to a 10 KiB record is fine.
        let mut body = small_tar();
        body.resize(body.len().div_ceil(10240) * 10240, 0);
        assert_eq!(put(&server, body, None).await.0, 201);
    });
}

/// A zstd frame (RFC 8878) with the given window and no content size, whose blocks are
/// `data` stored raw, then `zeros` zero bytes as run-length blocks: what `zstd --long` or a
/// bomb looks like to a decoder.
#[cfg(feature = "zstd")]
fn zstd_frame(window_log: u8, data: &[u8], zeros: usize) -> Vec<u8> {
    const MAX_BLOCK: usize = 128 << 10;
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: no single segment, no checksum, no dictionary, no size.
    frame.push(0);
    // Window descriptor: exponent `window_log - 10`, mantissa 0.
    frame.push((window_log - 10) << 3);
    let mut blocks: Vec<(u32, &[u8], usize)> =
        data.chunks(MAX_BLOCK).map(|chunk| (0, chunk, chunk.len())).collect();
    let mut left = zeros;
    while left > 0 {
        let len = left.min(MAX_BLOCK);
        blocks.push((1, &[0][..], len));
        left -= len;
    }
    let last = blocks.len() - 1;
    for (i, (kind, content, len)) in blocks.into_iter().enumerate() {
        let header = u32::from(i == last) | (kind << 1) | ((len as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(content);
    }
    frame
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_uploads_have_a_bounded_window_and_bounded_zeros() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let tar = small_tar();
        // A frame that needs a 128 MiB window (`zstd --long=27`) is refused before the decoder
        // allocates it.
        let (status, text) = put(&server, zstd_frame(27, &tar, 0), Some("zstd")).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("window") && text.contains("too much memory"), "{text}");
        assert_absent_and_unlocked(&remote, &id(1)).await;
        // 256 MiB of zeros after the end marker, in a body of a few KiB, is refused once the
        // bound on trailing zeros is passed.
        let bomb = zstd_frame(23, &tar, 256 << 20);
        assert!(bomb.len() < tar.len() + 16_000, "{}", bomb.len());
        let (status, text) = put(&server, bomb, Some("zstd")).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("zero bytes after the end-of-archive marker"), "{text}");
        assert_absent_and_unlocked(&remote, &id(1)).await;
        // The same frame with an 8 MiB window and a record's padding is accepted.
        let padding = tar.len().div_ceil(10240) * 10240 - tar.len();
        let (status, text) = put(&server, zstd_frame(23, &tar, padding), Some("zstd")).await;
        assert_eq!(status, 201, "{text}");
    });
}

#[cfg(feature = "zstd")]
#[test]
fn the_zstd_window_bound_is_configurable() {
    run(async {
        let remote = TempCache::new();
        let config = ServerConfig::default().zstd_max_window_log(27);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let (status, text) = put(&server, zstd_frame(27, &small_tar(), 0), Some("zstd")).await;
        assert_eq!(status, 201, "{text}");
    });
}

/// Reads a whole `GET` answer on a raw connection, at most `per_tick` bytes per `tick` (a
/// steady reader, slower than the server can send); returns everything read.
async fn read_slowly(
    server: &TestServer,
    id: &artifact_cache::ArtifactId,
    per_tick: usize,
    tick: Duration,
) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        protocol::artifact_path(id)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut ticks = tokio::time::interval(tick);
    let mut buf = vec![0u8; per_tick];
    let mut got = Vec::new();
    loop {
        ticks.tick().await;
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_slow_but_steady_reader_is_not_cut_off() {
    run(async {
        let remote = TempCache::new();
        let size = 8 << 20;
        commit_tree(&remote, &id(1), size);
        let idle = Duration::from_millis(400);
        let config = ServerConfig::default().idle_timeout(idle);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        // About 3 MiB/s, never pausing for more than a tick: far slower than the server, far
        // quicker than the idle timeout.
        let got = read_slowly(&server, &id(1), 32 << 10, Duration::from_millis(10)).await;
        assert!(got.starts_with(b"HTTP/1.1 200"));
        assert!(got.len() > size, "cut off after {} bytes", got.len());
        // The whole body came: as many bytes after the head as its `content-length` says.
        let end_of_head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..end_of_head]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .expect("a content-length")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(got.len() - end_of_head, length, "the body ended early");
    });
}

/// A connection to `server` from `ip` (any address of 127/8 is loopback on Linux, so that
/// attackers and the well-behaved client have different addresses).
async fn connect_from(ip: &str, server: &TestServer) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(server.addr()).await.unwrap()
}

/// Well-behaved: a `/healthz` from 127.0.0.1 answers 200 quickly (far quicker than the header
/// read timeout that would free the attackers' slots).
async fn assert_healthy_quickly(server: &TestServer) {
    let url = format!("{}{}", server.url(), protocol::HEALTH_PATH);
    let answer = tokio::time::timeout(Duration::from_secs(10), reqwest::get(url))
        .await
        .expect("a well-behaved client got through during the attack")
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[test]
fn connections_that_dribble_headers_do_not_lock_others_out() {
    run(async {
        let remote = TempCache::new();
        let config = ServerConfig::default().max_connections(8).max_connections_per_peer(4);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        // Slowloris from one address: twice the whole connection limit, each sending the start
        // of a request and then nothing (the header read timeout is the default 30 s).
        let mut attackers = Vec::new();
        for _ in 0..16 {
            let mut stream = connect_from("127.0.0.2", &server).await;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nhost:").await.unwrap();
            attackers.push(stream);
        }
        assert_healthy_quickly(&server).await;
        // The attacker kept at most its share: the connections beyond it were closed.
        let mut closed = 0;
        for stream in &mut attackers {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await;
            closed += usize::from(matches!(read, Ok(Ok(0) | Err(_))));
        }
        assert!(closed >= 12, "{closed} of 16 closed");
    });
}

#[test]
fn slow_downloads_from_one_address_do_not_hold_every_stream_slot() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 8 << 20);
        let config = ServerConfig::default().max_streams(4).max_streams_per_peer(2);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        // Four downloads from one address that read the head of the answer and then nothing.
        let mut statuses = Vec::new();
        let mut attackers = Vec::new();
        for _ in 0..4 {
            let mut stream = connect_from("127.0.0.2", &server).await;
            let request =
                format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", protocol::artifact_path(&id(1)));
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.unwrap();
            statuses.push(String::from_utf8_lossy(&head).into_owned());
            attackers.push(stream);
        }
        assert_eq!(statuses, ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 503", "HTTP/1.1 503"]);
        // Another client still gets a stream, whole.
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.bytes().await.unwrap().len() > 8 << 20);
        assert_healthy_quickly(&server).await;
        drop(attackers);
    });
}
