//! Plain transfers: the seed's round trip, absent ids, HEAD, the listing, metrics, DELETE.

use artifact_http::{Downloader, protocol};
use artifact_testkit::{assert_same_tree, cache::TempCache, server::TestServer};

use crate::support::{commit_tree, fast, id, run};

#[test]
fn seed_transfer_round_trip() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        let meta = commit_tree(&remote, &id(1), 300_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = fast([server.url()]).build().unwrap();

        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert!(downloaded.transferred());
        assert_eq!(downloaded.endpoint(), Some(server.url()));
        assert_eq!(downloaded.attempts(), 1);
        assert_eq!(downloaded.metadata().digest, meta.digest);
        assert_eq!(downloaded.metadata().files, meta.files);
        let remote_reader = remote.get(&id(1)).unwrap();
        assert_same_tree(remote_reader.path(), downloaded.path());
        drop(downloaded);

        // A second download is a local hit: no request.
        let again = downloader.download(&local, &id(1)).await.unwrap();
        assert!(!again.transferred());
        assert_eq!(server.stats().downloads(), 1);

        // The one-shot function works the same.
        let other = TempCache::new();
        let got = artifact_http::download(server.url(), &other, &id(1)).await.unwrap();
        assert_same_tree(remote_reader.path(), got.path());
    });
}

#[test]
fn absent_id_is_not_found_everywhere() {
    run(async {
        let remote_a = TempCache::new();
        let remote_b = TempCache::new();
        let local = TempCache::new();
        let a = TestServer::start(remote_a.cache().clone()).await;
        let b = TestServer::start(remote_b.cache().clone()).await;
        let downloader = fast([a.url(), b.url()]).attempts(3).build().unwrap();
        let err = downloader.download(&local, &id(9)).await.unwrap_err();
        assert!(err.is_not_found() && err.is_remote() && !err.is_retryable(), "{err:?}");
        let artifact_http::Error::NotFound { endpoints, .. } = &err else { panic!("{err:?}") };
        assert_eq!(endpoints, &[a.url().to_owned(), b.url().to_owned()]);
        // A 404 is never retried.
        assert_eq!((a.stats().downloads(), b.stats().downloads()), (1, 1));
        crate::support::assert_absent_and_unlocked(&local, &id(9)).await;
    });
}

#[test]
fn head_answers_the_headers_without_a_body() {
    run(async {
        let remote = TempCache::new();
        let meta = commit_tree(&remote, &id(2), 1000);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(2)));
        let http = reqwest::Client::new();
        let head = http.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        let headers = head.headers();
        assert_eq!(headers[protocol::DIGEST_HEADER], meta.digest.to_string().as_str());
        assert_eq!(headers[protocol::SIZE_HEADER], meta.size.to_string().as_str());
        assert_eq!(headers[protocol::FILES_HEADER], meta.files.to_string().as_str());
        assert_eq!(headers["content-type"], protocol::TAR_MEDIA_TYPE);
        assert!(head.bytes().await.unwrap().is_empty());
        // HEAD takes no stream slot and does not count as a download.
        assert_eq!(server.stats().downloads(), 0);

        let get = http.get(&url).send().await.unwrap();
        assert_eq!(get.headers()[protocol::DIGEST_HEADER], meta.digest.to_string().as_str());
        let body = get.bytes().await.unwrap();
        let reader = remote.get(&id(2)).unwrap();
        assert_eq!(body, crate::support::tar_of(reader.path()), "the body is send()'s stream");

        let absent = format!("{}{}", server.url(), protocol::artifact_path(&id(3)));
        assert_eq!(http.head(&absent).send().await.unwrap().status(), 404);
    });
}

#[test]
fn malformed_requests_are_400_with_a_reason() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let http = reqwest::Client::new();
        for query in ["", "?id=", "?id=abc", "?id=zz", "?id=../../etc", "?other=00"] {
            let response =
                http.get(format!("{}/artifact{query}", server.url())).send().await.unwrap();
            assert_eq!(response.status(), 400, "{query:?}");
            let body: serde_json::Value = crate::support::json(response).await;
            assert!(!body["error"].as_str().unwrap().is_empty(), "{query:?}: {body}");
        }
        let response = http.get(format!("{}/nowhere", server.url())).send().await.unwrap();
        assert_eq!(response.status(), 404);
    });
}

#[test]
fn listing_pages_and_streams_every_artifact() {
    run(async {
        let remote = TempCache::new();
        for n in 1..=25 {
            commit_tree(&remote, &id(n), 10);
        }
        let server = TestServer::start(remote.cache().clone()).await;
        let http = reqwest::Client::new();
        let mut seen = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let url = format!("{}/artifacts?limit=10{after}", server.url());
            let page: serde_json::Value =
                crate::support::json(http.get(url).send().await.unwrap()).await;
            pages += 1;
            for artifact in page["artifacts"].as_array().unwrap() {
                assert_eq!(artifact["files"], 5, "{artifact}");
                seen.push(artifact["id"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (1..=25).map(|n| id(n).to_string()).collect();
        assert_eq!(seen, expected, "every artifact once, in id order");

        let ndjson = http
            .get(format!("{}/artifacts", server.url()))
            .header("accept", protocol::NDJSON_MEDIA_TYPE)
            .send()
            .await
            .unwrap();
        assert_eq!(ndjson.headers()["content-type"], protocol::NDJSON_MEDIA_TYPE);
        let text = ndjson.text().await.unwrap();
        let mut streamed: Vec<String> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        streamed.sort();
        assert_eq!(streamed, expected);

        let bad = http.get(format!("{}/artifacts?limit=0", server.url())).send().await.unwrap();
        assert_eq!(bad.status(), 400);
    });
}

#[test]
fn metrics_count_requests_hits_misses_and_bytes() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 50_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = Downloader::builder().endpoint(server.url()).build().unwrap();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        let bytes = downloaded.stream_bytes();
        assert!(downloader.download(&TempCache::new(), &id(2)).await.unwrap_err().is_not_found());
        let text =
            reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
        let value = |name: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        assert_eq!(value("artifact_http_requests_total{endpoint=\"get\",status=\"200\"}"), 1);
        assert_eq!(value("artifact_http_requests_total{endpoint=\"get\",status=\"404\"}"), 1);
        assert_eq!(value("artifact_http_hits_total"), 1);
        assert_eq!(value("artifact_http_misses_total"), 1);
        assert!(value("artifact_http_sent_bytes_total") >= bytes, "{text}");
        assert_eq!(value("artifact_http_active_streams"), 0);
        assert_eq!(value("artifact_cache_artifacts"), 1);
        assert_eq!(value("artifact_cache_evictions_total"), 0);
        let health = reqwest::get(format!("{}/healthz", server.url())).await.unwrap();
        assert_eq!(health.status(), 200);
    });
}

#[test]
fn delete_removes_and_refuses_while_read() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 10);
        let server = TestServer::start(remote.cache().clone()).await;
        let http = reqwest::Client::new();
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let reader = remote.get(&id(1)).unwrap();
        let busy = http.delete(&url).send().await.unwrap();
        assert_eq!(busy.status(), 409);
        assert_eq!(busy.headers()["retry-after"], "1");
        drop(reader);
        assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
        assert_eq!(http.delete(&url).send().await.unwrap().status(), 404);
        assert!(remote.get(&id(1)).unwrap_err().is_not_found());
    });
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_downloads_when_asked() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        let writer = remote.create(&id(1)).unwrap();
        std::fs::write(writer.path().join("text"), "compressible ".repeat(100_000)).unwrap();
        writer.commit().unwrap();
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let response = reqwest::Client::new()
            .get(&url)
            .header("accept-encoding", "zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], "zstd");
        let compressed = response.bytes().await.unwrap();
        assert!(compressed.len() < 100_000, "{} bytes", compressed.len());

        let downloader = fast([server.url()]).zstd(true).build().unwrap();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert!(
            downloaded.stream_bytes() < 100_000,
            "{} bytes on the wire",
            downloaded.stream_bytes()
        );
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}
