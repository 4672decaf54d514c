//! Uploads: the client's `upload`, and the server's PUT rules (hostile or cut streams, digest
//! checks, limits, concurrent uploads of one id, tokens, a full disk).

use std::time::Duration;

use artifact_cache::Options;
use artifact_http::{Downloader, ServerConfig, UploadOutcome, protocol};
use artifact_testkit::{assert_same_tree, cache::TempCache, server::TestServer};
use bytes::Bytes;

use crate::support::{
    assert_absent_and_unlocked, commit_tree, fast, fill, id, raw_tar, run, tar_of,
};

fn put_url(server: &TestServer, n: u64) -> String {
    format!("{}{}", server.url(), protocol::artifact_path(&id(n)))
}

#[test]
fn upload_round_trip_and_second_upload_sends_nothing() {
    run(async {
        let local = TempCache::new();
        let remote = TempCache::new();
        let meta = commit_tree(&local, &id(1), 300_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let client = fast([server.url()]).build().unwrap();
        let uploaded = client.upload(&local, &id(1)).await.unwrap();
        assert_eq!(uploaded.outcome, UploadOutcome::Created);
        assert!(uploaded.bytes > 300_000);
        assert_eq!(remote.stat(&id(1)).unwrap().digest, meta.digest);
        assert_same_tree(local.get(&id(1)).unwrap().path(), remote.get(&id(1)).unwrap().path());
        // Committed read-only, like any cache entry.
        let big = remote.get(&id(1)).unwrap().path().join("big.bin");
        assert!(std::fs::metadata(big).unwrap().permissions().readonly());

        let again = artifact_http::upload(server.url(), &local, &id(1)).await.unwrap();
        assert_eq!((again.outcome, again.bytes), (UploadOutcome::Exists, 0));
        assert_eq!(server.stats().uploads(), 1, "HEAD told the client; no second PUT");

        let absent = client.upload(&local, &id(2)).await.unwrap_err();
        assert!(absent.is_not_found() && !absent.is_remote(), "{absent:?}");
    });
}

#[test]
fn hostile_cut_and_garbage_uploads_are_400_and_nothing_is_kept() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let http = reqwest::Client::new();
        let source = tempfile::tempdir().unwrap();
        fill(source.path(), &id(1), 50_000);
        let good = tar_of(source.path());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("escaping name", raw_tar(b"../evil", b"x")),
            ("absolute name", raw_tar(b"/etc/evil", b"x")),
            ("no end marker", good[..good.len() - 1024].to_vec()),
            ("cut in data", good[..good.len() / 2].to_vec()),
            ("garbage", vec![0x5a; 4096]),
            ("trailing data", [good.clone(), vec![1; 512]].concat()),
        ];
        for (what, body) in cases {
            let response = http.put(put_url(&server, 1)).body(body).send().await.unwrap();
            assert_eq!(response.status(), 400, "{what}");
            let message: serde_json::Value = crate::support::json(response).await;
            assert!(
                message["error"].as_str().unwrap().contains("bad tar stream"),
                "{what}: {message}"
            );
            assert_absent_and_unlocked(&remote, &id(1)).await;
        }
        let metrics = http
            .get(format!("{}/metrics", server.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("artifact_http_uploads_rejected_total 6"), "{metrics}");

        // The same stream, whole, is accepted.
        let response = http.put(put_url(&server, 1)).body(good).send().await.unwrap();
        assert_eq!(response.status(), 201);
        assert_same_tree(source.path(), remote.get(&id(1)).unwrap().path());
    });
}

#[test]
fn a_wrong_digest_header_is_400_and_nothing_is_kept() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let source = tempfile::tempdir().unwrap();
        fill(source.path(), &id(1), 1000);
        let stream = tar_of(source.path());
        let wrong = tarstream::TreeHasher::new().finish();
        let http = reqwest::Client::new();
        let response = http
            .put(put_url(&server, 1))
            .header(protocol::DIGEST_HEADER, wrong.to_string())
            .body(stream.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_absent_and_unlocked(&remote, &id(1)).await;
        let bad = http
            .put(put_url(&server, 1))
            .header(protocol::DIGEST_HEADER, "xyz")
            .body(stream.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);

        let right = tarstream::digest_dir(source.path()).unwrap().digest;
        let response = http
            .put(put_url(&server, 1))
            .header(protocol::DIGEST_HEADER, right.to_string())
            .body(stream)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()[protocol::DIGEST_HEADER], right.to_string().as_str());
    });
}

#[test]
fn uploads_over_the_limit_are_413() {
    run(async {
        let remote = TempCache::new();
        let config = ServerConfig::default().max_upload_bytes(20_000);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let source = tempfile::tempdir().unwrap();
        fill(source.path(), &id(1), 60_000);
        let stream = tar_of(source.path());
        let http = reqwest::Client::new();
        // Content-Length, checked before anything is read.
        let response = http.put(put_url(&server, 1)).body(stream.clone()).send().await.unwrap();
        assert_eq!(response.status(), 413);
        // No length: the stream is counted as it arrives.
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            stream.chunks(4096).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let response = http.put(put_url(&server, 1)).body(body).send().await.unwrap();
        assert_eq!(response.status(), 413);
        assert_absent_and_unlocked(&remote, &id(1)).await;
    });
}

#[test]
fn concurrent_uploads_of_one_id_make_one_201_and_the_rest_200() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let source = tempfile::tempdir().unwrap();
        fill(source.path(), &id(1), 200_000);
        let stream = Bytes::from(tar_of(source.path()));
        let http = reqwest::Client::new();

        // The first upload sends half its body, then waits until the others have arrived.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (head, tail) = (stream.slice(..stream.len() / 2), stream.slice(stream.len() / 2..));
        let first_body = futures_util::stream::unfold(
            (Some(head), Some(tail), Some(released)),
            |(head, tail, released)| async move {
                if let Some(head) = head {
                    return Some((Ok::<_, std::io::Error>(head), (None, tail, released)));
                }
                let _ = released?.await;
                tail.map(|tail| (Ok(tail), (None, None, None)))
            },
        );
        let first = tokio::spawn(
            http.put(put_url(&server, 1)).body(reqwest::Body::wrap_stream(first_body)).send(),
        );
        // Only once the first upload holds the write lock do the others start.
        while !matches!(remote.get(&id(1)), Err(artifact_cache::Error::WriteLocked { .. })) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let others: Vec<_> = (0..7)
            .map(|_| tokio::spawn(http.put(put_url(&server, 1)).body(stream.clone()).send()))
            .collect();
        while server.stats().uploads() < 8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), 201);
        for other in others {
            assert_eq!(other.await.unwrap().unwrap().status(), 200);
        }
        assert_same_tree(source.path(), remote.get(&id(1)).unwrap().path());
    });
}

#[test]
fn tokens_guard_writes_and_optionally_reads() {
    run(async {
        let local = TempCache::new();
        let remote = TempCache::new();
        commit_tree(&local, &id(1), 1000);
        commit_tree(&remote, &id(2), 1000);
        let config = ServerConfig::default().token(Some("s3cret".into()));
        let server = TestServer::start_with(remote.cache().clone(), config.clone()).await;
        let http = reqwest::Client::new();
        let body = tar_of(local.get(&id(1)).unwrap().path());

        let none = http.put(put_url(&server, 1)).body(body.clone()).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"artifact\"");
        let wrong = http
            .put(put_url(&server, 1))
            .bearer_auth("s3cre")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        assert_eq!(http.delete(put_url(&server, 2)).send().await.unwrap().status(), 401);
        assert_absent_and_unlocked(&remote, &id(1)).await;
        // Reads are open unless asked otherwise.
        assert_eq!(http.get(put_url(&server, 2)).send().await.unwrap().status(), 200);

        let without = fast([server.url()]).attempts(1).build().unwrap();
        let err = without.upload(&local, &id(1)).await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        let with = fast([server.url()]).token("s3cret".to_owned()).build().unwrap();
        assert_eq!(with.upload(&local, &id(1)).await.unwrap().outcome, UploadOutcome::Created);

        let guarded =
            TestServer::start_with(remote.cache().clone(), config.token_for_reads(true)).await;
        assert_eq!(http.get(put_url(&guarded, 2)).send().await.unwrap().status(), 401);
        assert_eq!(
            http.get(format!("{}/artifacts", guarded.url())).send().await.unwrap().status(),
            401
        );
        assert_eq!(
            http.get(format!("{}/healthz", guarded.url())).send().await.unwrap().status(),
            200
        );
        let reader = Downloader::builder()
            .endpoint(guarded.url())
            .token("s3cret".to_owned())
            .build()
            .unwrap();
        reader.download(&TempCache::new(), &id(2)).await.unwrap();
    });
}

#[test]
fn a_full_disk_is_507_and_nothing_is_kept() {
    run(async {
        let local = TempCache::new();
        commit_tree(&local, &id(1), 1000);
        let remote = TempCache::with_options(Options::default().min_free_bytes(u64::MAX));
        let server = TestServer::start(remote.cache().clone()).await;
        let err = fast([server.url()])
            .attempts(1)
            .build()
            .unwrap()
            .upload(&local, &id(1))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(507), "{err:?}");
        remote.set_min_free_bytes(0);
        assert_absent_and_unlocked(&remote, &id(1)).await;
    });
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_uploads() {
    run(async {
        let local = TempCache::new();
        let remote = TempCache::new();
        let writer = local.create(&id(1)).unwrap();
        std::fs::write(writer.path().join("text"), "compressible ".repeat(100_000)).unwrap();
        writer.commit().unwrap();
        let server = TestServer::start(remote.cache().clone()).await;
        let uploaded =
            fast([server.url()]).zstd(true).build().unwrap().upload(&local, &id(1)).await.unwrap();
        assert_eq!(uploaded.outcome, UploadOutcome::Created);
        assert!(uploaded.bytes < 100_000, "{} bytes on the wire", uploaded.bytes);
        assert_same_tree(local.get(&id(1)).unwrap().path(), remote.get(&id(1)).unwrap().path());

        let bad = reqwest::Client::new()
            .put(put_url(&server, 2))
            .header("content-encoding", "zstd")
            .body(vec![1u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let unknown = reqwest::Client::new()
            .put(put_url(&server, 2))
            .header("content-encoding", "br")
            .body(vec![1u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 415);
    });
}
