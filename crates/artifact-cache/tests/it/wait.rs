//! The async waiting variants: `get_wait` and the single-flight `create_or_get`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use artifact_cache::{Error, Fill};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, fill_known, test_id};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_waits_for_the_writer_to_commit() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    let waiter = tokio::spawn({
        let cache = cache.cache().clone();
        async move { cache.get_wait(&test_id(1), LONG).await }
    });
    tokio::task::yield_now().await;
    fill_known(writer.path(), &test_id(1), 3).unwrap();
    writer.commit().unwrap();
    let reader = waiter.await.unwrap().unwrap();
    assert_known(reader.path(), &test_id(1), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_ends_not_found_when_the_writer_aborts() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    let waiter = tokio::spawn({
        let cache = cache.cache().clone();
        async move { cache.get_wait(&test_id(1), LONG).await }
    });
    tokio::task::yield_now().await;
    writer.abort().unwrap();
    assert!(waiter.await.unwrap().unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_times_out_while_locked_and_returns_at_once_otherwise() {
    let cache = TempCache::new();
    assert!(cache.get_wait(&test_id(1), LONG).await.unwrap_err().is_not_found());
    let _writer = cache.create(&test_id(1)).unwrap();
    let err = cache.get_wait(&test_id(1), Duration::from_millis(30)).await.unwrap_err();
    match err {
        Error::Timeout { id, waited } => {
            assert_eq!(id, test_id(1));
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    // A writer in another "process" is waited for by polling.
    commit_known(&cache, &test_id(2), 1).unwrap();
    cache.get_wait(&test_id(2), Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_polls_writers_of_other_processes() {
    let cache = TempCache::new();
    let other = cache.reopen();
    let writer = other.create(&test_id(1)).unwrap();
    let waiter = tokio::spawn({
        let cache = cache.cache().clone();
        async move { cache.get_wait(&test_id(1), LONG).await }
    });
    tokio::task::yield_now().await;
    fill_known(writer.path(), &test_id(1), 2).unwrap();
    writer.commit().unwrap();
    assert_known(waiter.await.unwrap().unwrap().path(), &test_id(1), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_or_get_makes_one_writer_and_many_readers() {
    let cache = TempCache::new();
    let writers = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.cache().clone();
            let writers = writers.clone();
            tokio::spawn(async move {
                match cache.create_or_get(&test_id(1), LONG).await.unwrap() {
                    Fill::Create(writer) => {
                        writers.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        fill_known(writer.path(), &test_id(1), 4).unwrap();
                        writer.commit().unwrap();
                        cache.get(&test_id(1)).unwrap()
                    }
                    Fill::Ready(reader) => reader,
                }
            })
        })
        .collect();
    for task in tasks {
        assert_known(task.await.unwrap().path(), &test_id(1), 4);
    }
    assert_eq!(writers.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_or_get_hands_over_when_the_writer_aborts() {
    let cache = TempCache::new();
    let Fill::Create(first) = cache.create_or_get(&test_id(1), LONG).await.unwrap() else {
        panic!("the cache is empty");
    };
    let waiter = tokio::spawn({
        let cache = cache.cache().clone();
        async move { cache.create_or_get(&test_id(1), LONG).await }
    });
    tokio::task::yield_now().await;
    drop(first);
    match waiter.await.unwrap().unwrap() {
        Fill::Create(writer) => writer.commit().map(drop).unwrap(),
        Fill::Ready(_) => panic!("nobody committed"),
    }
    assert!(matches!(cache.create_or_get(&test_id(1), LONG).await.unwrap(), Fill::Ready(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_waiting_future_leaves_nothing_behind() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    for _ in 0..20 {
        let waiting = cache.create_or_get(&test_id(1), LONG);
        assert!(tokio::time::timeout(Duration::from_millis(2), waiting).await.is_err());
        let waiting = cache.get_wait(&test_id(1), LONG);
        assert!(tokio::time::timeout(Duration::from_millis(2), waiting).await.is_err());
    }
    writer.abort().unwrap();
    // Cancelled while it might have been the writer: nothing stays locked or staged.
    for _ in 0..20 {
        let attempt = cache.create_or_get(&test_id(2), LONG);
        drop(tokio::time::timeout(Duration::from_micros(10), attempt).await);
    }
    // A cancelled attempt's blocking half may still be running (it aborts what it made when
    // it finds nobody waiting): `create_or_get` waits for it, then gets the lock.
    for id in [test_id(1), test_id(2)] {
        let Fill::Create(writer) = cache.create_or_get(&id, LONG).await.unwrap() else {
            panic!("nothing was committed");
        };
        writer.abort().unwrap();
    }
    assert_eq!(cache.list().unwrap().count(), 0);
}
