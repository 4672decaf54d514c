//! [`Bucket`]: the token bucket that bounds the scrub's read rate, and [`Pacer`], which makes
//! a blocking thread wait for it.

use std::{
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The longest single wait: a stop request is noticed within this.
const SLICE: Duration = Duration::from_millis(50);

/// A token bucket of bytes: `rate` bytes a second, up to `burst` saved up while idle.
///
/// [`take`](Bucket::take) always grants what is asked and returns how long to wait before
/// using it (the bucket goes into debt), so a read larger than the burst is paced like any
/// other: over any stretch of time `T`, at most `burst + rate * T` bytes are granted.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket of `rate` bytes a second (at least 1) whose burst is a tenth of a second
    /// of it.
    pub(crate) fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        let burst = rate / 10.0;
        Bucket { rate, burst, tokens: burst, last: None }
    }

    /// Takes `bytes` at `now`; returns how long to wait before reading them.
    pub(crate) fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.last = Some(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// What a scrub's `before_read` hook does: counts the bytes, takes them from the shared
/// bucket and waits (in slices, so that a stop is noticed) before letting the read go on.
#[derive(Clone)]
pub(crate) struct Pacer {
    pub(crate) bucket: Arc<Mutex<Bucket>>,
    /// Bytes announced, across passes.
    pub(crate) bytes: Arc<AtomicU64>,
    /// Set to stop the pass: the next read fails with `Interrupted`.
    pub(crate) stop: Arc<AtomicBool>,
}

impl Pacer {
    /// Grants `bytes`, blocking the calling thread until the rate allows them.
    pub(crate) fn before_read(&self, bytes: u64) -> io::Result<()> {
        let stopped = || io::Error::new(io::ErrorKind::Interrupted, "the scrub was stopped");
        if self.stop.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            bucket.take(bytes, Instant::now())
        };
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if self.stop.load(Ordering::Relaxed) {
                return Err(stopped());
            }
            std::thread::sleep(left.min(SLICE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `chunks` through a bucket on a clock that moves only by the waits it asks for:
    /// the bytes granted never exceed the burst plus the rate times the time passed.
    fn check(rate: u64, chunks: &[u64]) {
        let mut bucket = Bucket::new(rate);
        let start = Instant::now();
        let mut now = start;
        let mut granted = 0u64;
        for &chunk in chunks {
            now += bucket.take(chunk, now);
            granted += chunk;
            let allowed = rate as f64 / 10.0 + rate as f64 * (now - start).as_secs_f64();
            assert!(granted as f64 <= allowed + 1.0, "{granted} bytes granted, {allowed} allowed");
        }
        // And the bucket asked for no more waiting than the rate needs.
        let needed = (granted as f64 - rate as f64 / 10.0).max(0.0) / rate as f64;
        assert!((now - start).as_secs_f64() <= needed + 1e-6, "waited too long");
    }

    #[test]
    fn the_rate_bounds_the_bytes_granted() {
        check(1 << 20, &[256 << 10; 64]);
        check(1000, &[1, 10, 100, 1000, 10_000, 3]);
        check(1, &[256 << 10, 256 << 10]);
        check(10 << 20, &[]);
    }

    #[test]
    fn idle_time_saves_up_to_the_burst_only() {
        let mut bucket = Bucket::new(1000);
        let start = Instant::now();
        assert_eq!(bucket.take(100, start), Duration::ZERO);
        // An hour idle earns a tenth of a second's worth, no more.
        let later = start + Duration::from_secs(3600);
        assert_eq!(bucket.take(100, later), Duration::ZERO);
        assert_eq!(bucket.take(1000, later), Duration::from_secs(1));
    }

    #[test]
    fn a_stop_interrupts_the_wait() {
        let pacer = Pacer {
            bucket: Arc::new(Mutex::new(Bucket::new(1))),
            bytes: Arc::default(),
            stop: Arc::default(),
        };
        pacer.before_read(0).unwrap();
        pacer.stop.store(true, Ordering::Relaxed);
        // A day's worth of bytes: only the stop ends this call.
        let err = pacer.before_read(86_400).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        assert_eq!(pacer.bytes.load(Ordering::Relaxed), 0);
    }
}
