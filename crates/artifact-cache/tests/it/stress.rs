//! Threads and processes hammering one root with random operations for a bounded time.

use std::{
    ffi::OsStr,
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use artifact_cache::{ArtifactId, Cache, Error, Options};
use artifact_testkit::cache::{TempCache, assert_known, fill_known, test_id};

use crate::child::Child;

/// A small xorshift generator: the children need randomness without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// How many files artifact `n` has (its content is [`fill_known`]'s for its id).
pub(crate) fn files_for(n: u64) -> usize {
    5 + (n as usize % 4) * 10
}

fn number(id: &ArtifactId) -> u64 {
    u64::from_be_bytes(id.as_bytes().try_into().expect("test ids are 8 bytes"))
}

/// Panics unless `err` is one that concurrency explains.
fn allowed(err: Error) {
    match err {
        Error::NotFound { .. }
        | Error::Exists { .. }
        | Error::WriteLocked { .. }
        | Error::ReadLocked { .. } => {}
        other => panic!("unexpected error: {other:?}"),
    }
}

/// One random operation on ids `0..ids`, checking what it sees.
pub(crate) fn random_op(cache: &Cache, rng: &mut Rng, ids: u64) {
    let n = rng.below(ids);
    let id = test_id(n);
    match rng.below(10) {
        0..=2 => match cache.create(&id) {
            Ok(writer) => {
                fill_known(writer.path(), &id, files_for(n)).unwrap();
                if rng.below(5) == 0 {
                    writer.abort().unwrap();
                } else {
                    let meta = writer.commit().unwrap();
                    assert_eq!(meta.files, files_for(n) as u64 + 1);
                }
            }
            Err(err) => allowed(err),
        },
        3..=6 => match cache.get(&id) {
            Ok(reader) => {
                assert_known(reader.path(), &id, files_for(n));
                assert_eq!(reader.metadata().files, files_for(n) as u64 + 1);
            }
            Err(err) => allowed(err),
        },
        7 => match cache.remove(&id) {
            Ok(()) => {}
            Err(err) => allowed(err),
        },
        8 => match cache.verify(&id) {
            Ok(meta) => assert_eq!(meta.id, id),
            Err(err) => allowed(err),
        },
        _ => {
            for listed in cache.list().unwrap() {
                let listed = listed.unwrap();
                assert!(number(&listed) < ids, "stray id {listed}");
                match cache.stat(&listed) {
                    Ok(meta) => assert_eq!(meta.files, files_for(number(&listed)) as u64 + 1),
                    Err(err) => allowed(err),
                }
            }
        }
    }
}

/// Runs `threads` threads of random operations on the cache at `root` for `millis`; returns
/// how many operations they did.
pub(crate) fn run(
    root: &(impl AsRef<OsStr> + ?Sized),
    seed: u64,
    threads: usize,
    millis: u64,
) -> u64 {
    let cache = Cache::open_with(Path::new(root), options()).unwrap();
    let deadline = Instant::now() + Duration::from_millis(millis);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cache = cache.clone();
                s.spawn(move || {
                    let mut rng = Rng::new(seed * 100 + t as u64);
                    let mut ops = 0;
                    while Instant::now() < deadline {
                        random_op(&cache, &mut rng, IDS);
                        ops += 1;
                    }
                    ops
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a stress thread panicked")).sum()
    })
}

const IDS: u64 = 8;

/// A size bound that holds a few artifacts, so eviction runs too.
fn options() -> Options {
    Options::default().max_bytes(Some(24 * 1024))
}

/// Fails the test (by aborting the process) if it is not dropped within `limit`.
pub(crate) struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

pub(crate) fn watchdog(limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: the test did not finish within {limit:?}: a deadlock?");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// Checks a root that nobody uses any more: every artifact whole, nothing staged or trashed,
/// no lock stuck.
pub(crate) fn check_quiet_root(root: &Path, ids: u64) {
    let cache = Cache::open(root).unwrap();
    for dir in ["tmp", "trash"] {
        let left: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}/ keeps {left:?}");
    }
    let listed: Vec<ArtifactId> = cache.list().unwrap().map(Result::unwrap).collect();
    for id in &listed {
        cache.verify(id).unwrap();
        assert_known(cache.get(id).unwrap().path(), id, files_for(number(id)));
    }
    for n in 0..ids {
        let id = test_id(n);
        match cache.create(&id) {
            Ok(writer) => {
                assert!(!listed.contains(&id));
                writer.abort().unwrap();
            }
            Err(err) => {
                assert!(err.is_exists(), "{id}: {err:?}");
                assert!(listed.contains(&id));
                cache.remove(&id).unwrap();
            }
        }
    }
    assert_eq!(cache.gc(None).unwrap().usage.artifacts, 0);
}

/// How long the stress test runs: `ARTIFACT_STRESS_MS`, 1.5 s by default (`cargo xtask soak`
/// runs a minute).
fn stress_millis() -> u64 {
    std::env::var("ARTIFACT_STRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

#[test]
fn threads_and_processes_on_one_root_keep_the_invariants() {
    let millis = stress_millis();
    let _watchdog = watchdog(Duration::from_secs(180) + 2 * Duration::from_millis(millis));
    let cache = TempCache::with_options(options());
    let children: Vec<Child> = (1..=2)
        .map(|seed| Child::spawn(&format!("stress {seed} 2 {millis}"), cache.root()))
        .collect();
    let ops_here = run(cache.root(), 7, 2, millis);
    let mut ops = ops_here;
    for mut child in children {
        ops += child.expect("done").parse::<u64>().unwrap();
        assert!(child.finish().success());
    }
    eprintln!("stress: {ops} operations in {millis} ms, {ops_here} of them in this process");
    assert!(ops_here > 0 && ops > ops_here, "{ops_here} of {ops} operations here");
    check_quiet_root(cache.root(), IDS);
}
