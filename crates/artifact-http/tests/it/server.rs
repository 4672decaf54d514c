//! The server's own guarantees: the read lock lives exactly as long as the body, limits,
//! timeouts against stalled clients, and graceful shutdown.

use std::time::{Duration, Instant};

use artifact_cache::Cache;
use artifact_http::{Downloader, ProgressEvent, ServerConfig, protocol};
use artifact_testkit::{assert_same_tree, cache::TempCache, server::TestServer};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{commit_tree, id, run};

/// Removes `id`, retrying while a reader still holds it (a stream's sender notices its
/// client is gone within a chunk); the test's watchdog bounds the wait.
async fn remove_when_released(cache: &Cache, id: &artifact_cache::ArtifactId) {
    loop {
        match cache.remove(id) {
            Ok(()) => return,
            Err(err) if err.is_locked() => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(err) => panic!("{err:?}"),
        }
    }
}

#[test]
fn the_read_lock_is_held_exactly_while_the_body_streams() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 8 << 20);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));

        // While the body is open, the artifact cannot be removed.
        let response = reqwest::get(&url).await.unwrap();
        let mut body = response.bytes_stream();
        body.next().await.unwrap().unwrap();
        let err = remote.remove(&id(1)).unwrap_err();
        assert!(err.is_locked(), "{err:?}");

        // Read to the end: released by the time the client has seen the end.
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
        drop(body);
        remote.remove(&id(1)).expect("released once the body ended");
    });
}

#[test]
fn a_client_that_disconnects_releases_the_read_lock() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 8 << 20);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let response = reqwest::get(&url).await.unwrap();
        let mut body = response.bytes_stream();
        body.next().await.unwrap().unwrap();
        assert!(remote.remove(&id(1)).unwrap_err().is_locked());
        drop(body);
        server.stats().wait_idle().await;
        remove_when_released(&remote, &id(1)).await;
        // And the server still serves.
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    });
}

#[test]
fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    run(async {
        let remote = TempCache::new();
        // Larger than what the socket buffers of both sides can absorb.
        commit_tree(&remote, &id(1), 48 << 20);
        let config = ServerConfig::default().idle_timeout(Duration::from_millis(300));
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let request =
            format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", protocol::artifact_path(&id(1)));
        // Taken before the request: no wait of the server's sender can start earlier, so this
        // is a true lower bound of its idle time.
        let stalled = Instant::now();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await.unwrap();
        assert!(
            head[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&head[..n])
        );
        // Read nothing more: the server's sender times out and lets the artifact go while
        // this connection is still open: not before the configured 300 ms, and long before
        // the default minute.
        tokio::time::timeout(Duration::from_secs(20), remove_when_released(&remote, &id(1)))
            .await
            .expect("released by the configured idle timeout, not the default one");
        assert!(stalled.elapsed() >= Duration::from_millis(300), "{:?}", stalled.elapsed());
        drop(stream);
    });
}

#[test]
fn the_stream_limit_answers_503_with_retry_after() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 8 << 20);
        let config = ServerConfig::default().max_streams(1).retry_after(Duration::from_secs(2));
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let first = reqwest::get(&url).await.unwrap();
        assert_eq!(first.status(), 200);
        let second = reqwest::get(&url).await.unwrap();
        assert_eq!(second.status(), 503);
        assert_eq!(second.headers()["retry-after"], "2");
        // An absent id is 404 even at the limit: the lookup comes first.
        let absent = format!("{}{}", server.url(), protocol::artifact_path(&id(2)));
        assert_eq!(reqwest::get(&absent).await.unwrap().status(), 404);
        // HEAD needs no stream slot.
        let head = reqwest::Client::new().head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        first.bytes().await.unwrap();
        server.stats().wait_idle().await;
        // The slot is free again once the first body has ended.
        let mut third = reqwest::get(&url).await.unwrap();
        while third.status() == 503 {
            // The slot goes back a moment after the client sees the end; that moment is
            // bounded by the watchdog.
            tokio::time::sleep(Duration::from_millis(5)).await;
            third = reqwest::get(&url).await.unwrap();
        }
        assert_eq!(third.status(), 200);
    });
}

#[test]
fn a_stalled_upload_is_cut_off_and_leaves_nothing() {
    run(async {
        let remote = TempCache::new();
        let config = ServerConfig::default().idle_timeout(Duration::from_millis(300));
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let request = format!(
            "PUT {} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n",
            protocol::artifact_path(&id(1))
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(&[0u8; 700]).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        crate::support::assert_absent_and_unlocked(&remote, &id(1)).await;
    });
}

#[test]
fn a_client_that_sends_no_headers_is_disconnected() {
    run(async {
        let remote = TempCache::new();
        let config = ServerConfig::default().header_read_timeout(Duration::from_millis(200));
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        // Taken before connecting: the server's timer starts when it accepts, which cannot be
        // earlier, so this is a true lower bound (one taken after `connect` returns is not).
        let connected = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let mut rest = Vec::new();
        // The server gives up on the headers and closes: EOF (or a reset), not a hang. Not
        // before the configured 200 ms, and long before the default 30 s.
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("closed by the configured header read timeout, not the default one")
            .ok();
        assert!(connected.elapsed() >= Duration::from_millis(200), "{:?}", connected.elapsed());
        assert!(rest.is_empty(), "no answer to half a request: {rest:?}");
    });
}

#[test]
fn shutdown_drains_in_flight_downloads() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 16 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(artifact_http::serve(
            listener,
            remote.cache().clone(),
            ServerConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        // Ask for shutdown as soon as the body starts flowing.
        let stop = std::sync::Mutex::new(Some(stop));
        let downloader = Downloader::builder()
            .endpoint(&url)
            .progress(move |p| {
                if matches!(p.event, ProgressEvent::Received)
                    && let Some(stop) = stop.lock().unwrap().take()
                {
                    let _ = stop.send(());
                }
            })
            .build()
            .unwrap();
        let downloaded = downloader.download(&local, &id(1)).await.expect("drained, not cut");
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        server.await.unwrap().unwrap();
        // Nobody listens any more.
        let err = Downloader::builder().endpoint(&url).attempts(1).build().unwrap();
        assert!(err.download(&TempCache::new(), &id(1)).await.is_err());
    });
}

#[test]
fn shutdown_closes_what_is_left_after_the_grace_period() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 48 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig::default().shutdown_grace(Duration::from_millis(200));
        let server = tokio::spawn(artifact_http::serve(
            listener,
            remote.cache().clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        // A client that reads the head and then nothing.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", protocol::artifact_path(&id(1)));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 64];
        let read = stream.read(&mut head).await.unwrap();
        assert!(read > 0, "the server answered nothing");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        // The stream was cut: its read lock goes with it.
        remove_when_released(&remote, &id(1)).await;
    });
}

/// The headers of a response that both `GET` and `HEAD` must agree on: all but `date`, and
/// `transfer-encoding`, the framing of a body, which HTTP/1.1 servers (hyper among them) send
/// only when a body follows. `content-length` counts: both give the stream's length (or, for a
/// compressed body, neither does).
fn comparable(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = headers
        .iter()
        .filter(|(name, _)| {
            *name != reqwest::header::DATE && *name != reqwest::header::TRANSFER_ENCODING
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn head_answers_exactly_the_headers_of_get() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let client = reqwest::Client::new();
        for encoding in [None, Some("zstd"), Some("gzip")] {
            let with = |request: reqwest::RequestBuilder| match encoding {
                Some(encoding) => request.header("accept-encoding", encoding),
                None => request,
            };
            let get = with(client.get(&url)).send().await.unwrap();
            let get_headers = comparable(get.headers());
            get.bytes().await.unwrap();
            let head = with(client.head(&url)).send().await.unwrap();
            assert_eq!(head.status(), 200);
            assert_eq!(comparable(head.headers()), get_headers, "accept-encoding {encoding:?}");
        }
    });
}

#[test]
fn a_deleted_root_is_unhealthy_and_promises_nothing() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let health = format!("{}{}", server.url(), protocol::HEALTH_PATH);
        let client = reqwest::Client::new();
        assert_eq!(client.get(&health).send().await.unwrap().status(), 200);
        // A first GET leaves the artifact known to the server's cache table.
        client.get(&url).send().await.unwrap().bytes().await.unwrap();

        std::fs::remove_dir_all(remote.root()).unwrap();
        let answer = client.get(&health).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        let reason = answer.text().await.unwrap();
        assert!(reason.contains("missing"), "{reason}");
        for request in [client.head(&url), client.get(&url)] {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 404, "{:?}", answer.headers());
        }
    });
}

/// A tmpfs mounted at a temporary directory, unmounted when dropped; `None` where this process
/// may not mount (it needs root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "artifact-test"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Tmpfs(dir))
    }

    fn remount(&self, mode: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.0.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_root_remounted_read_only_still_serves_and_is_unhealthy() {
    let Some(tmpfs) = Tmpfs::mount() else {
        eprintln!("not run: mounting a tmpfs needs root");
        return;
    };
    run(async move {
        let root = tmpfs.0.path().join("cache");
        commit_tree(&Cache::open(&root).unwrap(), &id(1), 100_000);
        // The server's handle holds no file open for writing, so the file system can be
        // remounted read-only under it.
        let server = TestServer::start(Cache::open(&root).unwrap()).await;
        let client = reqwest::Client::new();
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let health = format!("{}{}", server.url(), protocol::HEALTH_PATH);
        tmpfs.remount("ro");
        // A reader needs no write: the committed artifact is served whole.
        let local = TempCache::new();
        let downloader = Downloader::builder().endpoint(server.url()).attempts(1).build().unwrap();
        downloader.download(&local, &id(1)).await.expect("served from a read-only root");
        assert_eq!(client.head(&url).send().await.unwrap().status(), 200);
        // But the cache cannot take uploads: unhealthy, with the reason.
        let answer = client.get(&health).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        let reason = answer.text().await.unwrap();
        assert!(reason.contains("not writable"), "{reason}");
        tmpfs.remount("rw");
        assert_eq!(client.get(&health).send().await.unwrap().status(), 200);
    });
}
