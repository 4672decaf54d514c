//! [`Scrubber`]: the background pass that re-verifies every committed artifact's tree digest at
//! a bounded read rate, quarantines the corrupt ones and fetches them again; [`ScrubConfig`],
//! [`ScrubReport`]; what `/metrics` and the status page show of it.

mod pace;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use artifact_cache::{ArtifactId, Cache, Error as CacheError, Quarantined};
use serde::Serialize;
use tracing::{Instrument, info, warn};

use crate::{bridge, error::error_chain};
use pace::{Bucket, Pacer};

/// The most recent scrub findings kept for the status page.
const EVENTS_KEPT: usize = 32;

/// How often and how fast a [`Scrubber`] reads.
///
/// ```
/// use std::time::Duration;
/// use artifact_http::ScrubConfig;
///
/// let config = ScrubConfig::default()
///     .interval(Duration::from_secs(6 * 3600))
///     .rate(32 << 20);
/// assert_eq!(config.rate, 32 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScrubConfig {
    /// How often [`Scrubber::run`] starts a pass over every committed artifact (default one
    /// day). A pass that takes longer is followed by the next at once.
    pub interval: Duration,
    /// The most bytes of file content read per second, on average (default 16 MiB/s); a burst
    /// of a tenth of a second's worth is allowed after an idle spell.
    pub rate: u64,
    /// How long a quarantine waits for the readers already streaming a corrupt artifact to
    /// finish (default 60 s); if they take longer, the next pass tries again. No new reader of
    /// this process gets the artifact meanwhile.
    pub quarantine_wait: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            interval: Duration::from_secs(24 * 3600),
            rate: 16 << 20,
            quarantine_wait: Duration::from_secs(60),
        }
    }
}

impl ScrubConfig {
    /// Sets [`interval`](Self::interval).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`rate`](Self::rate), in bytes per second.
    pub fn rate(mut self, bytes_per_sec: u64) -> Self {
        self.rate = bytes_per_sec;
        self
    }

    /// Sets [`quarantine_wait`](Self::quarantine_wait).
    pub fn quarantine_wait(mut self, wait: Duration) -> Self {
        self.quarantine_wait = wait;
        self
    }
}

/// Re-verifies a cache's committed artifacts in the background, at a bounded read rate.
///
/// Each pass lists the cache and verifies every artifact's tree digest against the one
/// recorded at commit (`Cache::verify_with`), those verified longest ago (or never, by this
/// process) first. A corrupt one (another digest, or a tree that cannot be read, or unreadable
/// metadata) is quarantined at once (`Cache::quarantine_wait`: never served again) and, with a
/// [`Downloader`](crate::Downloader) to repair from, fetched again whole and accepted only with
/// the recorded digest ([`Downloader::repair`](crate::Downloader::repair)). Put it in
/// [`ServerConfig::scrub`](crate::ServerConfig::scrub) to show it on `/metrics` and the status
/// page; spawn [`run`](Scrubber::run) to scrub every [`interval`](ScrubConfig::interval), or
/// call [`pass`](Scrubber::pass) to scrub once now. Clones share everything.
///
/// ```no_run
/// use artifact_cache::Cache;
/// use artifact_http::{ScrubConfig, Scrubber, ServerConfig, router};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::open("/var/cache/artifact")?;
/// let scrubber = Scrubber::new(cache.clone(), ScrubConfig::default().rate(8 << 20));
/// tokio::spawn(scrubber.clone().run());
/// let app = router(cache, ServerConfig::default().scrub(Some(scrubber)));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Scrubber {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    config: ScrubConfig,
    #[cfg(feature = "client")]
    repair: Option<crate::Downloader>,
    bucket: Arc<Mutex<Bucket>>,
    /// One pass at a time.
    pass: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    counters: Counters,
}

/// What the scrubber has done since it was made.
#[derive(Debug, Default)]
struct Counters {
    passes: AtomicU64,
    verified: AtomicU64,
    bytes: Arc<AtomicU64>,
    corrupt: AtomicU64,
    quarantined: AtomicU64,
    repaired: AtomicU64,
    repair_failures: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct State {
    /// When each artifact was last verified whole by this scrubber.
    verified_at: HashMap<ArtifactId, SystemTime>,
    /// Corrupt artifacts whose quarantine is still waiting for readers, with why.
    pending: HashMap<ArtifactId, String>,
    running_since: Option<SystemTime>,
    last_pass: Option<PassView>,
    /// The latest findings, newest first.
    events: VecDeque<ScrubEvent>,
}

/// What one [`Scrubber::pass`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScrubReport {
    /// Artifacts whose digest matched.
    pub verified: u64,
    /// Bytes of file content read.
    pub bytes: u64,
    /// Artifacts found corrupt (each quarantined, unless its readers outlasted
    /// [`quarantine_wait`](ScrubConfig::quarantine_wait)).
    pub corrupt: Vec<ArtifactId>,
    /// Corrupt artifacts moved into quarantine.
    pub quarantined: Vec<ArtifactId>,
    /// Quarantined artifacts fetched again with their recorded digest.
    pub repaired: Vec<ArtifactId>,
    /// Quarantined artifacts that could not be fetched again (or came back with another
    /// digest).
    pub repair_failed: Vec<ArtifactId>,
    /// Artifacts skipped: removed or being written meanwhile.
    pub skipped: u64,
    /// Artifacts the pass could not check for another reason (logged).
    pub errors: u64,
    /// Whether the pass was stopped before it visited every artifact.
    pub stopped: bool,
}

/// One pass, for the status page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PassView {
    /// Unix times.
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) verified: u64,
    pub(crate) bytes: u64,
    pub(crate) corrupt: u64,
}

/// A corrupt artifact found, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScrubEvent {
    pub(crate) id: String,
    /// Unix time.
    pub(crate) at: u64,
    pub(crate) reason: String,
    /// `quarantined`, `pending` (readers still hold it), `repaired`, `repair failed`.
    pub(crate) state: &'static str,
    /// The endpoint it was repaired from, or why it was not.
    pub(crate) detail: String,
}

/// The scrubber as `/status` shows it (and `/metrics` reads it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScrubStatus {
    pub(crate) interval_secs: u64,
    pub(crate) rate_bytes_per_sec: u64,
    pub(crate) repair_from: Vec<String>,
    /// Unix time the pass under way started.
    pub(crate) running_since: Option<u64>,
    pub(crate) last_pass: Option<PassView>,
    pub(crate) passes: u64,
    pub(crate) verified: u64,
    pub(crate) bytes: u64,
    pub(crate) corrupt: u64,
    pub(crate) quarantined: u64,
    pub(crate) repaired: u64,
    pub(crate) repair_failures: u64,
    pub(crate) errors: u64,
    pub(crate) recent: Vec<ScrubEvent>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("config", &self.inner.config)
            .field("repair_from", &self.repair_sources())
            .finish_non_exhaustive()
    }
}

/// A pass under way: when dropped (finished, or its future dropped), it stops the pass's
/// blocking walk at its next read and clears `running_since`.
struct Running<'a> {
    stop: Arc<AtomicBool>,
    inner: &'a Inner,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.inner.state().running_since = None;
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Scrubber {
    /// A scrubber of `cache` (no pass runs until [`run`](Scrubber::run) or
    /// [`pass`](Scrubber::pass) is called).
    pub fn new(cache: Cache, config: ScrubConfig) -> Scrubber {
        Scrubber {
            inner: Arc::new(Inner {
                cache,
                bucket: Arc::new(Mutex::new(Bucket::new(config.rate))),
                config,
                #[cfg(feature = "client")]
                repair: None,
                pass: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
                counters: Counters::default(),
            }),
        }
    }

    /// Fetches quarantined artifacts again through `downloader` (its endpoints: peers, or
    /// object stores with the `store` feature). Call before cloning.
    ///
    /// # Panics
    ///
    /// If the scrubber has been cloned already.
    #[cfg(feature = "client")]
    pub fn repair_from(mut self, downloader: crate::Downloader) -> Scrubber {
        Arc::get_mut(&mut self.inner).expect("repair_from is called before cloning").repair =
            Some(downloader);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ScrubConfig {
        &self.inner.config
    }

    /// Scrubs every [`interval`](ScrubConfig::interval), forever: spawn it, and abort the task
    /// (or drop the future) to stop; a walk under way then stops at its next read.
    pub async fn run(self) {
        loop {
            let started = tokio::time::Instant::now();
            let report = self.pass().await;
            info!(
                verified = report.verified,
                bytes = report.bytes,
                corrupt = report.corrupt.len(),
                repaired = report.repaired.len(),
                "scrub pass done"
            );
            tokio::time::sleep_until(started + self.inner.config.interval).await;
        }
    }

    /// Runs one pass now (after the one under way, if any) and returns what it found.
    /// Dropping the future stops the pass at its next read.
    pub async fn pass(&self) -> ScrubReport {
        let inner = &self.inner;
        let _one = inner.pass.lock().await;
        let stop = Arc::new(AtomicBool::new(false));
        let _running = Running { stop: stop.clone(), inner };
        let pacer =
            Pacer { bucket: inner.bucket.clone(), bytes: inner.counters.bytes.clone(), stop };
        let started = SystemTime::now();
        let bytes_before = inner.counters.bytes.load(Ordering::Relaxed);
        inner.state().running_since = Some(started);
        let mut report = ScrubReport::default();
        let cache = inner.cache.clone();
        let listed = bridge::blocking(move || {
            cache.list()?.collect::<Result<Vec<ArtifactId>, CacheError>>()
        });
        match listed.await {
            Ok(mut ids) => {
                {
                    // Never verified (`None`) first, then the longest ago.
                    let state = inner.state();
                    ids.sort_by_key(|id| state.verified_at.get(id).copied());
                }
                for id in ids {
                    if pacer.stop.load(Ordering::Relaxed) {
                        report.stopped = true;
                        break;
                    }
                    let span = tracing::info_span!("scrub", id = %id);
                    self.visit(id, &pacer, &mut report).instrument(span).await;
                }
            }
            Err(err) => {
                warn!(error = %err, "scrub cannot list the cache");
                report.errors += 1;
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        report.bytes = inner.counters.bytes.load(Ordering::Relaxed) - bytes_before;
        inner.counters.passes.fetch_add(1, Ordering::Relaxed);
        inner.state().last_pass = Some(PassView {
            started: unix(started),
            finished: unix(SystemTime::now()),
            verified: report.verified,
            bytes: report.bytes,
            corrupt: report.corrupt.len() as u64,
        });
        report
    }

    /// Verifies one artifact and deals with what it finds.
    async fn visit(&self, id: ArtifactId, pacer: &Pacer, report: &mut ScrubReport) {
        let inner = &self.inner;
        let pending = inner.state().pending.get(&id).cloned();
        if let Some(reason) = pending {
            // Found corrupt before, its readers outlasted the wait: try again.
            self.quarantine(id, reason, report).await;
            return;
        }
        let cache = inner.cache.clone();
        let hook = pacer.clone();
        let checked =
            bridge::blocking(move || cache.verify_with(&id, |bytes| hook.before_read(bytes))).await;
        let reason = match checked {
            Ok(_) => {
                report.verified += 1;
                inner.counters.verified.fetch_add(1, Ordering::Relaxed);
                inner.state().verified_at.insert(id, SystemTime::now());
                return;
            }
            Err(CacheError::NotFound { .. } | CacheError::WriteLocked { .. }) => {
                report.skipped += 1;
                return;
            }
            Err(_) if pacer.stop.load(Ordering::Relaxed) => {
                report.stopped = true;
                return;
            }
            Err(CacheError::Corrupt { expected, actual, .. }) => {
                format!("tree digest is {actual}, expected {expected}")
            }
            Err(err @ (CacheError::Digest { .. } | CacheError::BadMetadata { .. })) => {
                format!("unreadable: {}", error_chain(&err))
            }
            Err(err) => {
                warn!(error = %error_chain(&err), "scrub cannot check the artifact");
                report.errors += 1;
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        warn!(reason = %reason, "scrub found a corrupt artifact");
        report.corrupt.push(id);
        inner.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        inner.state().verified_at.remove(&id);
        self.quarantine(id, reason, report).await;
    }

    /// Quarantines a corrupt artifact, then repairs it where it can.
    async fn quarantine(&self, id: ArtifactId, reason: String, report: &mut ScrubReport) {
        let inner = &self.inner;
        let moved = inner.cache.quarantine_wait(&id, &reason, inner.config.quarantine_wait).await;
        let quarantined = match moved {
            Ok(quarantined) => quarantined,
            Err(err) if err.is_not_found() => {
                // Removed meanwhile: nothing left to serve.
                inner.state().pending.remove(&id);
                return;
            }
            Err(err) => {
                let detail = format!("not yet quarantined: {}", error_chain(&err));
                warn!(error = %detail, "the corrupt artifact stays hidden from this server");
                report.errors += 1;
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                let mut state = inner.state();
                state.pending.insert(id, reason.clone());
                state.event(id, reason, "pending", detail);
                return;
            }
        };
        report.quarantined.push(id);
        inner.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        inner.state().pending.remove(&id);
        let (state, detail) = self.repair(&quarantined, report).await;
        inner.state().event(id, reason, state, detail);
    }

    /// Fetches a quarantined artifact again: (state, detail) for the status page.
    #[cfg(feature = "client")]
    async fn repair(
        &self,
        quarantined: &Quarantined,
        report: &mut ScrubReport,
    ) -> (&'static str, String) {
        let inner = &self.inner;
        let Some(downloader) = &inner.repair else {
            return ("quarantined", "no peer or store to repair from".into());
        };
        match downloader.repair(&inner.cache, quarantined).await {
            Ok(repaired) => {
                report.repaired.push(quarantined.id);
                inner.counters.repaired.fetch_add(1, Ordering::Relaxed);
                inner.state().verified_at.insert(quarantined.id, SystemTime::now());
                let from = repaired.endpoint().unwrap_or("another task, meanwhile").to_owned();
                ("repaired", from)
            }
            Err(err) => {
                report.repair_failed.push(quarantined.id);
                inner.counters.repair_failures.fetch_add(1, Ordering::Relaxed);
                ("repair failed", error_chain(&err))
            }
        }
    }

    #[cfg(not(feature = "client"))]
    async fn repair(&self, _: &Quarantined, _: &mut ScrubReport) -> (&'static str, String) {
        ("quarantined", "no peer or store to repair from".into())
    }

    fn repair_sources(&self) -> Vec<String> {
        #[cfg(feature = "client")]
        if let Some(downloader) = &self.inner.repair {
            return downloader.endpoints().map(str::to_owned).collect();
        }
        Vec::new()
    }

    /// What `/status` shows.
    pub(crate) fn status(&self) -> ScrubStatus {
        let inner = &self.inner;
        let c = &inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let state = inner.state();
        ScrubStatus {
            interval_secs: inner.config.interval.as_secs(),
            rate_bytes_per_sec: inner.config.rate,
            repair_from: self.repair_sources(),
            running_since: state.running_since.map(unix),
            last_pass: state.last_pass.clone(),
            passes: load(&c.passes),
            verified: load(&c.verified),
            bytes: load(&c.bytes),
            corrupt: load(&c.corrupt),
            quarantined: load(&c.quarantined),
            repaired: load(&c.repaired),
            repair_failures: load(&c.repair_failures),
            errors: load(&c.errors),
            recent: state.events.iter().cloned().collect(),
        }
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn event(&mut self, id: ArtifactId, reason: String, state: &'static str, detail: String) {
        let at = unix(SystemTime::now());
        self.events.push_front(ScrubEvent { id: id.to_string(), at, reason, state, detail });
        self.events.truncate(EVENTS_KEPT);
    }
}
