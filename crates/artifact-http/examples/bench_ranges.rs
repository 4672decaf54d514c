//! The measuring half of `cargo xtask bench http`'s ranges section (run by
//! `xtask/src/bench/http_ranges.rs`): one artifact of `ARTIFACT_BENCH_RANGES_MIB` MiB (default
//! 1024) served by artifact-testkit's `TestServer`s over loopback and downloaded with a
//! `Downloader` into fresh caches under `ARTIFACT_BENCH_DIR` (default `/dev/shm`):
//!
//! - once to warm up (the first read builds the entry index), then uncut, then cut once at
//!   50% and at 90% of the stream (resumed with a range request);
//! - from 1, 2 and 3 sources, each sending at most `ARTIFACT_BENCH_RANGES_RATE` MiB/s
//!   (default 64) through the fault layer.
//!
//! Prints one line per case: `case<TAB>seconds<TAB>bytes the servers sent<TAB>stream bytes`.

use std::{path::PathBuf, time::Instant};

use artifact_cache::{ArtifactId, Cache};
use artifact_http::Downloader;
use artifact_testkit::server::{Fault, TestServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    example()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn example() -> Result<(), Box<dyn std::error::Error>> {
    let mib = env_u64("ARTIFACT_BENCH_RANGES_MIB", 1024);
    let rate = env_u64("ARTIFACT_BENCH_RANGES_RATE", 64) << 20;
    let base = std::env::var_os("ARTIFACT_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    let root = tempfile::tempdir_in(&base)?;
    let remote = Cache::open(root.path().join("remote"))?;
    let id: ArtifactId = "b1a5".parse()?;
    let writer = remote.create(&id)?;
    let mut rng = fastrand::Rng::with_seed(1);
    let mut block = vec![0u8; 1 << 20];
    {
        use std::io::Write;
        let mut file = std::fs::File::create(writer.path().join("big.bin"))?;
        for _ in 0..mib {
            rng.fill(&mut block);
            file.write_all(&block)?;
        }
    }
    std::fs::write(writer.path().join("small.txt"), "a small file\n")?;
    writer.commit()?;
    let len = {
        let reader = remote.get(&id)?;
        reader.index()?.stream_len()
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let servers = [
            TestServer::start(remote.clone()).await,
            TestServer::start(remote.clone()).await,
            TestServer::start(remote.clone()).await,
        ];
        let mut case = 0;
        let mut fetch = async |name: &str, count: usize, sources: usize| {
            case += 1;
            let local = Cache::open(root.path().join(format!("local-{case}")))?;
            let before: u64 = servers.iter().map(|s| s.stats().body_bytes()).sum();
            let downloader = Downloader::builder()
                .endpoints(servers[..count].iter().map(TestServer::url))
                .sources(sources)
                .build()?;
            let started = Instant::now();
            let downloaded = downloader.download(&local, &id).await?;
            let secs = started.elapsed().as_secs_f64();
            let sent: u64 = servers.iter().map(|s| s.stats().body_bytes()).sum::<u64>() - before;
            println!("{name}\t{secs:.3}\t{sent}\t{len}");
            drop(downloaded);
            std::fs::remove_dir_all(root.path().join(format!("local-{case}")))?;
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        // The first read of the artifact builds its entry index and warms the page cache.
        fetch("warm-up", 1, 1).await?;
        fetch("uncut", 1, 1).await?;
        servers[0].faults().once(Fault::CutAfter(len / 2));
        fetch("cut at 50%", 1, 1).await?;
        servers[0].faults().once(Fault::CutAfter(len / 10 * 9));
        fetch("cut at 90%", 1, 1).await?;
        for server in &servers {
            server.faults().always(Fault::Rate(rate));
        }
        for n in 1..=3 {
            fetch(&format!("{n} source(s)"), n, n).await?;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
