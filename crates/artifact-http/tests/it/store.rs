//! Object-store endpoints of a `Downloader` (feature `store`), against a real S3 server
//! (artifact-testkit's `S3Server`), mixed with HTTP peers in one ordered list.

use std::time::Duration;

use artifact_cache::ArtifactId;
use artifact_http::Error;
use artifact_store::{Store, StoreOptions};
use artifact_testkit::{
    cache::TempCache,
    s3::S3Server,
    server::{Fault, TestServer},
};

use crate::support::{commit_tree, fast, id, run};

/// A store on `server` with its credentials and quick retries.
fn s3_store(server: &S3Server) -> Store {
    s3_store_with(server, 4)
}

/// A store on `server` whose requests are tried `1 + retries` times.
fn s3_store_with(server: &S3Server, retries: u32) -> Store {
    let mut options = StoreOptions::default();
    options.retry_backoff = Duration::from_millis(5);
    options.retries = retries;
    options.config = server.config();
    Store::open_with(&server.url(), options).expect("the test server's URL opens")
}

/// Commits `id` in a fresh cache and uploads it to `store`; returns that cache.
async fn uploaded(store: &Store, id: &ArtifactId) -> TempCache {
    let origin = TempCache::new();
    commit_tree(origin.cache(), id, 200_000);
    store.upload(origin.cache(), id).await.expect("upload to the store");
    origin
}

/// An `http://` URL on which nothing listens.
async fn dead_peer() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn a_peer_without_the_id_then_the_store_that_has_it() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        let empty = TempCache::new();
        let peer = TestServer::start(empty.cache().clone()).await;
        let downloader = fast([peer.url()]).store(store.clone()).build().unwrap();
        let local = TempCache::new();

        // Absent everywhere: a miss that names both endpoints.
        let err = downloader.download(local.cache(), &id(1)).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            matches!(&err, Error::NotFound { endpoints, .. } if endpoints.len() == 2),
            "{err:?}"
        );

        let origin = uploaded(&store, &id(1)).await;
        let downloaded = downloader.download(local.cache(), &id(1)).await.unwrap();
        assert!(downloaded.transferred());
        assert_eq!(downloaded.endpoint(), Some(store.url()));
        assert_eq!(downloaded.attempts(), 2, "the peer's 404, then the store");
        assert_eq!(peer.stats().downloads(), 2, "the peer was asked both times");
        let want = origin.cache().stat(&id(1)).unwrap();
        assert_eq!(local.cache().stat(&id(1)).unwrap().digest, want.digest);
    });
}

#[test]
fn a_dead_peer_then_the_store() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        uploaded(&store, &id(2)).await;
        let downloader = fast([dead_peer().await]).store(store.clone()).build().unwrap();
        let local = TempCache::new();
        let downloaded = downloader.download(local.cache(), &id(2)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(store.url()));
        assert_eq!(downloaded.metadata().files, 5);
    });
}

#[test]
fn the_store_first_then_a_peer_when_the_store_lacks_it() {
    run(async {
        let s3 = S3Server::start().await;
        let remote = TempCache::new();
        commit_tree(remote.cache(), &id(3), 10_000);
        let peer = TestServer::start(remote.cache().clone()).await;
        // By URL, the way a command line gives it; the credentials come from the options.
        let store = s3_store(&s3);
        let downloader =
            fast(Vec::<String>::new()).store(store.clone()).endpoint(peer.url()).build().unwrap();
        let endpoints: Vec<&str> = downloader.endpoints().collect();
        assert_eq!(endpoints, [store.url(), peer.url()]);
        let local = TempCache::new();
        let downloaded = downloader.download(local.cache(), &id(3)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(peer.url()));
        assert_eq!(downloaded.attempts(), 2);
        assert!(s3.stats().downloads() >= 1, "the store was asked first");
    });
}

#[test]
fn concurrent_downloads_through_a_store_endpoint_make_one_store_download() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        uploaded(&store, &id(4)).await;
        let downloader = fast([dead_peer().await]).store(store.clone()).build().unwrap();

        // What one download costs the store, in object GETs.
        let before = s3.stats().downloads();
        downloader.download(TempCache::new().cache(), &id(4)).await.unwrap();
        let one = s3.stats().downloads() - before;
        assert!(one >= 1);

        let local = TempCache::new();
        let start = s3.stats().downloads();
        let four = id(4);
        let downloads = (0..16).map(|_| downloader.download(local.cache(), &four));
        let results = futures_util::future::join_all(downloads).await;
        let mut transferred = 0;
        for result in results {
            let downloaded = result.unwrap();
            assert_eq!(downloaded.metadata().files, 5);
            transferred += usize::from(downloaded.transferred());
        }
        assert_eq!(transferred, 1, "one download led, the others shared it");
        assert_eq!(s3.stats().downloads() - start, one, "one store download for 16 callers");
    });
}

#[test]
fn a_corrupt_object_is_refused_and_the_next_endpoint_serves_it() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        let origin = uploaded(&store, &id(5)).await;
        let file = s3.object_file(&store.key(&id(5)));
        let mut bytes = std::fs::read(&file).unwrap();
        // A byte of the big file's content (past the first headers): the tree's digest changes.
        let at = bytes.len() / 2;
        bytes[at] ^= 0x5a;
        std::fs::write(&file, &bytes).unwrap();
        let peer = TestServer::start(origin.cache().clone()).await;

        let local = TempCache::new();
        let alone = fast(Vec::<String>::new()).store(store.clone()).build().unwrap();
        let err = alone.download(local.cache(), &id(5)).await.unwrap_err();
        let Error::Store { source, .. } = &err else { panic!("{err:?}") };
        assert!(source.is_corrupt(), "{source:?}");
        assert!(err.is_remote() && !err.is_retryable(), "{err:?}");
        let gets = s3.stats().downloads();
        assert!(local.cache().stat(&id(5)).is_err(), "nothing of it was kept");

        let downloader =
            fast(Vec::<String>::new()).store(store).endpoint(peer.url()).build().unwrap();
        let downloaded = downloader.download(local.cache(), &id(5)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(peer.url()));
        assert!(s3.stats().downloads() > gets, "the store was tried first");
        let want = origin.cache().stat(&id(5)).unwrap().digest;
        assert_eq!(local.cache().stat(&id(5)).unwrap().digest, want);
    });
}

#[test]
fn a_retryable_store_failure_is_retried_in_the_next_round() {
    run(async {
        let s3 = S3Server::start().await;
        // No retry inside the store: its first failure is the Downloader's to handle.
        let store = s3_store_with(&s3, 0);
        uploaded(&store, &id(6)).await;
        s3.faults().once(Fault::Status(503));
        let downloader = fast(Vec::<String>::new()).store(store.clone()).build().unwrap();
        let local = TempCache::new();
        let downloaded = downloader.download(local.cache(), &id(6)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(store.url()));
        assert_eq!(downloaded.attempts(), 2, "the 503, then the retry next round");

        // Refused credentials are not retried: the store is ruled out after one attempt.
        let mut options = StoreOptions::default();
        options.config = s3.config();
        options.config.retain(|(key, _)| !key.contains("secret"));
        options.config.push(("aws_secret_access_key".into(), "wrong".into()));
        let refused = Store::open_with(&s3.url(), options).unwrap();
        let gets = s3.stats().downloads();
        let downloader = fast(Vec::<String>::new()).store(refused).attempts(3).build().unwrap();
        let err = downloader.download(TempCache::new().cache(), &id(6)).await.unwrap_err();
        let Error::Store { source, .. } = &err else { panic!("{err:?}") };
        assert!(source.is_auth(), "{source:?}");
        assert_eq!(s3.stats().downloads() - gets, 1, "one attempt, not three");
    });
}

#[test]
fn the_per_endpoint_limit_bounds_downloads_from_a_store() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        let ids: Vec<ArtifactId> = (10..16).map(id).collect();
        for id in &ids {
            uploaded(&store, id).await;
        }
        // Each GET lingers, so that downloads left unbounded would overlap at the server.
        s3.faults().always(Fault::Delay(Duration::from_millis(30)));
        let downloader = fast(Vec::<String>::new())
            .store(store)
            .per_endpoint(1)
            .concurrency(16)
            .build()
            .unwrap();
        let local = TempCache::new();
        for (id, result) in downloader.download_many(local.cache(), ids).await {
            assert!(result.unwrap().transferred(), "{id}");
        }
        assert_eq!(s3.stats().peak_in_flight(), 1, "one request at a time to the store");
    });
}

#[test]
fn an_upload_to_a_store_endpoint_puts_the_object() {
    run(async {
        let s3 = S3Server::start().await;
        let store = s3_store(&s3);
        let origin = TempCache::new();
        let meta = commit_tree(origin.cache(), &id(20), 10_000);
        let downloader = fast(Vec::<String>::new()).store(store.clone()).build().unwrap();

        let uploaded = downloader.upload(origin.cache(), &id(20)).await.unwrap();
        assert_eq!(uploaded.endpoint, store.url());
        assert_eq!(uploaded.outcome, artifact_http::UploadOutcome::Created);
        assert!(uploaded.bytes > 0);
        let info = store.head(&id(20)).await.unwrap().expect("the object is there");
        assert_eq!(info.digest, meta.digest);

        let again = downloader.upload(origin.cache(), &id(20)).await.unwrap();
        assert_eq!(again.outcome, artifact_http::UploadOutcome::Exists);
    });
}
