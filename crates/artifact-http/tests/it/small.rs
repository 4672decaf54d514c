//! Small artifacts served from the streams kept in memory: the same bytes as `send`, never
//! an old stream after `rm` and a new `add` of the same id, within the byte budget, ranges as
//! slices, and the same answers while GETs race removals and commits; and remembered misses,
//! never a 404 after another process's commit returned.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use artifact_cache::{ArtifactId, Cache, Metadata};
use artifact_http::{ServerConfig, protocol};
use artifact_testkit::{
    TreeBuilder,
    cache::{TempCache, until_unlocked},
    server::TestServer,
    strategy::tree_spec_with,
};
use proptest::prelude::*;

use crate::support::{id, metric, run, tar_of};

fn url(server: &TestServer, id: &ArtifactId) -> String {
    format!("{}{}", server.url(), protocol::artifact_path(id))
}

/// Commits `id` holding one file `f` with `content`.
fn commit_file(cache: &Cache, id: &ArtifactId, content: &[u8]) -> Metadata {
    let writer = cache.create(id).unwrap();
    std::fs::write(writer.path().join("f"), content).unwrap();
    writer.commit().unwrap()
}

/// The tar stream of a tree holding one file `f` with `content`.
fn stream_of_file(content: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    TreeBuilder::new(dir.path()).file("f", content);
    tar_of(dir.path())
}

async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let answer = reqwest::get(url).await.unwrap();
    (answer.status().as_u16(), answer.bytes().await.unwrap().to_vec())
}

/// Asserts that a `200` answer's headers describe the artifact `meta` whose stream is `len`
/// bytes long (a kept stream's headers are built once, when it is kept).
fn assert_describes(answer: &reqwest::Response, meta: &Metadata, len: usize, context: &str) {
    let headers = answer.headers();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let tag = format!("\"{}\"", meta.digest);
    assert_eq!(header(protocol::DIGEST_HEADER), meta.digest.to_string(), "{context}");
    assert_eq!(header("etag"), tag, "{context}");
    assert_eq!(header("content-length"), len.to_string(), "{context}");
    assert_eq!(header(protocol::SIZE_HEADER), meta.size.to_string(), "{context}");
    assert_eq!(header(protocol::FILES_HEADER), meta.files.to_string(), "{context}");
    assert_eq!(header(protocol::ENTRIES_HEADER), "1", "{context}");
    assert_eq!(header("content-type"), protocol::TAR_MEDIA_TYPE, "{context}");
    assert_eq!(header("accept-ranges"), "bytes", "{context}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// The first GET renders the stream, the second serves it from memory: both are `send`'s
    /// bytes, and `HEAD` announces their length.
    #[test]
    fn a_kept_stream_is_the_stream_that_send_writes(spec in tree_spec_with(12)) {
        run(async {
            let remote = TempCache::new();
            let writer = remote.create(&id(1)).unwrap();
            spec.write(writer.path());
            writer.commit().unwrap();
            let stream = tar_of(remote.cache().get(&id(1)).unwrap().path());
            let config = ServerConfig::default().small_stream_max(256 << 10);
            let server = TestServer::start_with(remote.cache().clone(), config).await;
            let url = url(&server, &id(1));
            for _ in 0..2 {
                let (status, body) = get_bytes(&url).await;
                assert_eq!(status, 200);
                assert!(body == stream, "{} bytes served, {} sent", body.len(), stream.len());
            }
            let head = reqwest::Client::new().head(&url).send().await.unwrap();
            assert_eq!(head.headers()["content-length"], stream.len().to_string().as_str());
            let kept = stream.len() <= 256 << 10;
            assert_eq!(metric(&server, "artifact_http_small_hits_total").await, if kept { 2 } else { 0 });
            let bytes = metric(&server, "artifact_http_small_bytes").await;
            assert_eq!(bytes, if kept { stream.len() as u64 } else { 0 });
        });
    }
}

#[test]
fn an_artifact_removed_and_added_again_never_serves_the_old_stream() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        // Another handle on the same root: what `artifact rm` and `add` in another process do.
        let other = Cache::open(remote.root()).unwrap();
        let url = url(&server, &id(7));
        for round in 0..6u8 {
            // Same length every round, so only the bytes and the digest tell the versions
            // apart.
            let content = [round; 3000];
            let handle = if round % 2 == 0 { remote.cache() } else { &other };
            let meta = commit_file(handle, &id(7), &content);
            let want = stream_of_file(&content);
            for n in 0..3 {
                let answer = reqwest::get(&url).await.unwrap();
                assert_eq!(answer.status(), 200);
                // The headers of the first answer are rendered; the others are the kept ones.
                assert_describes(&answer, &meta, want.len(), &format!("round {round}, GET {n}"));
                let body = answer.bytes().await.unwrap();
                assert!(body == want, "round {round}: an old stream was served");
            }
            let head = reqwest::Client::new().head(&url).send().await.unwrap();
            assert_describes(&head, &meta, want.len(), &format!("round {round}, HEAD"));
            match round % 3 {
                0 => other.remove(&id(7)).unwrap(),
                1 => remote.cache().remove(&id(7)).unwrap(),
                _ => {
                    let answer = reqwest::Client::new().delete(&url).send().await.unwrap();
                    assert_eq!(answer.status(), 204);
                }
            }
            // Half the rounds ask in between (a 404 drops the kept stream); the others go
            // straight to the next commit, which only the digest and commit time can tell.
            if round % 2 == 0 {
                assert_eq!(get_bytes(&url).await.0, 404, "round {round}: removed");
            }
        }
        // The same tree added again is the same stream, whichever commit it came from.
        commit_file(&other, &id(7), b"same");
        assert_eq!(get_bytes(&url).await.1, stream_of_file(b"same"));
        other.remove(&id(7)).unwrap();
        commit_file(&other, &id(7), b"same");
        assert_eq!(get_bytes(&url).await.1, stream_of_file(b"same"));
    });
}

#[test]
fn the_byte_budget_holds() {
    run(async {
        let remote = TempCache::new();
        // Each stream: a 512-byte header, 4,096 bytes of data, the 1,024-byte end marker.
        let each = stream_of_file(&[0; 4096]).len() as u64;
        let budget = 3 * each + each / 2;
        let config = ServerConfig::default().small_cache_bytes(budget);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        for n in 0..10u8 {
            commit_file(remote.cache(), &id(u64::from(n)), &[n; 4096]);
            let (status, body) = get_bytes(&url(&server, &id(u64::from(n)))).await;
            assert_eq!((status, body.len() as u64), (200, each));
            let kept = metric(&server, "artifact_http_small_bytes").await;
            let streams = metric(&server, "artifact_http_small_streams").await;
            assert!(kept <= budget, "{kept} bytes kept, budget {budget}");
            assert_eq!((kept, streams), (streams * each, u64::from(n + 1).min(3)));
        }
        assert_eq!(metric(&server, "artifact_http_small_budget_bytes").await, budget);
        // The three most recent are served from memory; an older one is rendered again.
        let hits = metric(&server, "artifact_http_small_hits_total").await;
        for n in [9, 8, 7] {
            assert_eq!(get_bytes(&url(&server, &id(n))).await.1.len() as u64, each);
        }
        assert_eq!(metric(&server, "artifact_http_small_hits_total").await, hits + 3);
        let misses = metric(&server, "artifact_http_small_misses_total").await;
        assert_eq!(get_bytes(&url(&server, &id(0))).await.0, 200);
        assert_eq!(metric(&server, "artifact_http_small_misses_total").await, misses + 1);
        // A budget of 0 keeps nothing, and reports nothing.
        let off = TestServer::start_with(
            remote.cache().clone(),
            ServerConfig::default().small_cache_bytes(0),
        )
        .await;
        assert_eq!(get_bytes(&url(&off, &id(9))).await.1, stream_of_file(&[9; 4096]));
        let text =
            reqwest::get(format!("{}/metrics", off.url())).await.unwrap().text().await.unwrap();
        assert!(!text.contains("artifact_http_small_"), "{text}");
    });
}

#[test]
fn ranges_of_a_kept_stream_are_its_slices() {
    run(async {
        let remote = TempCache::new();
        let content: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let meta = commit_file(remote.cache(), &id(3), &content);
        let stream = stream_of_file(&content);
        let len = stream.len();
        let server = TestServer::start(remote.cache().clone()).await;
        let url = url(&server, &id(3));
        assert_eq!(get_bytes(&url).await.1, stream, "kept now");
        let client = reqwest::Client::new();
        let etag = format!("\"{}\"", meta.digest);
        for (range, want) in [
            ("bytes=0-0".to_owned(), 0..1),
            ("bytes=511-512".to_owned(), 511..513),
            ("bytes=1000-".to_owned(), 1000..len),
            ("bytes=-100".to_owned(), len - 100..len),
            (format!("bytes={}-{}", len - 1, len + 50), len - 1..len),
        ] {
            for if_range in [None, Some(etag.as_str())] {
                let mut request = client.get(&url).header("range", &range);
                if let Some(tag) = if_range {
                    request = request.header("if-range", tag);
                }
                let answer = request.send().await.unwrap();
                assert_eq!(answer.status(), 206, "{range}");
                let expected = format!("bytes {}-{}/{len}", want.start, want.end - 1);
                assert_eq!(answer.headers()["content-range"], expected.as_str());
                assert!(answer.bytes().await.unwrap()[..] == stream[want.clone()], "{range}");
            }
        }
        // A stale If-Range gets the whole stream; a range past the end is 416.
        let answer =
            client.get(&url).header("range", "bytes=5-9").header("if-range", "\"0\"").send();
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.bytes().await.unwrap()[..] == stream[..]);
        let answer = client.get(&url).header("range", format!("bytes={len}-")).send().await;
        assert_eq!(answer.unwrap().status(), 416);
        let hits = metric(&server, "artifact_http_small_hits_total").await;
        assert_eq!(hits, 12, "every range after the first GET came from memory");
    });
}

#[test]
fn a_kept_stream_still_needs_the_token_for_reads() {
    run(async {
        let remote = TempCache::new();
        commit_file(remote.cache(), &id(4), b"secret");
        let config = ServerConfig::default().token(Some("t0k".into())).token_for_reads(true);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let url = url(&server, &id(4));
        let client = reqwest::Client::new();
        let with = client.get(&url).bearer_auth("t0k").send().await.unwrap();
        assert_eq!(with.bytes().await.unwrap()[..], stream_of_file(b"secret")[..]);
        let without = client.get(&url).send().await.unwrap();
        assert_eq!(without.status(), 401);
        let wrong = client.get(&url).bearer_auth("t0x").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
    });
}

#[cfg(feature = "zstd")]
#[test]
fn a_kept_stream_is_compressed_when_asked() {
    run(async {
        let (remote, local) = (TempCache::new(), TempCache::new());
        let meta = commit_file(remote.cache(), &id(5), &b"squeeze ".repeat(4000));
        let server = TestServer::start(remote.cache().clone()).await;
        assert_eq!(get_bytes(&url(&server, &id(5))).await.0, 200, "kept now");
        let answer = reqwest::Client::new()
            .get(url(&server, &id(5)))
            .header("accept-encoding", "zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["content-encoding"], "zstd");
        assert!(answer.bytes().await.unwrap().len() < 4000);
        let downloaded = crate::support::fast([server.url()])
            .zstd(true)
            .build()
            .unwrap()
            .download(&local, &id(5))
            .await
            .unwrap();
        assert_eq!(downloaded.metadata().digest, meta.digest);
        assert_eq!(metric(&server, "artifact_http_small_hits_total").await, 2);
    });
}

/// GETs of one id from many tasks while another handle removes it and commits new versions:
/// every answer is 404 or the stream of a version at least as new as the newest committed
/// when the request was sent; the last version is served at the end.
#[test]
fn concurrent_gets_while_the_artifact_is_removed_and_added() {
    run(async {
        const VERSIONS: usize = 40;
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let url = Arc::new(url(&server, &id(9)));
        let streams: Arc<Vec<Vec<u8>>> =
            Arc::new((0..VERSIONS).map(|v| stream_of_file(&[v as u8; 5000])).collect());
        let newest = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        commit_file(remote.cache(), &id(9), &[0; 5000]);
        let readers: Vec<_> = (0..6)
            .map(|_| {
                let (url, streams, newest, done) =
                    (url.clone(), streams.clone(), newest.clone(), done.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut served = 0;
                    while !done.load(Ordering::Acquire) {
                        let floor = newest.load(Ordering::Acquire);
                        let answer = client.get(url.as_str()).send().await.unwrap();
                        let status = answer.status().as_u16();
                        let body = answer.bytes().await.unwrap();
                        match status {
                            200 => {
                                let version = streams.iter().position(|s| s[..] == body[..]);
                                let version = version.expect("the stream of some version");
                                assert!(version >= floor, "version {version} after {floor}");
                                served += 1;
                            }
                            404 | 409 => {}
                            other => panic!("status {other}"),
                        }
                    }
                    served
                })
            })
            .collect();
        let other = Cache::open(remote.root()).unwrap();
        let writer = {
            let newest = newest.clone();
            tokio::task::spawn_blocking(move || {
                for version in 1..VERSIONS {
                    // A reader may hold it for a moment: retry until the removal gets through.
                    until_unlocked(|| other.remove(&id(9)));
                    // A GET of the absent id may hold the new lock file for a moment (it
                    // looks, then finds nothing): the same.
                    let writer = until_unlocked(|| other.create(&id(9)));
                    std::fs::write(writer.path().join("f"), [version as u8; 5000]).unwrap();
                    writer.commit().unwrap();
                    newest.store(version, Ordering::Release);
                }
            })
        };
        writer.await.unwrap();
        done.store(true, Ordering::Release);
        let mut served = 0;
        for reader in readers {
            served += reader.await.unwrap();
        }
        assert!(served > 0, "some GETs were answered");
        let (status, body) = get_bytes(&url).await;
        assert_eq!(status, 200);
        assert!(body == streams[VERSIONS - 1], "the last version");
    });
}

#[test]
fn a_remembered_miss_ends_when_another_process_commits() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        // Another handle on the same root: what `artifact add` and `rm` in another process do.
        let other = Cache::open(remote.root()).unwrap();
        let url = url(&server, &id(9));
        for round in 0..4u8 {
            // Asked again and again: after the first, the server answers from its memory of
            // the miss, with no lookup.
            for n in 0..3 {
                assert_eq!(get_bytes(&url).await.0, 404, "round {round}, GET {n}");
            }
            let content = [round; 100];
            commit_file(&other, &id(9), &content);
            let (status, body) = get_bytes(&url).await;
            assert_eq!(status, 200, "round {round}: committed before the GET, answered 404");
            assert!(body == stream_of_file(&content), "round {round}: not the committed stream");
            other.remove(&id(9)).unwrap();
        }
    });
}
