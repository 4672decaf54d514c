//! Resumed downloads: a body cut or stalled anywhere (inside a header, file data, padding, the
//! end marker, at the last byte) is continued with a range request for the rest, on the same
//! endpoint or another with the same stream, for little more than the stream's bytes; a
//! range that fails the checks is caught, nothing partial is committed, and a whole refetch
//! follows; a stale `If-Range` is never spliced.

use std::time::Duration;

use artifact_cache::{ArtifactId, Cache};
use artifact_http::Error;
use artifact_testkit::{
    TreeBuilder, assert_same_tree,
    cache::TempCache,
    server::{Fault, TestServer},
};

use crate::support::{assert_absent_and_unlocked, commit_tree, fast, id, run, tar_of};

/// Commits a tree with zero-length files between others, so that cuts can land on their
/// headers with no data after them; the big file comes first, so that they lie beyond the
/// server's first body chunk (256 KiB).
fn commit_with_empty_files(cache: &Cache, id: &ArtifactId) {
    let writer = cache.create(id).expect("create");
    let mut rng = fastrand::Rng::with_seed(11);
    let mut blob = vec![0u8; 600_000];
    rng.fill(&mut blob);
    TreeBuilder::new(writer.path())
        .file("a/empty", "")
        .file("0-big.bin", &blob)
        .file("c/empty", "")
        .file("d.txt", "d")
        .file("e/".to_owned() + &"n".repeat(150), "a long name, with a PAX header\n")
        .file("z-empty", "");
    writer.commit().expect("commit");
}

/// The stream's offsets worth cutting at: each entry's header, data, last byte and padding,
/// the end marker, the last byte, and a spread.
fn cut_points(cache: &Cache, id: &ArtifactId) -> (Vec<u64>, u64) {
    let reader = cache.get(id).unwrap();
    let len = tar_of(reader.path()).len() as u64;
    let index = reader.index().unwrap();
    let mut offsets = vec![0, 1, 511, 512, len - 1024, len - 512, len - 2, len - 1];
    for entry in index.entries() {
        offsets.extend([entry.offset, entry.offset + 100, entry.data_offset(), entry.end()]);
        offsets.push(entry.end().saturating_sub(1));
    }
    let mut rng = fastrand::Rng::with_seed(0xc07);
    offsets.extend((0..6).map(|_| rng.u64(0..len)));
    offsets.retain(|o| *o < len);
    offsets.sort_unstable();
    offsets.dedup();
    (offsets, len)
}

#[test]
fn a_single_cut_anywhere_is_resumed_for_little_more_than_the_stream() {
    run(async {
        let remote = TempCache::new();
        commit_with_empty_files(&remote, &id(1));
        let (offsets, len) = cut_points(&remote, &id(1));
        let server = TestServer::start(remote.cache().clone()).await;
        let downloader = fast([server.url()]).build().unwrap();
        for offset in offsets {
            let local = TempCache::new();
            let before = server.stats().body_bytes();
            server.faults().once(Fault::CutAfter(offset));
            let downloaded = downloader.download(&local, &id(1)).await.unwrap();
            let sent = server.stats().body_bytes() - before;
            assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
            // Cut before its first byte, an answer may fail before its headers arrive: the
            // second request then fetches it whole, for the same cost.
            if offset > 0 {
                assert_eq!(downloaded.resumes(), 1, "cut at {offset}");
            }
            assert_eq!(downloaded.attempts(), 2, "cut at {offset}");
            // Every byte received once: what came before the cut, then the rest.
            assert_eq!(downloaded.stream_bytes(), len, "cut at {offset}");
            assert_eq!(downloaded.refetched_bytes(), 0, "cut at {offset}");
            assert!(downloaded.verified());
            // The server sent the stream once more at most: what it had handed to its
            // connection when the cut came may never have reached the client (lost in
            // buffers), and is sent again.
            assert!(sent >= len && sent <= len + offset, "cut at {offset}: {sent} sent for {len}");
        }
    });
}

#[test]
fn a_stall_is_resumed_and_a_cut_moves_to_another_endpoint_with_the_same_stream() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_200_000);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let a = TestServer::start(remote.cache().clone()).await;
        let b = TestServer::start(remote.cache().clone()).await;

        a.faults().once(Fault::StallAfter(len / 2));
        let alone = fast([a.url()]).idle_timeout(Duration::from_millis(300)).build().unwrap();
        let downloaded = alone.download(&TempCache::new(), &id(1)).await.unwrap();
        assert_eq!((downloaded.resumes(), downloaded.stream_bytes()), (1, len));

        a.faults().always(Fault::CutAfter(len / 2));
        let both = fast([a.url(), b.url()]).build().unwrap();
        let local = TempCache::new();
        let downloaded = both.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        assert_eq!(downloaded.endpoint(), Some(b.url()), "the last bytes came from b");
        let sources: Vec<(&str, u64)> =
            downloaded.sources().iter().map(|(url, bytes)| (&**url, *bytes)).collect();
        // What a had sent when it was cut (up to half), then the rest from b.
        assert_eq!(sources.iter().map(|s| s.0).collect::<Vec<_>>(), [a.url(), b.url()]);
        assert!(sources[0].1 > 0 && sources[0].1 <= len / 2, "{sources:?}");
        assert_eq!(sources[0].1 + sources[1].1, len);
        assert_eq!(b.stats().downloads(), 1);
    });
}

#[test]
fn a_corrupt_range_is_caught_nothing_is_committed_and_a_whole_refetch_recovers() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_200_000);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let a = TestServer::start(remote.cache().clone()).await;
        let b = TestServer::start(remote.cache().clone()).await;

        // a is cut halfway; b's range has a flipped byte in big.bin's data (the first entry).
        a.faults().once(Fault::CutAfter(len / 4));
        b.faults().once(Fault::Corrupt(1000));
        let downloader = fast([a.url(), b.url()]).build().unwrap();
        let local = TempCache::new();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        assert_eq!(downloaded.resumes(), 0, "the recovery was a whole fetch");
        assert_eq!(downloaded.refetched_bytes(), len, "the spliced stream was thrown away");
        assert_eq!(downloaded.attempts(), 3);

        // When the whole refetch fails its check too, the download gives up: typed, nothing
        // partial kept.
        a.faults().once(Fault::CutAfter(len / 4));
        b.faults().always(Fault::Corrupt(1000));
        let before = b.stats().downloads();
        let local = TempCache::new();
        let err = downloader.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert_absent_and_unlocked(&local, &id(1)).await;
        assert_eq!(b.stats().downloads() - before, 2, "one range and one whole fetch");
    });
}

#[test]
fn a_range_of_another_stream_is_never_spliced() {
    run(async {
        // b holds another tree under the same id: its ETag differs, so it answers the
        // If-Range request with its whole (other) stream, which must not be spliced in.
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_200_000);
        let other = TempCache::new();
        commit_tree(&other, &id(1), 1_200_001);
        let len = tar_of(remote.get(&id(1)).unwrap().path()).len() as u64;
        let a = TestServer::start(remote.cache().clone()).await;
        let b = TestServer::start(other.cache().clone()).await;
        a.faults().once(Fault::CutAfter(len / 2));
        let downloader = fast([a.url(), b.url()]).build().unwrap();
        let local = TempCache::new();
        let downloaded = downloader.download(&local, &id(1)).await.unwrap();
        assert_same_tree(remote.get(&id(1)).unwrap().path(), downloaded.path());
        assert_eq!(downloaded.endpoint(), Some(a.url()), "resumed on a, after b's refusal");
        assert_eq!((downloaded.resumes(), downloaded.attempts()), (1, 3));
        assert_eq!(b.stats().downloads(), 1);
        assert_eq!(downloaded.stream_bytes(), len);

        // The server's side of it: a stale If-Range gets the whole stream, 200.
        let url = format!("{}{}", a.url(), artifact_http::protocol::artifact_path(&id(1)));
        let answer = reqwest::Client::new()
            .get(&url)
            .header("range", "bytes=10-")
            .header("if-range", "\"0000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.bytes().await.unwrap().len() as u64, len);
    });
}

#[test]
fn cuts_beyond_the_budget_fail_as_before() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 100_000);
        let server = TestServer::start(remote.cache().clone()).await;
        // Every answer is cut after 5000 bytes: each request moves 5000 bytes on, and the
        // attempts (requests) run out first.
        server.faults().always(Fault::CutAfter(5000));
        let local = TempCache::new();
        let err = fast([server.url()]).attempts(4).build().unwrap().download(&local, &id(1)).await;
        let err = err.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(server.stats().downloads(), 4);
        assert_eq!(
            server.stats().body_bytes(),
            4 * 5000,
            "each request took the bytes after the last"
        );
        assert_absent_and_unlocked(&local, &id(1)).await;
    });
}
