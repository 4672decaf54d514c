//! The scheduler against real servers: concurrency per endpoint, rate limits, retries and
//! failures, cancellation mid-transfer, shutdown, and a crash followed by a restart.

use std::time::Duration;

use artifact_cache::{ArtifactId, Cache};
use artifact_jobs::{Action, Jobs, JobsConfig, NewJob, State};
use artifact_testkit::{
    cache::{TempCache, assert_known, commit_known, test_id},
    peer::refused_url,
    server::{Fault, TestServer},
};

fn pull(id: ArtifactId, from: &str) -> NewJob {
    NewJob { action: Action::Pull, id, endpoints: vec![from.to_owned()], priority: 0 }
}

/// A server whose cache holds `n` small known artifacts, numbered from 0.
async fn server_with(n: u64) -> (TempCache, TestServer) {
    let remote = TempCache::new();
    for i in 0..n {
        commit_known(remote.cache(), &test_id(i), 1).unwrap();
    }
    let server = TestServer::start(remote.cache().clone()).await;
    (remote, server)
}

/// Commits `id` with one file of `bytes` pseudo-random bytes.
fn commit_big(cache: &Cache, id: &ArtifactId, bytes: usize) {
    let writer = cache.create(id).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = (0..bytes).map(|_| rng.u8(..)).collect();
    std::fs::write(writer.path().join("big"), data).unwrap();
    writer.commit().unwrap();
}

/// Panics if a writer's staging directory of `id` is left under the cache root.
fn assert_nothing_staged(root: &std::path::Path, id: &ArtifactId) {
    let staging = root.join("tmp").join(id.to_string());
    let left: Vec<_> = match std::fs::read_dir(&staging) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(err) => {
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
            Vec::new()
        }
    };
    assert!(left.is_empty(), "partial data left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_never_runs_more_than_its_concurrency() {
    let (_remote, server) = server_with(200).await;
    let local = TempCache::new();
    let jobs =
        Jobs::start(local.cache().clone(), JobsConfig::default().concurrency(4)).await.unwrap();
    let news: Vec<_> = (0..200).map(|i| pull(test_id(i), server.url())).collect();
    let submitted = jobs.submit(news).await.unwrap();
    assert_eq!(submitted.len(), 200);
    for (job, created) in &submitted {
        assert!(created);
        let done = jobs.wait(job.job).await.unwrap();
        assert_eq!(done.state, State::Succeeded, "{done:?}");
        assert_eq!(done.endpoint.as_deref(), Some(server.url()));
    }
    let peak = server.stats().peak_in_flight();
    assert!((1..=4).contains(&peak), "{peak} downloads in flight at once");
    assert!(server.stats().downloads() >= 200);
    for i in [0, 99, 199] {
        assert_known(local.cache().get(&test_id(i)).unwrap().path(), &test_id(i), 1);
    }
    let metrics = jobs.metrics().await.unwrap();
    assert!(metrics.contains("artifact_jobs{state=\"succeeded\"} 200"), "{metrics}");
    let line = format!(
        "artifact_jobs_transfers_total{{endpoint=\"{}\",outcome=\"succeeded\"}} 200",
        server.url()
    );
    assert!(metrics.contains(&line), "{metrics}");
    // Once its last worker has finished (shutdown waits for that), the idle pool is gone.
    jobs.shutdown().await;
    assert_eq!(jobs.pools(), 0, "idle pools are retired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priorities_run_first_and_equal_ones_in_order() {
    let (_remote, server) = server_with(6).await;
    let local = TempCache::new();
    // One transfer at a time, each long enough that their start times (in milliseconds) differ.
    server.faults().always(Fault::Delay(Duration::from_millis(20)));
    let jobs =
        Jobs::start(local.cache().clone(), JobsConfig::default().concurrency(1)).await.unwrap();
    let mut news: Vec<_> = (0..6).map(|i| pull(test_id(i), server.url())).collect();
    news[4].priority = 5;
    news[5].priority = 5;
    let submitted = jobs.submit(news).await.unwrap();
    let mut ended = Vec::new();
    for (job, _) in &submitted {
        let done = jobs.wait(job.job).await.unwrap();
        ended.push((done.log.iter().find(|e| e.state == State::Running).unwrap().at, job.job));
    }
    ended.sort();
    let order: Vec<i64> = ended.iter().map(|(_, j)| j.0 - submitted[0].0.job.0).collect();
    // All were queued at once: priority first, then submission order.
    assert_eq!(order, vec![4, 5, 0, 1, 2, 3]);
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transfer_keeps_nothing_and_the_pool_goes_on() {
    let (_remote, server) = server_with(2).await;
    let local = TempCache::new();
    let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    server.faults().once(Fault::StallAfter(600));
    let stuck = jobs.submit(vec![pull(test_id(0), server.url())]).await.unwrap()[0].0.job;
    server.stats().wait_in_flight(1).await;
    let cancelled = jobs.cancel(stuck).await.unwrap();
    assert_eq!(cancelled.state, State::Cancelled);
    // The transfer is dropped: the server sees its body released; nothing was committed.
    server.stats().wait_idle().await;
    assert_eq!(local.cache().list().unwrap().count(), 0);
    // A second cancel is refused: the job has ended.
    assert!(jobs.cancel(stuck).await.unwrap_err().is_illegal_transition());

    // The pool goes on: the same artifact again (waiting for the aborted writer to let go of
    // it), and another one.
    let news = vec![pull(test_id(0), server.url()), pull(test_id(1), server.url())];
    for (job, created) in jobs.submit(news).await.unwrap() {
        assert!(created, "the cancelled job is not active");
        assert_eq!(jobs.wait(job.job).await.unwrap().state, State::Succeeded);
    }
    assert_known(local.cache().get(&test_id(0)).unwrap().path(), &test_id(0), 1);
    assert_nothing_staged(local.root(), &test_id(0));
    assert_eq!(jobs.get(stuck).await.unwrap().state, State::Cancelled, "stays cancelled");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_down_target_retries_then_fails_while_the_other_succeeds() {
    let local = TempCache::new();
    commit_known(local.cache(), &test_id(1), 3).unwrap();
    let target = TempCache::new();
    let server = TestServer::start(target.cache().clone()).await;
    let down = refused_url().await;
    let config = JobsConfig::default()
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(5));
    let jobs = Jobs::start(local.cache().clone(), config).await.unwrap();
    let news = [server.url(), down.as_str()].map(|to| NewJob {
        action: Action::Push,
        id: test_id(1),
        endpoints: vec![to.to_owned()],
        priority: 0,
    });
    let submitted = jobs.submit(news.to_vec()).await.unwrap();
    let up = jobs.wait(submitted[0].0.job).await.unwrap();
    assert_eq!((up.state, up.attempts), (State::Succeeded, 1));
    assert_known(target.cache().get(&test_id(1)).unwrap().path(), &test_id(1), 3);
    let failed = jobs.wait(submitted[1].0.job).await.unwrap();
    assert_eq!((failed.state, failed.attempts), (State::Failed, 3), "{failed:?}");
    let states: Vec<State> = failed.log.iter().map(|e| e.state).collect();
    use State::*;
    assert_eq!(
        states,
        [Queued, Running, Retrying, Queued, Running, Retrying, Queued, Running, Failed]
    );
    assert!(failed.error.as_deref().unwrap().contains("connect"), "{failed:?}");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_failure_is_not_retried() {
    let (_remote, server) = server_with(0).await;
    let local = TempCache::new();
    let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    let job = jobs.submit(vec![pull(test_id(9), server.url())]).await.unwrap()[0].0.job;
    let done = jobs.wait(job).await.unwrap();
    assert_eq!((done.state, done.attempts), (State::Failed, 1), "a 404 is not retried");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_through_the_buckets_and_stay_under_their_rates() {
    let remote = TempCache::new();
    commit_big(remote.cache(), &test_id(1), 768 << 10);
    let server = TestServer::start(remote.cache().clone()).await;
    let local = TempCache::new();
    let rate = 2 << 20;
    let config = JobsConfig::default().rate(server.url(), rate).global_rate(Some(4 << 20));
    let jobs = Jobs::start(local.cache().clone(), config).await.unwrap();
    let job = jobs.submit(vec![pull(test_id(1), server.url())]).await.unwrap()[0].0.job;
    let running = jobs.wait_until(job, |j| j.state != State::Queued).await.unwrap();
    let bucket = jobs.pool_rate_limit(server.url()).expect("the pool has its bucket");
    let done = jobs.wait(job).await.unwrap();
    assert_eq!(done.state, State::Succeeded, "{running:?} {done:?}");
    // Every body byte went through both buckets (whole KiB are counted).
    let global = jobs.global_rate_limit().unwrap();
    for limit in [&bucket, &global] {
        assert!(
            limit.granted_bytes() + 1024 > done.bytes,
            "{} of {}",
            limit.granted_bytes(),
            done.bytes
        );
    }
    // On the bucket's own clock, the rate beyond the burst stays under the limit.
    let burst = (rate / 10) as f64;
    let measured = (bucket.granted_bytes() as f64 - burst) / bucket.granting_span().as_secs_f64();
    assert!(measured <= rate as f64 * 1.15, "{measured} bytes/s over a limit of {rate}");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_running_jobs_queued_for_the_next_start() {
    let (_remote, server) = server_with(1).await;
    let local = TempCache::new();
    let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    server.faults().once(Fault::StallAfter(600));
    let job = jobs.submit(vec![pull(test_id(0), server.url())]).await.unwrap()[0].0.job;
    server.stats().wait_in_flight(1).await;
    jobs.shutdown().await;
    let stopped = jobs.get(job).await.unwrap();
    assert_eq!(stopped.state, State::Queued);
    assert!(jobs.submit(vec![pull(test_id(0), server.url())]).await.is_err(), "takes no jobs");
    assert_eq!(local.cache().list().unwrap().count(), 0, "nothing was committed");

    let again = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    let done = again.wait(job).await.unwrap();
    assert_eq!((done.state, done.attempts), (State::Succeeded, 2));
    assert_known(local.cache().get(&test_id(0)).unwrap().path(), &test_id(0), 1);
    // The stopped writer's staging directory went with it (the next writer waited for it).
    assert_nothing_staged(local.root(), &test_id(0));
    again.shutdown().await;
}

#[test]
fn a_crash_loses_no_job_and_running_ones_run_again() {
    let remote = TempCache::new();
    for i in 0..3 {
        commit_known(remote.cache(), &test_id(i), 3).unwrap();
    }
    let local = TempCache::new();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    };
    let server_rt = runtime();
    let server = server_rt.block_on(TestServer::start(remote.cache().clone()));
    server.faults().once(Fault::StallAfter(600));
    let url = server.url().to_owned();

    let crashing = runtime();
    let ids = crashing.block_on(async {
        let jobs =
            Jobs::start(local.cache().clone(), JobsConfig::default().concurrency(1)).await.unwrap();
        let news = (0..3).map(|i| pull(test_id(i), &url)).collect();
        let ids: Vec<_> =
            jobs.submit(news).await.unwrap().into_iter().map(|(j, _)| j.job).collect();
        server.stats().wait_in_flight(1).await;
        assert_eq!(jobs.get(ids[0]).await.unwrap().state, State::Running);
        ids
    });
    // The process dies: every task is dropped, nothing is shut down.
    crashing.shutdown_background();

    let restarted = runtime();
    restarted.block_on(async {
        let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
        for job in &ids {
            let done = jobs.wait(*job).await.unwrap();
            assert_eq!(done.state, State::Succeeded, "{done:?}");
        }
        let first = jobs.get(ids[0]).await.unwrap();
        assert!(
            first.log.iter().any(|e| e.note.as_deref() == Some("requeued at start")),
            "{first:?}"
        );
        jobs.shutdown().await;
    });
    for i in 0..3 {
        assert_known(local.cache().get(&test_id(i)).unwrap().path(), &test_id(i), 3);
    }
    drop(server_rt);
}
