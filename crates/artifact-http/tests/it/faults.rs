//! Faults between the client and its peers: cuts at many offsets, corrupted bytes, server
//! errors, stalls, garbage, refused connections, timeouts and cancellation. Whatever happens,
//! nothing partial is committed; with one healthy peer, the download succeeds.

use std::time::Duration;

use artifact_http::{Error, ProgressEvent, TimeoutKind};
use artifact_testkit::{
    assert_same_tree,
    cache::TempCache,
    peer::{Behavior, FakePeer, refused_url},
    server::{Fault, TestServer},
};

use crate::support::{assert_absent_and_unlocked, commit_tree, fast, id, run, tar_of};

#[test]
fn a_cut_at_any_offset_never_commits_anything() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 200_000);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = fast([server.url()]).attempts(1).build().unwrap();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut offsets =
            vec![0, 1, 511, 512, 513, 1024, len / 2, len - 1025, len - 1024, len - 512, len - 1];
        offsets.extend((0..24).map(|_| rng.u64(0..len)));
        for offset in offsets {
            server.faults().once(Fault::CutAfter(offset));
            let err = downloader.download(&local, &id(1)).await.expect_err("the body was cut");
            assert!(err.is_remote() && err.is_retryable(), "cut at {offset}: {err:?}");
            assert!(
                matches!(err, Error::Transfer { .. } | Error::Stream { .. }),
                "cut at {offset}: {err:?}"
            );
            assert_absent_and_unlocked(&local, &id(1)).await;
        }
        // Without a fault, the same downloader succeeds.
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn a_cut_is_retried_and_a_healthy_second_peer_serves() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let faulty = TestServer::start(remote.cache().clone()).await;
        let healthy = TestServer::start(remote.cache().clone()).await;
        faulty.faults().always(Fault::CutAfter(5000));

        // Alone, the faulty peer is retried each round, then given up on.
        let alone = fast([faulty.url()]).attempts(3).build().unwrap();
        assert!(alone.download(&local, &id(1)).await.unwrap_err().is_retryable());
        assert_eq!(faulty.stats().downloads(), 3);

        let both = fast([faulty.url(), healthy.url()]).build().unwrap();
        let downloaded = both.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(healthy.url()));
        assert_eq!(downloaded.attempts(), 2);
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn a_corrupted_byte_is_caught_and_nothing_kept() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = fast([server.url()]).attempts(1).build().unwrap();

        // In file data (big.bin is the first entry): the tree digest gives it away.
        server.faults().once(Fault::Corrupt(512 + 777));
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert!(err.is_retryable() && err.is_remote());
        assert_absent_and_unlocked(&local, &id(1)).await;

        // In a header: the checksum gives it away.
        server.faults().once(Fault::Corrupt(100));
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Stream { .. }), "{err:?}");
        assert_absent_and_unlocked(&local, &id(1)).await;

        // A retry gets clean bytes.
        server.faults().once(Fault::Corrupt(512 + 777));
        let retrying = fast([server.url()]).attempts(2).build().unwrap();
        let downloaded = retrying.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.attempts(), 2);
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn server_errors_and_busy_answers_are_retried_other_refusals_are_not() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = fast([server.url()]).attempts(4).build().unwrap();

        server.faults().times(Fault::Status(500), 1);
        server.faults().times(Fault::Status(503), 1);
        server.faults().times(Fault::Status(409), 1);
        let downloaded = downloader.download(&TempCache::new(), &id(1)).await.unwrap();
        assert_eq!(downloaded.attempts(), 4);
        assert_eq!(server.stats().downloads(), 4);

        for status in [400, 401, 403, 410] {
            server.faults().always(Fault::Status(status));
            let before = server.stats().downloads();
            let local = TempCache::new();
            let err = downloader.download(&local, &id(1)).await.unwrap_err();
            assert_eq!(err.status(), Some(status), "{err:?}");
            assert!(!err.is_retryable() && err.is_remote() && !err.is_not_found());
            assert_eq!(server.stats().downloads() - before, 1, "{status} is not retried");
            assert_absent_and_unlocked(&local, &id(1)).await;
            server.faults().clear();
        }
        // A 404 from one peer moves on to the next, which has it.
        let other = TempCache::new();
        commit_tree(&other, &id(1), 1000);
        let second = TestServer::start(other.cache().clone()).await;
        server.faults().always(Fault::Status(404));
        let both = fast([server.url(), second.url()]).build().unwrap();
        let downloaded = both.download(&TempCache::new(), &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(second.url()));
    });
}

#[test]
fn retry_after_is_honoured() {
    run(async {
        let remote = TempCache::new();
        // Over the size kept in memory, so that a GET needs a stream slot.
        commit_tree(&remote, &id(1), 100_000);
        // The real server's own 503 at its stream limit carries Retry-After: 1.
        let config = artifact_http::ServerConfig::default().max_streams(0);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        let downloader = fast([server.url()])
            .attempts(2)
            .progress(move |p| {
                if let ProgressEvent::Failed { retry_in, error } = &p.event {
                    seen.lock().unwrap().push((*retry_in, error.retry_after()));
                }
            })
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let err = downloader.download(&TempCache::new(), &id(1)).await.unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
        let events = events.lock().unwrap();
        assert_eq!(events[0], (Some(Duration::from_secs(1)), Some(Duration::from_secs(1))));
    });
}

#[test]
fn stalling_peers_time_out_and_a_healthy_one_serves() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let healthy = TestServer::start(remote.cache().clone()).await;
        let stalling_server = TestServer::start(remote.cache().clone()).await;
        stalling_server.faults().always(Fault::StallAfter(3000));
        let silent = FakePeer::start(Behavior::Stall).await;
        let half = FakePeer::start(Behavior::StallAfterHeaders(vec![0; 700])).await;
        for url in [stalling_server.url(), silent.url(), half.url()] {
            let local = TempCache::new();
            let alone =
                fast([url]).attempts(1).idle_timeout(Duration::from_millis(300)).build().unwrap();
            let err = alone.download(&local, &id(1)).await.unwrap_err();
            assert!(
                matches!(err, Error::Timeout { what: TimeoutKind::Idle, .. }),
                "{url}: {err:?}"
            );
            assert!(err.is_retryable() && err.is_remote());
            assert_absent_and_unlocked(&local, &id(1)).await;

            let with_healthy = fast([url, healthy.url()])
                .idle_timeout(Duration::from_millis(300))
                .build()
                .unwrap();
            let downloaded = with_healthy.download(&local, &id(1)).await.unwrap();
            assert_eq!(downloaded.endpoint(), Some(healthy.url()));
        }
    });
}

#[test]
fn garbage_and_hang_ups_fail_over_to_a_healthy_peer() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let healthy = TestServer::start(remote.cache().clone()).await;
        let refused = refused_url().await;
        let peers = [
            FakePeer::start(Behavior::Garbage).await,
            FakePeer::start(Behavior::GarbageBody).await,
            FakePeer::start(Behavior::HangUp).await,
        ];
        let mut urls: Vec<String> = peers.iter().map(|p| p.url().to_owned()).collect();
        urls.push(refused.clone());
        for url in &urls {
            let local = TempCache::new();
            let err = fast([url.as_str()])
                .attempts(1)
                .build()
                .unwrap()
                .download(&local, &id(1))
                .await
                .unwrap_err();
            assert!(err.is_remote(), "{url}: {err:?}");
            assert_absent_and_unlocked(&local, &id(1)).await;
        }
        let connect = fast([refused.as_str()]).attempts(1).build().unwrap();
        let err = connect.download(&TempCache::new(), &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }) && err.is_retryable(), "{err:?}");

        let mut all = urls.clone();
        all.push(healthy.url().to_owned());
        let local = TempCache::new();
        let downloaded = fast(all).build().unwrap().download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(healthy.url()));
        assert_eq!(downloaded.attempts(), 5);
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn the_overall_timeout_bounds_everything() {
    run(async {
        let silent = FakePeer::start(Behavior::Stall).await;
        let local = TempCache::new();
        let downloader = fast([silent.url()])
            .idle_timeout(Duration::from_secs(30))
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { what: TimeoutKind::Overall, .. }), "{err:?}");
        assert!(!err.is_retryable() && err.is_remote());
        assert_absent_and_unlocked(&local, &id(1)).await;
    });
}

#[test]
fn dropping_a_download_midway_commits_nothing_and_leaks_no_lock() {
    run(async {
        let remote = TempCache::new();
        let local = TempCache::new();
        commit_tree(&remote, &id(1), 2_000_000);
        let server = TestServer::start(remote.cache().clone()).await;
        server.faults().once(Fault::StallAfter(600_000));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let downloader = fast([server.url()])
            .progress(move |p| {
                if matches!(p.event, ProgressEvent::Received)
                    && p.bytes >= 100_000
                    && let Some(tx) = tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            })
            .build()
            .unwrap();
        let one = id(1);
        let download = downloader.download(&local, &one);
        tokio::select! {
            result = download => panic!("the download cannot finish: {result:?}"),
            _ = rx => {}
        }
        // The future is dropped here, midway through the body.
        assert_absent_and_unlocked(&local, &id(1)).await;
        // And a fresh attempt works.
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn a_local_failure_is_not_blamed_on_the_peer_nor_retried_elsewhere() {
    run(async {
        // The local disk is "full" (below the cache's free-space floor): no peer can help.
        // (A name too long for the local file system is the stream's fault: see hostile.rs.)
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let first = TestServer::start(remote.cache().clone()).await;
        let second = TestServer::start(remote.cache().clone()).await;
        let local =
            TempCache::with_options(artifact_cache::Options::default().min_free_bytes(u64::MAX));
        let downloader = fast([first.url(), second.url()]).attempts(3).build().unwrap();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        let Error::Cache { source, .. } = &err else { panic!("{err:?}") };
        assert!(source.is_disk_full(), "{err:?}");
        assert!(!err.is_remote() && !err.is_retryable(), "{err:?}");
        let downloads = (first.stats().downloads(), second.stats().downloads());
        assert_eq!(downloads, (0, 0), "no peer is asked");
    });
}
