//! [`Jobs`]: the scheduler. One pool per endpoint, made when a job needs it and dropped when
//! idle, each with its concurrency limit and byte-rate bucket; a global bucket over all; FIFO
//! within a priority; retries with backoff; cancellation; shutdown that leaves jobs queued.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use artifact_cache::Cache;
use artifact_http::Downloader;
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, info, warn};

use crate::{
    Action, Change, Error, Event, Job, JobId, JobsConfig, NewJob, State, Store,
    metrics::EndpointStats, rate::RateLimit,
};

/// The scheduler of transfer jobs over a [`Cache`], with its [`Store`] in the cache root.
///
/// Cheap to clone (clones share everything). Made by [`Jobs::start`]; stopped by
/// [`Jobs::shutdown`], which leaves running jobs queued for the next start.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("root", &self.inner.cache.root()).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    cache: Cache,
    pub(crate) config: JobsConfig,
    store: Arc<Mutex<Store>>,
    sched: Mutex<Sched>,
    wake: Notify,
    /// Bumped after every change to a job, for [`Jobs::wait_until`].
    changes: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    global: Option<Arc<RateLimit>>,
    pub(crate) stats: Mutex<HashMap<Arc<str>, Arc<EndpointStats>>>,
}

/// What the scheduler holds in memory: the mirror of the waiting jobs.
#[derive(Default)]
struct Sched {
    pools: HashMap<Arc<str>, Pool>,
    /// Jobs waiting out a backoff, by due time.
    retrying: BTreeSet<(SystemTime, JobId, Arc<str>)>,
    /// Running jobs and how to stop each.
    running: HashMap<JobId, CancellationToken>,
}

/// One endpoint's pool.
struct Pool {
    /// Queued jobs: higher priority first, then submission order.
    queue: BTreeSet<(Reverse<i64>, JobId)>,
    running: usize,
    bucket: Option<Arc<RateLimit>>,
    /// A downloader per list of endpoints, shared by this pool's jobs.
    downloaders: HashMap<Vec<String>, Downloader>,
}

/// How a worker's transfer ended.
enum Outcome {
    Done(Result<(u64, String), artifact_http::Error>),
    Cancelled,
    ShutDown,
}

impl Jobs {
    /// Opens the job database in `cache`'s root, queues again the jobs that were running when
    /// the last process stopped, prunes old ended jobs, and starts scheduling.
    ///
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be opened or used (the root is not
    /// writable, say); [`Error::Schema`].
    pub async fn start(cache: Cache, config: JobsConfig) -> Result<Jobs, Error> {
        let root = cache.root().to_owned();
        let keep = config.keep;
        let (store, recovered, waiting) = blocking(move || {
            let mut store = Store::open(&root)?;
            let now = SystemTime::now();
            let recovered = store.recover(now)?;
            let pruned = store.prune(now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH))?;
            if pruned > 0 {
                info!(pruned, "pruned ended jobs");
            }
            let waiting = store.waiting()?;
            Ok((store, recovered.len(), waiting))
        })
        .await?;
        if recovered > 0 {
            info!(
                jobs = recovered,
                "requeued jobs that were running when the last process stopped"
            );
        }
        let global = config.global_rate.map(|rate| Arc::new(RateLimit::new(rate)));
        let jobs = Jobs {
            inner: Arc::new(Inner {
                cache,
                config,
                store: Arc::new(Mutex::new(store)),
                sched: Mutex::new(Sched::default()),
                wake: Notify::new(),
                changes: tokio::sync::watch::Sender::new(0),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                global,
                stats: Mutex::new(HashMap::new()),
            }),
        };
        {
            let mut sched = jobs.inner.sched();
            for job in waiting {
                jobs.inner.enlist(&mut sched, &job);
            }
        }
        let inner = jobs.inner.clone();
        jobs.inner.tracker.spawn(inner.dispatch().in_current_span());
        Ok(jobs)
    }

    /// Queues `jobs` (all or none), each unless an equal job is active; returns one job per
    /// entry, and whether it is new.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] beyond [`JobsConfig::max_queued`] active jobs;
    /// [`Error::ShutDown`]; [`Error::Database`].
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<Vec<(Job, bool)>, Error> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShutDown);
        }
        let max = self.inner.config.max_queued;
        let out = self.inner.change(move |s| s.submit(&jobs, max, SystemTime::now())).await?;
        {
            let mut sched = self.inner.sched();
            for (job, created) in &out {
                if *created {
                    self.inner.enlist(&mut sched, job);
                }
            }
        }
        self.inner.wake.notify_one();
        Ok(out)
    }

    /// Cancels `job`: a queued or retrying job ends at once; a running one has its transfer
    /// dropped (its writer aborts, nothing partial is kept). Returns the job as cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalTransition`] if it has ended already; [`Error::NotFound`];
    /// [`Error::Database`].
    pub async fn cancel(&self, job: JobId) -> Result<Job, Error> {
        let change = Change { note: Some("cancelled".into()), ..Change::default() };
        let cancelled = self
            .inner
            .change(move |s| s.apply(job, Event::Cancel, change, SystemTime::now()))
            .await?;
        let mut sched = self.inner.sched();
        if let Some(token) = sched.running.get(&job) {
            token.cancel();
        }
        for pool in sched.pools.values_mut() {
            pool.queue.retain(|(_, j)| *j != job);
        }
        sched.retrying.retain(|(_, j, _)| *j != job);
        drop(sched);
        self.inner.wake.notify_one();
        Ok(cancelled)
    }

    /// The job `job`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::Database`].
    pub async fn get(&self, job: JobId) -> Result<Job, Error> {
        self.inner.with_store(move |s| s.get(job)).await
    }

    /// Up to `limit` jobs after `after`, in job order, only those in `state` if given.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub async fn list(
        &self,
        state: Option<State>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, Error> {
        self.inner.with_store(move |s| s.list(state, after, limit)).await
    }

    /// How many jobs are in each state.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub async fn counts(&self) -> Result<Vec<(State, u64)>, Error> {
        self.inner.with_store(|s| s.counts()).await
    }

    /// Waits until `job` has ended, and returns it.
    ///
    /// # Errors
    ///
    /// As for [`get`](Jobs::get).
    pub async fn wait(&self, job: JobId) -> Result<Job, Error> {
        self.wait_until(job, |job| job.state.is_ended()).await
    }

    /// Waits until `job` satisfies `done` (checked after each change to any job), and
    /// returns it.
    ///
    /// # Errors
    ///
    /// As for [`get`](Jobs::get).
    pub async fn wait_until(&self, job: JobId, done: impl Fn(&Job) -> bool) -> Result<Job, Error> {
        let mut changes = self.inner.changes.subscribe();
        loop {
            changes.mark_unchanged();
            let current = self.get(job).await?;
            if done(&current) {
                return Ok(current);
            }
            if changes.changed().await.is_err() {
                return Err(Error::ShutDown);
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &JobsConfig {
        &self.inner.config
    }

    /// The pools alive now (endpoints with queued or running jobs).
    pub fn pools(&self) -> usize {
        self.inner.sched().pools.len()
    }

    /// The rate limit of `endpoint`'s pool, while the pool exists and has one.
    pub fn pool_rate_limit(&self, endpoint: &str) -> Option<Arc<RateLimit>> {
        self.inner.sched().pools.get(endpoint)?.bucket.clone()
    }

    /// The global rate limit, if any.
    pub fn global_rate_limit(&self) -> Option<Arc<RateLimit>> {
        self.inner.global.clone()
    }

    /// Stops: takes no more jobs, drops running transfers (their jobs go back to `queued`,
    /// for the next start), and waits until every worker has finished.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

impl Inner {
    fn sched(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        blocking(move || f(&mut store.lock().unwrap_or_else(PoisonError::into_inner))).await
    }

    /// Runs a change of the store, then tells [`Jobs::wait_until`].
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let result = self.with_store(f).await;
        self.changes.send_modify(|n| *n += 1);
        result
    }

    /// Puts a waiting job where the dispatcher finds it.
    fn enlist(&self, sched: &mut Sched, job: &Job) {
        let key: Arc<str> = job.pool().into();
        match (job.state, job.due) {
            (State::Retrying, Some(due)) => {
                sched.retrying.insert((due, job.job, key));
            }
            (State::Queued | State::Retrying, _) => {
                self.pool(sched, &key).queue.insert((Reverse(job.priority), job.job));
            }
            _ => {}
        }
    }

    fn pool<'a>(&self, sched: &'a mut Sched, key: &Arc<str>) -> &'a mut Pool {
        sched.pools.entry(key.clone()).or_insert_with(|| {
            debug!(endpoint = %key, "pool created");
            Pool {
                queue: BTreeSet::new(),
                running: 0,
                bucket: self.config.rates.get(&**key).map(|rate| Arc::new(RateLimit::new(*rate))),
                downloaders: HashMap::new(),
            }
        })
    }

    fn endpoint_stats(&self, endpoint: &str) -> Arc<EndpointStats> {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.entry(endpoint.into()).or_default().clone()
    }

    /// The dispatcher: moves due jobs back to the queue, starts jobs where pools have room,
    /// retires idle pools, logs stats; until shutdown.
    async fn dispatch(self: Arc<Self>) {
        let mut stats_tick = tokio::time::interval(self.config.stats_every);
        stats_tick.tick().await;
        let mut last_prune = Instant::now();
        loop {
            let next_due = self.requeue_due().await;
            self.start_ready();
            let sleep = match next_due {
                Some(due) => due.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                _ = stats_tick.tick() => {
                    self.log_stats().await;
                    if last_prune.elapsed() > Duration::from_secs(3600) {
                        last_prune = Instant::now();
                        let before = SystemTime::now().checked_sub(self.config.keep);
                        let before = before.unwrap_or(SystemTime::UNIX_EPOCH);
                        if let Err(err) = self.with_store(move |s| s.prune(before)).await {
                            warn!(error = %err, "pruning ended jobs failed");
                        }
                    }
                }
            }
        }
        debug!("job dispatcher stopped");
    }

    /// Queues again the retrying jobs whose backoff has ended; returns the next due time.
    async fn requeue_due(self: &Arc<Self>) -> Option<SystemTime> {
        loop {
            let now = SystemTime::now();
            let (due, job, key) = {
                let mut sched = self.sched();
                let first = sched.retrying.first()?.clone();
                if first.0 > now {
                    return Some(first.0);
                }
                sched.retrying.pop_first().expect("just seen")
            };
            let _ = due;
            match self.change(move |s| s.apply(job, Event::Due, Change::default(), now)).await {
                Ok(job) => {
                    let mut sched = self.sched();
                    self.pool(&mut sched, &key).queue.insert((Reverse(job.priority), job.job));
                }
                // Cancelled meanwhile.
                Err(err) if err.is_illegal_transition() => {}
                Err(err) => warn!(job = %job, error = %err, "requeueing a job failed"),
            }
        }
    }

    /// Starts a worker for each queued job whose pool has room; drops idle pools.
    fn start_ready(self: &Arc<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut sched = self.sched();
        let Sched { pools, running, .. } = &mut *sched;
        for (key, pool) in pools.iter_mut() {
            while pool.running < self.config.concurrency {
                let Some((_, job)) = pool.queue.pop_first() else { break };
                pool.running += 1;
                let token = CancellationToken::new();
                running.insert(job, token.clone());
                let span = tracing::info_span!(
                    "job",
                    job = %job,
                    id = tracing::field::Empty,
                    endpoint = %key
                );
                let inner = self.clone();
                let key = key.clone();
                self.tracker.spawn(inner.work(job, key, token).instrument(span));
            }
        }
        pools.retain(|key, pool| {
            let keep = pool.running > 0 || !pool.queue.is_empty();
            if !keep {
                debug!(endpoint = %key, "pool retired");
            }
            keep
        });
    }

    /// One job's run: start it in the store, transfer, record the outcome.
    async fn work(self: Arc<Self>, job: JobId, key: Arc<str>, token: CancellationToken) {
        let change = Change { endpoint: Some(key.to_string()), ..Change::default() };
        match self.change(move |s| s.apply(job, Event::Start, change, SystemTime::now())).await {
            Ok(started) => {
                tracing::Span::current().record("id", tracing::field::display(&started.id));
                let outcome = tokio::select! {
                    biased;
                    () = token.cancelled() => Outcome::Cancelled,
                    () = self.shutdown.cancelled() => Outcome::ShutDown,
                    result = self.transfer(&started, &key) => Outcome::Done(result),
                };
                self.record(started, &key, outcome).await;
            }
            Err(err) if err.is_illegal_transition() => debug!("cancelled before it started"),
            Err(err) => warn!(error = %err, "starting a job failed"),
        }
        let mut sched = self.sched();
        sched.running.remove(&job);
        if let Some(pool) = sched.pools.get_mut(&key) {
            pool.running -= 1;
            if pool.running == 0 && pool.queue.is_empty() {
                sched.pools.remove(&key);
                debug!(endpoint = %key, "pool retired");
            }
        }
        drop(sched);
        self.wake.notify_one();
    }

    /// Moves the artifact: returns the body bytes and the endpoint used.
    async fn transfer(
        &self,
        job: &Job,
        key: &Arc<str>,
    ) -> Result<(u64, String), artifact_http::Error> {
        let downloader = self.downloader(job, key)?;
        match job.action {
            Action::Pull => {
                let done = downloader.download(&self.cache, &job.id).await?;
                let endpoint = done.endpoint().unwrap_or(key).to_owned();
                Ok((done.stream_bytes(), endpoint))
            }
            Action::Push => {
                let done = downloader.upload(&self.cache, &job.id).await?;
                Ok((done.bytes, done.endpoint))
            }
        }
    }

    /// The pool's downloader for the job's endpoints: one attempt per call (the job retries),
    /// paced by the pool's and the global buckets, its bytes counted per endpoint.
    fn downloader(&self, job: &Job, key: &Arc<str>) -> Result<Downloader, artifact_http::Error> {
        let mut sched = self.sched();
        let pool = self.pool(&mut sched, key);
        if let Some(downloader) = pool.downloaders.get(&job.endpoints) {
            return Ok(downloader.clone());
        }
        let buckets: Vec<Arc<RateLimit>> =
            pool.bucket.iter().chain(self.global.iter()).cloned().collect();
        let stats = self.endpoint_stats(key);
        let downloader = Downloader::builder()
            .endpoints(job.endpoints.iter().cloned())
            .attempts(1)
            .concurrency(self.config.concurrency)
            .per_endpoint(self.config.concurrency)
            .idle_timeout(self.config.idle_timeout)
            .token(self.config.remote_token.clone())
            .throttle(move |bytes| {
                stats.add_bytes(bytes);
                let buckets = buckets.clone();
                Box::pin(async move {
                    for bucket in &buckets {
                        bucket.acquire(bytes).await;
                    }
                })
            })
            .build()?;
        pool.downloaders.insert(job.endpoints.clone(), downloader.clone());
        Ok(downloader)
    }

    /// Writes a worker's outcome to the store (and the retry queue).
    async fn record(&self, job: Job, key: &Arc<str>, outcome: Outcome) {
        let id = job.job;
        let stats = self.endpoint_stats(key);
        let (event, change) = match outcome {
            Outcome::Cancelled => {
                info!(id = %job.id, "cancelled while running");
                stats.count(State::Cancelled);
                return;
            }
            Outcome::ShutDown => {
                let note = Some("stopped by shutdown".to_owned());
                (Event::Requeue, Change { note, ..Change::default() })
            }
            Outcome::Done(Ok((bytes, endpoint))) => {
                info!(id = %job.id, bytes, %endpoint, "transfer succeeded");
                stats.count(State::Succeeded);
                (
                    Event::Succeed,
                    Change { bytes: Some(bytes), endpoint: Some(endpoint), ..Change::default() },
                )
            }
            Outcome::Done(Err(err)) => {
                let retry = err.is_retryable() && job.attempts < self.config.max_attempts;
                let error = Some(error_chain(&err));
                stats.set_error(error_chain(&err));
                if retry {
                    let pause = self.config.backoff_after(job.attempts);
                    warn!(id = %job.id, error = %err, retry_in_ms = pause.as_millis() as u64, "transfer failed; will retry");
                    stats.count(State::Retrying);
                    let due = Some(SystemTime::now() + pause);
                    (Event::Retry, Change { error, due, ..Change::default() })
                } else {
                    warn!(id = %job.id, error = %err, attempts = job.attempts, "transfer failed");
                    stats.count(State::Failed);
                    (Event::Fail, Change { error, ..Change::default() })
                }
            }
        };
        match self.change(move |s| s.apply(id, event, change, SystemTime::now())).await {
            Ok(job) => {
                if let (State::Retrying, Some(due)) = (job.state, job.due) {
                    self.sched().retrying.insert((due, id, key.clone()));
                }
            }
            // Cancelled while the transfer ended.
            Err(err) if err.is_illegal_transition() => debug!(error = %err, "outcome not recorded"),
            Err(err) => warn!(error = %err, "recording a job's outcome failed"),
        }
    }

    async fn log_stats(&self) {
        let (running, queued, retrying) = {
            let sched = self.sched();
            let queued: usize = sched.pools.values().map(|p| p.queue.len()).sum();
            (sched.running.len(), queued, sched.retrying.len())
        };
        if running + queued + retrying == 0 {
            return;
        }
        let stats: Vec<(Arc<str>, Arc<EndpointStats>)> = {
            let map = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let bytes: u64 = stats.iter().map(|(_, s)| s.bytes()).sum();
        let rate: f64 = stats.iter().map(|(_, s)| s.rate()).sum();
        info!(running, queued, retrying, bytes, rate_bytes_per_second = rate as u64, "jobs");
    }
}

/// The error and its sources, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(Error::Task)?
}
