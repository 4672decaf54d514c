//! Eviction (least recently used first, never a locked artifact), usage, gc and the
//! free-space floor.

use std::{
    fs,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use artifact_cache::{ArtifactId, Cache, Error, Options};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, test_id, until_unlocked};

/// Commits `id` holding one file of `bytes` bytes.
fn commit_sized(cache: &Cache, id: &ArtifactId, bytes: usize) {
    let writer = cache.create(id).unwrap();
    fs::write(writer.path().join("data"), vec![7u8; bytes]).unwrap();
    writer.commit().unwrap();
}

fn present(cache: &Cache) -> Vec<ArtifactId> {
    let mut ids: Vec<_> = cache.list().unwrap().map(Result::unwrap).collect();
    ids.sort();
    ids
}

#[test]
fn evicts_least_recently_used_first_after_a_commit() {
    let cache = TempCache::with_options(Options::default().max_bytes(Some(3000)));
    for n in 1..=3 {
        commit_sized(&cache, &test_id(n), 1000);
    }
    assert_eq!(cache.usage().unwrap().bytes, 3000);
    // Use 1, so 2 becomes the least recently used.
    drop(cache.get(&test_id(1)).unwrap());
    commit_sized(&cache, &test_id(4), 1000);
    assert_eq!(present(&cache), [test_id(1), test_id(3), test_id(4)]);
    // Now 3 is the oldest; a big commit evicts 3 and then 1, never the new one.
    commit_sized(&cache, &test_id(5), 2000);
    assert_eq!(present(&cache), [test_id(4), test_id(5)]);
    assert_eq!(cache.evictions(), 3);
    assert_eq!(cache.reopen().evictions(), 0);
    let usage = cache.usage().unwrap();
    assert_eq!((usage.bytes, usage.artifacts), (3000, 2));
}

#[test]
fn never_evicts_a_locked_artifact() {
    let cache = TempCache::with_options(Options::default().max_bytes(Some(2000)));
    commit_sized(&cache, &test_id(1), 1000);
    commit_sized(&cache, &test_id(2), 1000);
    // The oldest is held by a reader in "another process" (whose use is not persisted yet,
    // so 1 stays the least recently used here).
    let other = cache.reopen();
    let reader = other.get(&test_id(1)).unwrap();
    commit_sized(&cache, &test_id(3), 1000);
    assert_eq!(present(&cache), [test_id(1), test_id(3)]);
    assert_eq!(fs::read(reader.path().join("data")).unwrap().len(), 1000);
    drop(reader);
    let report = cache.gc(None).unwrap();
    assert_eq!(report.evicted, Vec::<ArtifactId>::new());
    // Over a smaller budget, 1 goes now that nobody holds it.
    cache.set_max_bytes(Some(1000));
    let report = cache.gc(None).unwrap();
    assert_eq!(report.evicted, [test_id(1)]);
    assert_eq!(report.evicted_bytes, 1000);
    assert_eq!(report.usage.bytes, 1000);
}

#[test]
fn gc_skips_locked_artifacts_and_reports_them() {
    let cache = TempCache::new();
    for n in 1..=3 {
        commit_sized(&cache, &test_id(n), 100);
    }
    commit_sized(&cache, &test_id(4), 100);
    let _reader = cache.reopen().get(&test_id(1)).unwrap();
    let _writer_elsewhere = cache.reopen().create(&test_id(5)).unwrap();
    let _local_reader = cache.get(&test_id(3)).unwrap();
    let report = cache.gc(Some(0)).unwrap();
    assert_eq!(report.evicted, [test_id(2), test_id(4)]);
    assert_eq!(report.skipped_locked, 2);
    assert_eq!(report.usage.artifacts, 2);
}

#[test]
fn gc_sees_other_processes_and_cleans_leftovers() {
    let cache = TempCache::new();
    let other = cache.reopen();
    commit_sized(&cache, &test_id(1), 10);
    assert_eq!(other.usage().unwrap().bytes, 10);
    commit_sized(&cache, &test_id(2), 20);
    // `usage` may lag other processes; `gc` rescans.
    assert_eq!(other.gc(None).unwrap().usage.bytes, 30);
    // Leftovers: a dead writer's staging directory and a stale lock file.
    fs::create_dir_all(cache.root().join(format!("tmp/{}/1.1/tree", test_id(3)))).unwrap();
    fs::write(cache.root().join(format!("locks/{}", test_id(4))), []).unwrap();
    let report = other.gc(None).unwrap();
    assert_eq!(report.leftovers_removed, 1);
    assert_eq!(report.stale_locks_removed, 1);
    assert_eq!(fs::read_dir(cache.root().join("locks")).unwrap().count(), 2);
    assert_known_sizes(&other);
}

fn assert_known_sizes(cache: &Cache) {
    assert_eq!(cache.stat(&test_id(1)).unwrap().size, 10);
    assert_eq!(cache.stat(&test_id(2)).unwrap().size, 20);
}

#[test]
fn last_use_in_another_process_counts_once_persisted() {
    let cache =
        TempCache::with_options(Options::default().last_used_resolution(std::time::Duration::ZERO));
    for n in 1..=3 {
        commit_sized(&cache, &test_id(n), 100);
    }
    let other =
        cache.reopen_with(Options::default().last_used_resolution(std::time::Duration::ZERO));
    drop(other.get(&test_id(1)).unwrap());
    let report = cache.gc(Some(200)).unwrap();
    assert_eq!(report.evicted, [test_id(2)]);
}

#[test]
fn the_free_space_floor_refuses_create() {
    let cache = TempCache::with_options(Options::default().min_free_bytes(u64::MAX));
    let err = cache.create(&test_id(1)).unwrap_err();
    match &err {
        Error::DiskFull { free, floor, .. } => {
            assert_eq!(*floor, u64::MAX);
            assert!(free < floor);
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert!(err.is_disk_full());
    assert!(!err.is_retryable());
    // Nothing is left locked or staged.
    cache.set_min_free_bytes(0);
    cache.create(&test_id(1)).unwrap().commit().unwrap();
}

#[test]
fn the_free_space_floor_refuses_commit_and_keeps_what_is_committed() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 3).unwrap();
    let writer = cache.create(&test_id(2)).unwrap();
    fs::write(writer.path().join("big"), vec![0u8; 4096]).unwrap();
    cache.set_min_free_bytes(u64::MAX);
    assert!(writer.commit().unwrap_err().is_disk_full());
    assert!(cache.get(&test_id(2)).unwrap_err().is_not_found());
    assert_known(cache.get(&test_id(1)).unwrap().path(), &test_id(1), 3);
    assert_eq!(fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
    cache.set_min_free_bytes(0);
    cache.create(&test_id(2)).unwrap();
}

#[test]
fn concurrent_commits_end_within_the_size_bound() {
    // Each commit that finds another thread evicting leaves its eviction to that thread; the
    // commits that land while it evicts must still be paid for before it lets go.
    const THREADS: u64 = 6;
    const EACH: u64 = 5;
    const FILES: usize = 20;
    const BYTES: u64 = FILES as u64 * 1000;
    let budget = 3 * BYTES;
    let cache = TempCache::with_options(Options::default().max_bytes(Some(budget)));
    let barrier = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, barrier) = (&*cache, &barrier);
            s.spawn(move || {
                for n in 0..EACH {
                    let writer = cache.create(&test_id(t * 1000 + n)).unwrap();
                    for f in 0..FILES {
                        fs::write(writer.path().join(format!("f{f}")), [1u8; 1000]).unwrap();
                    }
                    // Commit together, so that commits land while another thread evicts.
                    barrier.wait();
                    writer.commit().unwrap();
                }
            });
        }
    });
    let on_disk: u64 = present(&cache).iter().map(|id| cache.stat(id).unwrap().size).sum();
    assert!(on_disk <= budget, "{on_disk} bytes on disk, bound {budget}");
    assert_eq!(cache.usage().unwrap().bytes, on_disk);
    assert!(cache.evictions() >= THREADS * EACH - 3, "{} evictions", cache.evictions());
}

#[test]
fn commits_and_removals_during_a_rescan_are_counted() {
    // `gc` rebuilds the index from disk each time; commits and removals landing while it
    // reads must end counted exactly as they are on disk, not lost with the old index.
    const ROUNDS: u64 = 200;
    let cache = TempCache::new();
    let done = AtomicBool::new(false);
    let scans = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                cache.gc(None).unwrap();
                scans.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Ends the scans however this thread ends: a panic here must fail the test, not
        // leave the scope waiting for the scanner forever.
        let _stop = Defer(|| done.store(true, Ordering::Relaxed));
        for n in 0..ROUNDS {
            commit_sized(&cache, &test_id(n), 100 + n as usize);
            if n % 3 == 2 {
                // gc's recovery may hold the lock of the id committed just before for a
                // moment (it saw that writer's staging directory): retry, as callers do.
                until_unlocked(|| cache.remove(&test_id(n - 1)));
            }
            // Wait for a scan to start (not for time) before every few more changes.
            let seen = scans.load(Ordering::Relaxed);
            while n % 10 == 0 && scans.load(Ordering::Relaxed) == seen {
                std::thread::yield_now();
            }
        }
    });
    let ids = present(&cache);
    let on_disk: u64 = ids.iter().map(|id| cache.stat(id).unwrap().size).sum();
    // Within RESCAN of the last gc: the index is not rebuilt, so it must be right by itself.
    let usage = cache.usage().unwrap();
    assert_eq!((usage.bytes, usage.artifacts), (on_disk, ids.len() as u64));
}

/// Runs its closure when dropped, on unwinding too.
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
