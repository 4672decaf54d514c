//! Concurrency: single flight in one process, the per-endpoint limit measured at the server,
//! shared failures, and bounded file descriptors under load.

use std::{sync::Arc, time::Duration};

use artifact_testkit::{
    cache::{TempCache, assert_known, commit_known, test_id},
    server::{Fault, Gate, TestServer},
};

use crate::support::{assert_absent_and_unlocked, commit_tree, fast, id, run};

/// Polls each of `downloads` once, in order, then awaits them all.
///
/// A download joins (or leads) its in-process flight synchronously, on its first poll, and the
/// leader cannot finish before it is polled again: so every download here joins while the
/// first one is in flight, whatever the scheduling, and no delay is needed to make them meet.
async fn all_joined_then_awaited<F: Future + Unpin>(mut downloads: Vec<F>) -> Vec<F::Output> {
    use futures_util::FutureExt;
    for download in &mut downloads {
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(download.poll_unpin(cx)));
        assert!(first.await.is_pending(), "nothing completes on its first poll");
    }
    futures_util::future::join_all(downloads).await
}

#[test]
fn concurrent_downloads_of_one_id_make_one_transfer() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_000_000);
        let server = TestServer::start(remote.cache().clone()).await;

        // 64 downloads sharing one downloader (one in-process flight)...
        let local = TempCache::new();
        let downloader = fast([server.url()]).build().unwrap();
        let one = id(1);
        let downloads: Vec<_> =
            (0..64).map(|_| Box::pin(downloader.download(local.cache(), &one))).collect();
        let mut transferred = 0;
        for result in all_joined_then_awaited(downloads).await {
            let downloaded = result.unwrap();
            assert_eq!(downloaded.metadata().files, 5);
            transferred += usize::from(downloaded.transferred());
        }
        assert_eq!(transferred, 1);
        assert_eq!(server.stats().downloads(), 1, "one transfer for 64 downloads");

        // ...and 16 separate downloaders: the cache's own single flight de-duplicates. The
        // delay makes the other downloaders likely to find the first one's writer at work (and
        // wait for it) rather than its committed artifact; it cannot make the test pass
        // wrongly: a downloader that comes after the commit makes no transfer either, and one
        // that finds the writer at work and does not wait for it fails the count below.
        server.faults().once(Fault::Delay(Duration::from_millis(200)));
        let other = TempCache::new();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let downloader = fast([server.url()]).build().unwrap();
                let cache = other.cache().clone();
                tokio::spawn(async move { downloader.download(&cache, &id(1)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(server.stats().downloads(), 2);
    });
}

#[test]
fn a_failed_transfer_is_shared_not_repeated() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let local = TempCache::new();
        let downloader = fast([server.url()]).build().unwrap();
        let seven = id(7);
        let downloads: Vec<_> =
            (0..16).map(|_| Box::pin(downloader.download(local.cache(), &seven))).collect();
        for result in all_joined_then_awaited(downloads).await {
            assert!(result.unwrap_err().is_not_found());
        }
        assert_eq!(server.stats().downloads(), 1, "the waiters got the leader's 404");
        assert_absent_and_unlocked(&local, &id(7)).await;
    });
}

#[test]
fn download_many_respects_the_per_endpoint_limit() {
    run(async {
        let remote = TempCache::new();
        let ids: Vec<_> = (0..200).map(test_id).collect();
        for id in &ids {
            commit_known(&remote, id, 2).unwrap();
        }
        let server = TestServer::start(remote.cache().clone()).await;
        // Requests wait at a shut gate, so that they pile up at the server until the limit
        // stops them: the limit is reached for certain, and a leak past it is likely to show.
        let gate = Gate::shut();
        server.faults().always(Fault::Wait(gate.clone()));
        let local = TempCache::new();
        let downloader = fast([server.url()]).concurrency(64).per_endpoint(8).build().unwrap();
        let many = {
            let (cache, ids) = (local.cache().clone(), ids.clone());
            tokio::spawn(async move { downloader.download_many(&cache, ids).await })
        };
        server.stats().wait_in_flight(8).await;
        gate.open();
        let results = many.await.unwrap();
        assert_eq!(results.len(), 200);
        for ((got, result), want) in results.into_iter().zip(&ids) {
            assert_eq!(got, *want, "results come in the order asked");
            let downloaded = result.unwrap();
            assert_known(downloaded.path(), want, 2);
        }
        assert_eq!(server.stats().downloads(), 200);
        let peak = server.stats().peak_in_flight();
        assert_eq!(peak, 8, "requests in flight at the server, at most");
    });
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

#[test]
fn many_concurrent_downloads_keep_file_descriptors_bounded() {
    run(async {
        let remote = TempCache::new();
        let ids: Vec<_> = (0..400).map(test_id).collect();
        for id in &ids {
            commit_known(&remote, id, 3).unwrap();
        }
        let server = TestServer::start(remote.cache().clone()).await;
        let local = TempCache::new();
        let baseline = open_fds();
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = peak.clone();
        let downloader = fast([server.url()])
            .concurrency(64)
            .per_endpoint(16)
            .progress(move |p| {
                if matches!(p.event, artifact_http::ProgressEvent::Started) {
                    seen.fetch_max(open_fds(), std::sync::atomic::Ordering::Relaxed);
                }
            })
            .build()
            .unwrap();
        // Spawned tasks, not download_many: the limits hold for any caller.
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (downloader, cache, id) = (downloader.clone(), local.cache().clone(), *id);
                tokio::spawn(async move { downloader.download(&cache, &id).await.map(drop) })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        // Each cache keeps at most 128 idle lock files open (artifact-cache's table), and
        // there are two here. In flight: up to 64 transfers holding a writer's lock file while
        // they wait for one of 16 per-endpoint slots, and per running transfer a client and a
        // server socket, the files being sent and written and their directories. A descriptor
        // kept per id (400 of them) would break both bounds.
        let idle = 2 * 128;
        assert!(
            peak.saturating_sub(baseline) < idle + 64 + 16 * 12,
            "{baseline} fds before, peak {peak}"
        );
        let after = open_fds();
        assert!(after < baseline + idle + 32, "{baseline} fds before, {after} after");
    });
}
