//! Against a real S3 server: round trips, conditional create, corruption, faults, credentials.

use std::{sync::atomic::Ordering::SeqCst, time::Duration};

use artifact_store::UploadOutcome;
use artifact_testkit::{
    TreeBuilder, assert_same_tree,
    cache::{TempCache, assert_known, commit_known, test_id},
    s3::S3Server,
    server::Fault,
    tree_spec_with,
};
use proptest::prelude::*;

use crate::{commit_large, options, s3_store};

const MIB: usize = 1024 * 1024;

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(spec in tree_spec_with(24)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = S3Server::start().await;
            let store = s3_store(&server, options());
            let (here, there) = (TempCache::new(), TempCache::new());
            let id = test_id(7);
            let writer = here.cache().create(&id).unwrap();
            spec.write(writer.path());
            writer.commit().unwrap();

            let uploaded = store.upload(here.cache(), &id).await.unwrap();
            assert_eq!(uploaded.outcome, UploadOutcome::Created);
            let info = store.head(&id).await.unwrap().expect("uploaded");
            let local = here.cache().stat(&id).unwrap();
            assert_eq!((info.digest, info.size, info.files), (local.digest, local.size, local.files));
            assert_eq!(info.object_bytes, uploaded.bytes_sent);

            let reader = store.download(there.cache(), &id).await.unwrap();
            assert_same_tree(here.cache().get(&id).unwrap().path(), reader.path());
            assert_eq!(there.cache().stat(&id).unwrap().digest, local.digest);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_one_creates_the_other_learns_it_exists() {
    let server = S3Server::start().await;
    let store = s3_store(&server, options());
    let (a, b) = (TempCache::new(), TempCache::new());
    let id = test_id(2);
    commit_known(a.cache(), &id, 4).unwrap();
    commit_known(b.cache(), &id, 4).unwrap();

    assert_eq!(store.upload(a.cache(), &id).await.unwrap().outcome, UploadOutcome::Created);
    let puts = server.stats().uploads();
    let second = store.upload(b.cache(), &id).await.unwrap();
    assert_eq!(second.outcome, UploadOutcome::Exists);
    // The second upload sent one conditional PUT, which the store refused.
    assert_eq!(server.stats().uploads(), puts + 1);
    assert_eq!(store.list().await.unwrap(), vec![id]);

    // A refused create of a stream larger than the socket buffers: the server answers before
    // it has read the body, and the client sees a broken connection; it still learns the
    // object exists.
    let large = test_id(12);
    commit_large(a.cache(), &large, 7 * MIB);
    assert_eq!(store.upload(a.cache(), &large).await.unwrap().outcome, UploadOutcome::Created);
    for _ in 0..3 {
        let again = store.upload(a.cache(), &large).await.unwrap();
        assert_eq!(again.outcome, UploadOutcome::Exists);
    }
    // Whatever breaks the refused create (here: every PUT fails), a look tells it exists.
    server.put_faults().always(Fault::Status(500));
    assert_eq!(store.upload(b.cache(), &id).await.unwrap().outcome, UploadOutcome::Exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_is_refused_and_nothing_is_committed() {
    let server = S3Server::start().await;
    let store = s3_store(&server, options());
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(3);
    let writer = here.cache().create(&id).unwrap();
    TreeBuilder::new(writer.path()).file("f", vec![b'a'; 10_000]);
    writer.commit().unwrap();
    store.upload(here.cache(), &id).await.unwrap();

    // Flip one byte of the file's content on the server's disk (header 0..512, data after).
    let file = server.object_file(&store.key(&id));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[700] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();

    let err = store.download(there.cache(), &id).await.unwrap_err();
    assert!(err.is_corrupt() && !err.is_retryable(), "{err}");
    assert!(err.to_string().contains("has tree digest"), "{err}");
    assert!(there.cache().get(&id).unwrap_err().is_not_found());
    assert_eq!(store.stats().errors_corrupt.load(SeqCst), 1);
    // The writer was aborted: another try may fill the id (and fails the same way).
    let again = store.download(there.cache(), &id).await.unwrap_err();
    assert!(again.is_corrupt(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_parts_are_retried_alone() {
    let server = S3Server::start().await;
    let mut upload_options = options();
    upload_options.part_size = 5 * MIB;
    let store = s3_store(&server, upload_options);
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(4);
    commit_large(here.cache(), &id, 12 * MIB);

    // Upload: three parts of a multipart upload; two part PUTs fail with a 500 first.
    server.put_faults().times(Fault::Status(500), 2);
    let uploaded = store.upload(here.cache(), &id).await.unwrap();
    assert_eq!(uploaded.outcome, UploadOutcome::Created);
    assert_eq!(server.stats().uploads(), 3 + 2, "each failed part sent once more");

    // Download in 1 MiB ranges: one range cut short, one refused twice.
    let mut download_options = options();
    download_options.part_size = MIB;
    download_options.parallelism = 3;
    let reader_store = s3_store(&server, download_options);
    let parts = uploaded.bytes_sent.div_ceil(MIB as u64);
    let before = server.stats().downloads();
    server.faults().once(Fault::Delay(Duration::ZERO));
    server.faults().once(Fault::CutAfter(1000));
    server.faults().times(Fault::Status(500), 2);
    let reader = reader_store.download(there.cache(), &id).await.unwrap();
    assert_eq!(server.stats().downloads() - before, parts + 3, "each failure cost one more GET");
    assert_eq!(
        reader_store.stats().bytes_down.load(SeqCst),
        uploaded.bytes_sent,
        "the cut range was continued where it stopped: no byte fetched twice"
    );
    assert_same_tree(here.cache().get(&id).unwrap().path(), reader.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_mid_download_is_waited_out() {
    let server = S3Server::start().await;
    let store = s3_store(&server, options());
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(5);
    commit_large(here.cache(), &id, 3 * MIB);
    store.upload(here.cache(), &id).await.unwrap();

    let mut download_options = options();
    download_options.part_size = 256 * 1024;
    download_options.parallelism = 1;
    let reader_store = s3_store(&server, download_options);
    // The first range arrives, the second is cut, then the store answers 503 for a while.
    server.faults().once(Fault::Delay(Duration::ZERO));
    server.faults().once(Fault::CutAfter(10_000));
    server.faults().times(Fault::Status(503), 6);
    let reader = reader_store.download(there.cache(), &id).await.unwrap();
    assert_same_tree(here.cache().get(&id).unwrap().path(), reader.path());

    // Down for longer than every retry: a retryable error, nothing committed.
    let elsewhere = TempCache::new();
    server.faults().always(Fault::Status(503));
    let err = reader_store.download(elsewhere.cache(), &id).await.unwrap_err();
    assert!(err.is_retryable() && err.is_remote(), "{err}");
    assert!(elsewhere.cache().get(&id).unwrap_err().is_not_found());
    server.faults().clear();
    let reader = reader_store.download(elsewhere.cache(), &id).await.unwrap();
    assert_same_tree(here.cache().get(&id).unwrap().path(), reader.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_one_clear_auth_error() {
    let server = S3Server::start().await;
    let mut bad = options();
    bad.config = server.config();
    bad.config.push(("aws_secret_access_key".into(), "not-the-secret".into()));
    let store = artifact_store::Store::open_with(&server.url(), bad).unwrap();
    let cache = TempCache::new();
    let id = test_id(6);
    commit_known(cache.cache(), &id, 2).unwrap();

    let err = store.check().await.unwrap_err();
    assert!(err.is_auth() && !err.is_retryable(), "{err}");
    assert_eq!(err.to_string(), "s3://artifacts refused the credentials for list");
    let err = store.head(&id).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    let err = store.upload(cache.cache(), &id).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    let err = store.download(TempCache::new().cache(), &id).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    s3_store(&server, options()).check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_keeps_few_parts_in_flight() {
    let server = S3Server::start().await;
    let mut upload_options = options();
    upload_options.part_size = 5 * MIB;
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(8);
    commit_large(here.cache(), &id, 24 * MIB);
    s3_store(&server, upload_options).upload(here.cache(), &id).await.unwrap();

    let mut download_options = options();
    download_options.part_size = 256 * 1024;
    download_options.parallelism = 3;
    let store = s3_store(&server, download_options);
    let reader = store.download(there.cache(), &id).await.unwrap();
    assert_same_tree(here.cache().get(&id).unwrap().path(), reader.path());
    let peak = store.stats().peak_parts_in_flight.load(SeqCst);
    assert!((1..=3).contains(&peak), "{peak} parts were held at once");
    assert_eq!(store.stats().parts_in_flight.load(SeqCst), 0);
    assert!(store.stats().requests.load(SeqCst) >= 96, "24 MiB in 256 KiB ranges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_ids_and_prefixes() {
    let server = S3Server::start().await;
    let mut with_prefix = options();
    with_prefix.config = server.config();
    let store =
        artifact_store::Store::open_with(&format!("{}/ci/main/", server.url()), with_prefix)
            .unwrap();
    assert_eq!(store.url(), "s3://artifacts/ci/main");
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(9);
    assert_eq!(store.head(&id).await.unwrap(), None);
    let err = store.download(there.cache(), &id).await.unwrap_err();
    assert!(err.is_not_found() && !err.is_retryable(), "{err}");
    commit_known(here.cache(), &id, 3).unwrap();
    store.upload(here.cache(), &id).await.unwrap();
    assert_eq!(store.key(&id), format!("ci/main/{id}.tar"));
    assert!(server.object_file(&store.key(&id)).is_file());
    let reader = store.download(there.cache(), &id).await.unwrap();
    assert_known(reader.path(), &id, 3);
    assert_eq!(store.list().await.unwrap(), vec![id]);
    assert!(s3_store(&server, options()).list().await.unwrap().is_empty(), "nothing at the root");

    let mut elsewhere = options();
    elsewhere.config = server.config();
    let missing = artifact_store::Store::open_with("s3://no-such-bucket", elsewhere).unwrap();
    let err = missing.check().await.unwrap_err();
    assert_eq!(err.to_string(), "bucket of s3://no-such-bucket not found");
}
