//! `Content-Length`, `ETag`, `If-None-Match` and byte ranges of an artifact's stream: every
//! range the server answers is the same slice of the whole stream, produced by seeking with the
//! entry index.

use artifact_http::protocol;
use artifact_testkit::{cache::TempCache, server::TestServer};

use crate::support::{commit_tree, fill, id, run, tar_of};

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[test]
fn get_and_head_announce_the_length_and_the_digest_as_etag() {
    run(async {
        let remote = TempCache::new();
        let meta = commit_tree(&remote, &id(1), 70_000);
        let stream = tar_of(remote.cache().get(&id(1)).unwrap().path());
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let answer = reqwest::Client::new().request(method.clone(), &url).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            let headers = answer.headers().clone();
            assert_eq!(headers["content-length"], stream.len().to_string().as_str(), "{method}");
            assert_eq!(headers["etag"], format!("\"{}\"", meta.digest).as_str());
            assert_eq!(headers["accept-ranges"], "bytes");
            let body = answer.bytes().await.unwrap();
            if method == reqwest::Method::GET {
                assert!(body == stream[..], "the body is the stream");
            } else {
                assert!(body.is_empty());
            }
        }
    });
}

#[test]
fn every_range_is_the_slice_of_the_whole_stream() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(2), 300_000);
        let reader = remote.cache().get(&id(2)).unwrap();
        let stream = tar_of(reader.path());
        let index = reader.index().unwrap();
        drop(reader);
        let len = stream.len() as u64;
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(2)));

        // Entry edges (headers, data, padding), the end marker, the last byte, and a spread.
        let mut starts: Vec<u64> = vec![0, 1, 511, 512, len - 1024, len - 1];
        for entry in index.entries() {
            starts.extend([entry.offset, entry.data_offset(), entry.end().saturating_sub(1)]);
        }
        starts.extend((0..8).map(|i| i * len / 8 + 77));
        starts.retain(|&s| s < len);
        for start in starts {
            for end in [start + 1, start + 513, start + 100_000, len] {
                let end = end.min(len);
                let spec = format!("bytes={start}-{}", end - 1);
                let answer = get(&url, &[("range", &spec)]).await;
                assert_eq!(answer.status(), 206, "{spec}");
                let range = answer.headers()["content-range"].to_str().unwrap().to_owned();
                assert_eq!(range, format!("bytes {start}-{}/{len}", end - 1));
                assert_eq!(answer.headers()["content-length"], (end - start).to_string().as_str());
                let body = answer.bytes().await.unwrap();
                assert!(body == stream[start as usize..end as usize], "{spec}");
            }
        }
        // Open-ended and suffix forms.
        let body = get(&url, &[("range", "bytes=1000-")]).await.bytes().await.unwrap();
        assert!(body == stream[1000..]);
        let body = get(&url, &[("range", "bytes=-700")]).await.bytes().await.unwrap();
        assert!(body == stream[stream.len() - 700..]);
    });
}

#[test]
fn unsatisfiable_several_and_stale_ranges() {
    run(async {
        let remote = TempCache::new();
        let meta = commit_tree(&remote, &id(3), 10_000);
        let stream = tar_of(remote.cache().get(&id(3)).unwrap().path());
        let len = stream.len();
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(3)));

        let answer = get(&url, &[("range", &format!("bytes={len}-"))]).await;
        assert_eq!(answer.status(), 416);
        assert_eq!(answer.headers()["content-range"], format!("bytes */{len}").as_str());

        // Several ranges: the whole stream.
        let answer = get(&url, &[("range", "bytes=0-9,20-29")]).await;
        assert_eq!(answer.status(), 200);
        assert!(answer.bytes().await.unwrap() == stream[..]);

        // If-Range with the artifact's tag: the range; with another: the whole stream.
        let tag = format!("\"{}\"", meta.digest);
        let answer = get(&url, &[("range", "bytes=10-19"), ("if-range", &tag)]).await;
        assert_eq!(answer.status(), 206);
        assert!(answer.bytes().await.unwrap() == stream[10..20]);
        let stale = format!("\"{}\"", "0".repeat(64));
        let answer = get(&url, &[("range", "bytes=10-19"), ("if-range", &stale)]).await;
        assert_eq!(answer.status(), 200);
        assert!(answer.bytes().await.unwrap() == stream[..]);
    });
}

#[test]
fn an_uploaded_artifact_gets_its_index_on_the_first_range() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(4)));
        let src = remote.scratch("src");
        fill(&src, &id(4), 50_000);
        let stream = tar_of(&src);
        let put = reqwest::Client::new().put(&url).body(stream.clone()).send().await.unwrap();
        assert_eq!(put.status(), 201);

        let answer = get(&url, &[("range", "bytes=600-5999")]).await;
        assert_eq!(answer.status(), 206);
        assert!(answer.bytes().await.unwrap() == stream[600..6000]);
        let reader = remote.cache().get(&id(4)).unwrap();
        assert!(reader.path().with_file_name("index").is_file(), "the index was not kept");
    });
}

#[test]
fn a_range_is_of_the_identity_stream_even_when_zstd_is_accepted() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(5), 20_000);
        let stream = tar_of(remote.cache().get(&id(5)).unwrap().path());
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(5)));
        let answer = get(&url, &[("range", "bytes=100-4099"), ("accept-encoding", "zstd")]).await;
        assert_eq!(answer.status(), 206);
        assert!(answer.headers().get("content-encoding").is_none());
        assert!(answer.bytes().await.unwrap() == stream[100..4100]);
    });
}

#[test]
fn if_none_match_with_the_tag_is_answered_304_without_a_body() {
    run(async {
        let remote = TempCache::new();
        // One small enough to be answered from memory, one from its files.
        let small = commit_tree(&remote, &id(5), 1_000);
        let large = commit_tree(&remote, &id(6), 200_000);
        let server = TestServer::start(remote.cache().clone()).await;
        for (n, meta) in [(5, small), (6, large)] {
            let url = format!("{}{}", server.url(), protocol::artifact_path(&id(n)));
            let tag = format!("\"{}\"", meta.digest);
            let weak = format!("W/{tag}");
            let listed = format!("\"other\", {tag}");
            let stream_len = tar_of(remote.cache().get(&id(n)).unwrap().path()).len();
            for _ in 0..2 {
                for (value, extra) in [
                    (tag.as_str(), None),
                    (weak.as_str(), None),
                    (listed.as_str(), None),
                    ("*", None),
                    // Before the range and the encoding are looked at.
                    (tag.as_str(), Some(("range", "bytes=0-9"))),
                    (tag.as_str(), Some(("accept-encoding", "zstd"))),
                ] {
                    let mut headers = vec![("if-none-match", value)];
                    headers.extend(extra);
                    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
                        let mut request = reqwest::Client::new().request(method.clone(), &url);
                        for (name, value) in &headers {
                            request = request.header(*name, *value);
                        }
                        let answer = request.send().await.unwrap();
                        let context = format!("{n} {method} {headers:?}");
                        assert_eq!(answer.status(), 304, "{context}");
                        assert_eq!(answer.headers()["etag"], tag.as_str(), "{context}");
                        let digest = &answer.headers()[protocol::DIGEST_HEADER];
                        assert_eq!(digest, meta.digest.to_string().as_str(), "{context}");
                        // A length, if any, is the one a 200 would have.
                        if let Some(length) = answer.headers().get("content-length") {
                            assert_eq!(length, stream_len.to_string().as_str(), "{context}");
                        }
                        assert!(answer.bytes().await.unwrap().is_empty(), "{context}");
                    }
                }
            }
            // Another tag, or a malformed one: the whole stream.
            for value in ["\"other\"", "W/other", &meta.digest.to_string()] {
                let answer = get(&url, &[("if-none-match", value)]).await;
                assert_eq!(answer.status(), 200, "{value}");
                let stream = tar_of(remote.cache().get(&id(n)).unwrap().path());
                assert!(answer.bytes().await.unwrap() == stream, "{value}");
            }
        }
        // No artifact, nothing to match, even for `*`.
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(7)));
        assert_eq!(get(&url, &[("if-none-match", "*")]).await.status(), 404);
    });
}
