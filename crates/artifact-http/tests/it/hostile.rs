//! The client against hostile peers (artifact-testkit's hostile catalogue): each costs the
//! client that endpoint at most, never its time, its disk or its terminal, and a healthy
//! peer after it still serves.

use std::time::Duration;

use artifact_http::{Error, ProgressEvent, TimeoutKind};
use artifact_testkit::{
    assert_same_tree,
    cache::TempCache,
    peer::{Behavior, FakePeer, Served},
    server::TestServer,
};

use crate::support::{assert_absent_and_unlocked, commit_tree, fast, id, run};

/// How long a test of a peer that would hang a careless client may take.
const PROMPTLY: Duration = Duration::from_secs(20);

/// The honest answer for `id(1)` in `remote`.
fn served(remote: &TempCache) -> Served {
    Served::of(remote.get(&id(1)).unwrap().path())
}

#[test]
fn a_name_too_long_here_rules_out_that_peer_not_the_download() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let bad = FakePeer::start(Behavior::LongNameEntry).await;
        let good = TestServer::start(remote.cache().clone()).await;

        let local = TempCache::new();
        let alone = fast([bad.url()]).attempts(3).build().unwrap();
        let err = alone.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Unwritable { .. }), "{err:?}");
        assert!(err.is_remote() && !err.is_retryable(), "{err:?}");
        assert_eq!(bad.connections(), 1, "the peer is ruled out, not retried");
        assert_absent_and_unlocked(&local, &id(1)).await;

        let both = fast([bad.url(), good.url()]).build().unwrap();
        let downloaded = both.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(good.url()));
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
    });
}

#[test]
fn a_dripping_error_body_does_not_hold_the_attempt() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        // Each byte comes well within the idle timeout; the whole body would take 7 minutes.
        let bad =
            FakePeer::start(Behavior::SlowErrorBody { every: Duration::from_millis(100) }).await;
        let good = TestServer::start(remote.cache().clone()).await;
        let downloader =
            fast([bad.url(), good.url()]).idle_timeout(Duration::from_secs(1)).build().unwrap();
        let downloaded =
            tokio::time::timeout(PROMPTLY, downloader.download(&TempCache::new(), &id(1)))
                .await
                .expect("the error body's read is bounded in time")
                .unwrap();
        assert_eq!(downloaded.endpoint(), Some(good.url()));
        assert_eq!(downloaded.attempts(), 2);
    });
}

#[test]
fn a_download_whose_deadline_passed_commits_nothing() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 10_000);
        // The whole stream, then a body that never ends: the tree is complete and verifiable.
        let every = Duration::from_millis(20);
        let bad =
            FakePeer::start(Behavior::CompleteThenDrip { served: served(&remote), every }).await;
        let local = TempCache::new();
        let downloader =
            fast([bad.url()]).attempts(1).timeout(Duration::from_millis(500)).build().unwrap();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { what: TimeoutKind::Overall, .. }), "{err:?}");
        assert_absent_and_unlocked(&local, &id(1)).await;
    });
}

#[test]
fn a_peer_is_held_to_the_size_it_announced() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 10_000);
        let good = TestServer::start(remote.cache().clone()).await;
        let oversized = FakePeer::start(Behavior::OversizedEntry).await;
        let endless = FakePeer::start(Behavior::EndlessZeros(served(&remote))).await;
        for bad in [&oversized, &endless] {
            let local = TempCache::new();
            let alone = fast([bad.url()]).attempts(2).build().unwrap();
            let err = tokio::time::timeout(PROMPTLY, alone.download(&local, &id(1)))
                .await
                .expect("the announced size bounds the body")
                .unwrap_err();
            let Error::Stream { source, .. } = &err else { panic!("{err:?}") };
            assert!(source.is_limit(), "{err:?}");
            assert!(err.is_remote() && !err.is_retryable(), "{err:?}");
            assert_eq!(bad.connections(), 1, "the peer is ruled out");
            assert_absent_and_unlocked(&local, &id(1)).await;

            let both = fast([bad.url(), good.url()]).build().unwrap();
            let downloaded = both.download(&local, &id(1)).await.unwrap();
            assert_eq!(downloaded.endpoint(), Some(good.url()));
            assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        }
    });
}

#[test]
fn a_crawling_peer_is_abandoned_for_the_next() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 10_000);
        // About 50 bytes per second, against a limit of 1,000 bytes per second over 1 s.
        let every = Duration::from_millis(20);
        let bad = FakePeer::start(Behavior::Crawl { served: served(&remote), every }).await;
        let good = TestServer::start(remote.cache().clone()).await;
        let window = Duration::from_secs(1);

        let local = TempCache::new();
        let alone = fast([bad.url()]).attempts(1).low_speed_limit(1000, window).build().unwrap();
        let err = alone.download(&local, &id(1)).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { what: TimeoutKind::LowSpeed, after, .. } if after == window),
            "{err:?}"
        );
        assert!(err.is_remote() && err.is_retryable(), "{err:?}");
        assert_absent_and_unlocked(&local, &id(1)).await;

        let both = fast([bad.url(), good.url()]).low_speed_limit(1000, window).build().unwrap();
        let downloaded = both.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(good.url()));
    });
}

#[test]
fn redirects_are_not_followed() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let good = TestServer::start(remote.cache().clone()).await;
        let elsewhere = format!("{}/artifact?id={}", good.url(), id(1));
        let redirect = FakePeer::start(Behavior::Redirect(elsewhere.clone())).await;
        let looping = FakePeer::start(Behavior::RedirectLoop).await;

        let local = TempCache::new();
        let downloader = fast([redirect.url()]).attempts(1).build().unwrap();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        let Error::Redirect { status: 302, location, .. } = &err else { panic!("{err:?}") };
        assert_eq!(location, &elsewhere);
        assert!(err.is_remote() && !err.is_retryable(), "{err:?}");
        assert_eq!(good.stats().downloads(), 0, "the redirect was not followed");
        assert_absent_and_unlocked(&local, &id(1)).await;

        let downloader = fast([looping.url()]).attempts(3).build().unwrap();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::Redirect { .. }), "{err:?}");
        assert_eq!(looping.connections(), 1, "one request, ruled out");

        // A redirect is that endpoint's failure: the next one serves.
        let both = fast([redirect.url(), good.url()]).build().unwrap();
        let downloaded = both.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.endpoint(), Some(good.url()));
    });
}

#[test]
fn remote_text_reaches_no_terminal_raw() {
    run(async {
        let bad = FakePeer::start(Behavior::EscapeInjection).await;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let downloader = {
            let seen = seen.clone();
            fast([bad.url()])
                .attempts(1)
                .progress(move |p| {
                    if let ProgressEvent::Failed { error, .. } = &p.event {
                        seen.lock().unwrap().push(error.to_string());
                    }
                })
                .build()
                .unwrap()
        };
        let err = downloader.download(&TempCache::new(), &id(1)).await.unwrap_err();
        assert_eq!(err.status(), Some(500));
        let mut texts = seen.lock().unwrap().clone();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(each) = source {
            texts.push(each.to_string());
            source = each.source();
        }
        for text in texts {
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.contains(r"\u{1b}[2J"), "the text is escaped, not dropped: {text:?}");
        }
    });
}
