//! The jobs benchmark: 1,000 small pull jobs end to end against `download_many` of the same
//! artifacts (the scheduler's own cost per job), and the rate limiter's accuracy on a 64 MiB
//! pull, in wall time.
//!
//! Prints `key<TAB>value<TAB>unit` lines. Run with `cargo bench -p artifact-jobs --bench jobs`;
//! `JOBS_BENCH_N` sets the number of jobs, `JOBS_BENCH_RATE_MIB` the size of the rate-limited
//! pull (0 skips it).

use std::time::Instant;

use artifact_http::Downloader;
use artifact_jobs::{Action, Jobs, JobsConfig, NewJob, State};
use artifact_testkit::{
    cache::{TempCache, commit_known, test_id},
    server::TestServer,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(example())
}

async fn example() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("JOBS_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let concurrency = 8;
    let remote = TempCache::new();
    for i in 0..n {
        commit_known(remote.cache(), &test_id(i), 2)?;
    }
    let server = TestServer::start(remote.cache().clone()).await;

    // Direct: download_many with the same concurrency, before and after the jobs (the faster
    // run counts, so that neither side pays alone for a cold start).
    let direct = || async {
        let target = TempCache::new();
        let downloader = Downloader::builder()
            .endpoint(server.url())
            .concurrency(concurrency)
            .per_endpoint(concurrency)
            .build()
            .expect("a valid endpoint");
        let started = Instant::now();
        let results = downloader.download_many(target.cache(), (0..n).map(test_id)).await;
        assert!(results.iter().all(|(_, r)| r.is_ok()), "every direct download succeeds");
        started.elapsed().as_secs_f64()
    };
    let first_direct = direct().await;

    // Through jobs: submitted in one request, waited for one by one.
    let local = TempCache::new();
    let jobs =
        Jobs::start(local.cache().clone(), JobsConfig::default().concurrency(concurrency)).await?;
    let news = (0..n)
        .map(|i| NewJob {
            action: Action::Pull,
            id: test_id(i),
            endpoints: vec![server.url().to_owned()],
            priority: 0,
        })
        .collect();
    let started = Instant::now();
    let submitted = jobs.submit(news).await?;
    let submit_secs = started.elapsed().as_secs_f64();
    for (job, _) in &submitted {
        assert_eq!(jobs.wait(job.job).await?.state, State::Succeeded);
    }
    let jobs_secs = started.elapsed().as_secs_f64();
    jobs.shutdown().await;
    let direct_secs = first_direct.min(direct().await);
    println!("jobs\t{n}\tjobs");
    println!("jobs_per_second\t{:.0}\tjobs/s", n as f64 / jobs_secs);
    println!("submit_ms\t{:.1}\tms", submit_secs * 1e3);
    println!("direct_per_second\t{:.0}\tdownloads/s", n as f64 / direct_secs);
    println!("overhead_per_job_us\t{:.0}\tus", (jobs_secs - direct_secs) / n as f64 * 1e6);

    let mib: usize =
        std::env::var("JOBS_BENCH_RATE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    if mib > 0 {
        let rate = 8u64 << 20;
        let big = TempCache::new();
        let writer = big.cache().create(&test_id(u64::MAX))?;
        let mut rng = fastrand::Rng::with_seed(1);
        let data: Vec<u8> = (0..mib << 20).map(|_| rng.u8(..)).collect();
        std::fs::write(writer.path().join("big"), data)?;
        writer.commit()?;
        let source = TestServer::start(big.cache().clone()).await;
        let local = TempCache::new();
        let jobs =
            Jobs::start(local.cache().clone(), JobsConfig::default().rate(source.url(), rate))
                .await?;
        let new = NewJob {
            action: Action::Pull,
            id: test_id(u64::MAX),
            endpoints: vec![source.url().to_owned()],
            priority: 0,
        };
        let started = Instant::now();
        let job = jobs.submit(vec![new]).await?.remove(0).0.job;
        let done = jobs.wait(job).await?;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(done.state, State::Succeeded);
        let measured = done.bytes as f64 / secs;
        println!("rate_limit\t{:.2}\tMiB/s", rate as f64 / 1048576.0);
        println!("rate_measured\t{:.2}\tMiB/s", measured / 1048576.0);
        println!("rate_error\t{:+.1}\t%", (measured / rate as f64 - 1.0) * 100.0);
        jobs.shutdown().await;
    }
    Ok(())
}
