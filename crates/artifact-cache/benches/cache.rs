//! Cache benchmarks, run by `cargo xtask bench cache` (or `cargo bench -p artifact-cache --bench
//! cache`): lock throughput (get+drop, create+commit), the cost of a big commit, and open()
//! with many artifacts. Prints one `key<TAB>value<TAB>unit` line per measurement.
//!
//! Environment: `CACHE_BENCH_DIR` (where to make the caches, default the system temp dir),
//! `CACHE_BENCH_SECS` (seconds per throughput measurement, default 1), `CACHE_BENCH_OPEN_N`
//! (artifacts for the open() measurement, default 100000), `CACHE_BENCH_ONLY` (run only the
//! groups named, comma-separated: `get`, `write`, `commit`, `open`; `hot` runs only the
//! single-threaded hot-id get+drop, for profiling).

use std::{
    fs,
    hint::black_box,
    path::{Path, PathBuf},
    sync::{
        Barrier, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use artifact_cache::{ArtifactId, Cache, Durability, Options};

fn main() {
    let base = std::env::var_os("CACHE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let secs: f64 = env_or("CACHE_BENCH_SECS", 1.0);
    let open_n: u64 = env_or("CACHE_BENCH_OPEN_N", 100_000);
    let span = Duration::from_secs_f64(secs);
    let dir = tempfile::Builder::new().prefix("cache-bench-").tempdir_in(&base).expect("tempdir");
    let root = dir.path();
    let only = std::env::var("CACHE_BENCH_ONLY").unwrap_or_default();
    let wanted = |group: &str| only.is_empty() || only.split(',').any(|g| g == group);
    if wanted("get") {
        bench_get(&root.join("get"), span);
    } else if wanted("hot") {
        // For profiling the hot path alone.
        let cache = Cache::open(root.join("hot")).expect("open");
        commit_small(&cache, &id(0));
        let value = rate(1, span, |_, _| {
            drop(cache.get(&id(0)).unwrap());
            true
        });
        report("get_drop.hot.alone.t1", value);
    }
    if wanted("write") {
        bench_write(&root.join("write"), span);
    }
    if wanted("commit") {
        bench_commit(root);
    }
    if wanted("open") {
        bench_open(&root.join("open"), open_n);
    }
}

/// get+drop throughput: one hot id (alone, or shared with another reader of the process), and
/// 10,000 ids read round-robin (more than the open lock files the process keeps).
fn bench_get(root: &Path, span: Duration) {
    let cache = Cache::open(root).expect("open");
    let hot = id(0);
    commit_small(&cache, &hot);
    let many: Vec<ArtifactId> = (1..=10_000).map(id).collect();
    for id in &many {
        commit_small(&cache, id);
    }
    let get = |id: &ArtifactId| {
        drop(cache.get(id).unwrap());
        true
    };
    report("get_drop.hot.alone.t1", rate(1, span, |_, _| get(&hot)));
    report("floor.flock_pread_unlock.t1", syscall_floor(root, span));
    {
        // Another reader of this process holds the id: get+drop shares its OS lock.
        let _held = cache.get(&hot).unwrap();
        report("get_drop.hot.shared.t1", rate(1, span, |_, _| get(&hot)));
    }
    for threads in [2, 8] {
        report(&format!("get_drop.hot.alone.t{threads}"), rate(threads, span, |_, _| get(&hot)));
    }
    for threads in [1, 2, 8] {
        let value =
            rate(threads, span, |t, i| get(&many[(i as usize * 7919 + t * 1_000) % many.len()]));
        report(&format!("get_drop.many.t{threads}"), value);
    }
}

/// The system calls that a get+drop of an id nobody else holds cannot avoid, alone: a shared
/// `flock`, an 8-byte `pread` of the lock generation, and the unlocking `flock`.
fn syscall_floor(root: &Path, span: Duration) -> f64 {
    use std::os::unix::fs::FileExt;
    let file = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join("floor.lock"))
        .unwrap();
    file.write_all_at(&7u64.to_le_bytes(), 0).unwrap();
    rate(1, span, |_, _| {
        file.try_lock_shared().unwrap();
        let mut generation = [0u8; 8];
        file.read_exact_at(&mut generation, 0).unwrap();
        black_box(generation);
        file.unlock().unwrap();
        true
    })
}

/// Writer throughput. One id has one writer at a time: other threads' attempts are refused
/// (WriteLocked) and not counted.
fn bench_write(root: &Path, span: Duration) {
    let cache = Cache::open(root).expect("open");
    let hot = id(u64::MAX);
    report(
        "create_abort.hot.t1",
        rate(1, span, |_, _| {
            cache.create(&hot).unwrap().abort().unwrap();
            true
        }),
    );
    for threads in [1, 2, 8] {
        let value = rate(threads, span, |_, _| match cache.create(&hot) {
            Ok(writer) => {
                fs::write(writer.path().join("out.txt"), b"build output\n").unwrap();
                writer.commit().unwrap();
                // Another thread may hold it already; then this cycle does not count.
                cache.remove(&hot).is_ok()
            }
            Err(_) => false,
        });
        report(&format!("create_commit_remove.hot.t{threads}"), value);
    }
    let next = AtomicU64::new(1_000_000);
    for threads in [1, 2, 8] {
        let value = rate(threads, span, |_, _| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            commit_small(&cache, &id(n));
            true
        });
        report(&format!("create_commit.many.t{threads}"), value);
    }
}

/// The cost of committing a 10,000-file artifact (10,000 files of 4 KiB in 100 directories):
/// `commit` (which reads the tree for its digest) and `commit_with` (digest given).
fn bench_commit(root: &Path) {
    for (name, options) in [
        ("commit_10k_files", Options::default()),
        ("commit_10k_files.fsync", Options::default().durability(Durability::Fsync)),
    ] {
        let cache = Cache::open_with(root.join(name), options).expect("open");
        let mut digest_times = Vec::new();
        let mut trusted_times = Vec::new();
        for round in 0..3u64 {
            let writer = cache.create(&id(round)).unwrap();
            fill_10k(writer.path());
            let summary = tarstream::digest_dir(writer.path()).unwrap();
            let started = Instant::now();
            black_box(writer.commit().unwrap());
            digest_times.push(started.elapsed());
            let writer = cache.create(&id(100 + round)).unwrap();
            fill_10k(writer.path());
            let started = Instant::now();
            black_box(writer.commit_with(&summary).unwrap());
            trusted_times.push(started.elapsed());
        }
        report_unit(&format!("{name}.commit"), millis(median(digest_times)), "ms");
        report_unit(&format!("{name}.commit_with"), millis(median(trusted_times)), "ms");
    }
}

/// open() with `n` artifacts, the first size scan (done lazily, at the first need) and the
/// first get on the fresh handle.
fn bench_open(root: &Path, n: u64) {
    {
        let cache = Cache::open(root).expect("open");
        let started = Instant::now();
        for i in 0..n {
            commit_small(&cache, &id(i));
        }
        report("open.fill_commits", n as f64 / started.elapsed().as_secs_f64());
    }
    let opens: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            black_box(Cache::open(root).unwrap());
            started.elapsed()
        })
        .collect();
    report_unit("open.artifacts", n as f64, "artifacts");
    report_unit("open.time", millis(median(opens)), "ms");
    let cache = Cache::open(root).unwrap();
    let started = Instant::now();
    let usage = cache.usage().unwrap();
    assert_eq!(usage.artifacts, n);
    report_unit("open.first_usage_scan", millis(started.elapsed()), "ms");
    let started = Instant::now();
    drop(cache.get(&id(n / 2)).unwrap());
    report_unit("open.first_get", started.elapsed().as_secs_f64() * 1e6, "us");
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn id(n: u64) -> ArtifactId {
    let mut bytes = [0u8; 20];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    ArtifactId::from(bytes)
}

/// Commits `id` with one small file, like a tiny build output.
fn commit_small(cache: &Cache, id: &ArtifactId) {
    let writer = cache.create(id).unwrap();
    fs::write(writer.path().join("out.txt"), b"build output\n").unwrap();
    writer.commit().unwrap();
}

fn fill_10k(dir: &Path) {
    let block = vec![0x5au8; 4096];
    for d in 0..100 {
        let sub = dir.join(format!("d{d:03}"));
        fs::create_dir(&sub).unwrap();
        for f in 0..100 {
            let mut content = block.clone();
            content[..8].copy_from_slice(&(d * 100 + f as u64).to_le_bytes());
            fs::write(sub.join(format!("f{f:03}")), content).unwrap();
        }
    }
}

/// Runs `op(thread, i)` on `threads` threads for about `span`, three times; returns the median
/// rate of the operations for which `op` returned `true`, per second.
fn rate(threads: usize, span: Duration, op: impl Fn(usize, u64) -> bool + Sync) -> f64 {
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let barrier = Barrier::new(threads);
            let begin = OnceLock::<Instant>::new();
            let total: u64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (barrier, op, begin) = (&barrier, &op, &begin);
                        s.spawn(move || {
                            barrier.wait();
                            let begin = *begin.get_or_init(Instant::now);
                            let (mut i, mut counted) = (0u64, 0u64);
                            // Look at the clock every 64 operations only.
                            loop {
                                for _ in 0..64 {
                                    counted += u64::from(op(t, i));
                                    i += 1;
                                }
                                if begin.elapsed() >= span {
                                    return counted;
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            total as f64 / begin.get().unwrap().elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Prints one measurement: `key<TAB>value<TAB>unit` (rates in operations per second).
fn report(key: &str, value: f64) {
    report_unit(key, value, "ops/s");
}

fn report_unit(key: &str, value: f64, unit: &str) {
    println!("{key}\t{value:.3}\t{unit}");
}
