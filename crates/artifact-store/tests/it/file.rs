//! `file:///DIR` stores: the whole cycle without a server.

use artifact_store::{Store, UploadOutcome};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, test_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_round_trip() {
    let bucket = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("file://{}", bucket.path().display())).unwrap();
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(1);
    commit_known(here.cache(), &id, 5).unwrap();

    assert_eq!(store.head(&id).await.unwrap(), None);
    assert_eq!(store.upload(here.cache(), &id).await.unwrap().outcome, UploadOutcome::Created);
    assert_eq!(store.upload(here.cache(), &id).await.unwrap().outcome, UploadOutcome::Exists);
    let info = store.head(&id).await.unwrap().expect("uploaded");
    assert_eq!(info.digest, here.cache().stat(&id).unwrap().digest);
    assert!(bucket.path().join(format!("{id}.tar")).is_file());

    let reader = store.download(there.cache(), &id).await.unwrap();
    assert_known(reader.path(), &id, 5);
    drop(reader);
    assert_eq!(store.list().await.unwrap(), vec![id]);

    store.delete(&id).await.unwrap();
    assert_eq!(store.head(&id).await.unwrap(), None);
    assert!(store.list().await.unwrap().is_empty());
    let err = store.download(TempCache::new().cache(), &id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_one_clear_error() {
    for (url, message) in [
        ("ftp://host/dir", "unknown scheme (expected s3, gs, az or file)"),
        ("bucket/prefix", "expected SCHEME://…"),
        ("s3:///prefix", "expected SCHEME://BUCKET[/PREFIX]"),
        ("file://relative/dir", "a file URL needs an absolute path: file:///DIR"),
    ] {
        let err = Store::open(url).unwrap_err();
        assert_eq!(err.to_string(), format!("invalid store URL {url:?}: {message}"));
        assert!(!err.is_retryable() && !err.is_remote(), "{err}");
    }
}
