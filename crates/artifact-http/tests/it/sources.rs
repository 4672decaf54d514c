//! Many-source downloads: disjoint ranges from several servers at once, one of them dying
//! midway or serving corrupt bytes, and the stream still committed whole and verified.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use artifact_http::ProgressEvent;
use artifact_testkit::{
    assert_same_tree,
    cache::TempCache,
    server::{Fault, TestServer},
};

use crate::support::{commit_tree, fast, id, run, tar_of};

const CHUNK: u64 = 64 * 1024;

#[test]
fn three_sources_share_the_stream_and_one_dying_midway_is_covered_by_the_others() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 2_000_000);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let servers = [
            TestServer::start(remote.cache().clone()).await,
            TestServer::start(remote.cache().clone()).await,
            TestServer::start(remote.cache().clone()).await,
        ];
        let urls: Vec<&str> = servers.iter().map(TestServer::url).collect();
        // What the progress events said last, per endpoint, and the bytes re-fetched.
        let seen = Arc::new(Mutex::new((HashMap::<String, u64>::new(), 0u64)));
        let events = seen.clone();
        let downloader = fast(urls.clone())
            .progress(move |p| {
                if let ProgressEvent::Received = p.event {
                    let mut seen = events.lock().unwrap();
                    seen.0.insert(p.endpoint.to_string(), p.source_bytes);
                    seen.1 = p.refetched;
                }
            })
            .sources(3)
            .multi_source_threshold(CHUNK)
            .chunk_size(CHUNK)
            .build()
            .unwrap();

        // All healthy: every source serves part of it.
        let local = TempCache::new();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        let served: u64 = downloaded.sources().iter().map(|(_, bytes)| bytes).sum();
        assert_eq!(served, len, "the sources' bytes add up to the stream");
        assert!(downloaded.sources().len() >= 2, "{:?}", downloaded.sources());

        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.0.values().sum::<u64>(), len, "progress tells the bytes per source");
        }
        seen.lock().unwrap().0.clear();

        // The second dies after two chunks: its ranges go to the others.
        servers[1].faults().times(Fault::Delay(Duration::ZERO), 2);
        servers[1].faults().always(Fault::CutAfter(CHUNK / 2));
        let local = TempCache::new();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        let served: u64 = downloaded.sources().iter().map(|(_, bytes)| bytes).sum();
        assert_eq!(served, len);
        let from_dead = downloaded.sources().iter().find(|(url, _)| &**url == urls[1]);
        assert!(from_dead.is_none_or(|(_, bytes)| *bytes <= 2 * CHUNK), "{from_dead:?}");
        assert!(downloaded.refetched_bytes() >= CHUNK / 2, "its half chunk was fetched again");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.0.values().sum::<u64>(), len);
        assert_eq!(seen.1, downloaded.refetched_bytes(), "progress tells the bytes re-fetched");
    });
}

#[test]
fn a_corrupt_source_is_caught_and_a_whole_fetch_recovers() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_000_000);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let good = TestServer::start(remote.cache().clone()).await;
        let other = TestServer::start(remote.cache().clone()).await;
        let corrupt = TestServer::start(remote.cache().clone()).await;
        // Every range it serves has a flipped byte in file data.
        corrupt.faults().always(Fault::Corrupt(CHUNK / 2 + 7));
        let downloader = fast([good.url(), other.url(), corrupt.url()])
            .sources(3)
            .multi_source_threshold(CHUNK)
            .chunk_size(CHUNK)
            .build()
            .unwrap();
        let local = TempCache::new();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        assert!(corrupt.stats().downloads() >= 1, "the corrupt source took part");
        assert_eq!(downloaded.sources(), [(other.url().into(), len)], "then a whole fetch");
        assert!(downloaded.refetched_bytes() > 0);
    });
}
