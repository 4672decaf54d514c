//! [`RateLimit`]: a byte-rate token bucket (a `governor` GCRA limiter counting KiB cells),
//! with the bytes it granted and the span of its own clock over which it granted them.

use std::{
    num::NonZeroU32,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock, Reference},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};

/// Bytes per cell of the bucket: rates are counted in KiB, so that up to 4 TiB/s fit.
const CELL: u64 = 1024;

/// A token bucket of bytes: `rate` bytes per second, with a burst of a tenth of a second's
/// worth (at least 64 KiB). Waiting is the limiter's own: a transfer awaits the moment its
/// bytes are allowed, computed by the bucket; nothing polls.
pub struct RateLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    rate: u64,
    burst: NonZeroU32,
    /// Bytes below a whole cell, carried to the next request.
    carry: Mutex<u64>,
    granted: AtomicU64,
    /// The clock's readings at the first and the latest grant.
    span: Mutex<Option<(C::Instant, C::Instant)>>,
}

impl<C: Clock> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl RateLimit {
    /// A bucket of `bytes_per_second` (at least 1 KiB/s) on the monotonic clock.
    pub fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit::with_clock(bytes_per_second, DefaultClock::default())
    }

    /// Waits until the bucket allows `bytes` more.
    pub async fn acquire(&self, bytes: u64) {
        for cells in self.cells(bytes) {
            // `cells` is at most the burst, so the limiter always has the capacity.
            let _ = self.limiter.until_n_ready(cells).await;
            self.granted(cells);
        }
    }
}

impl<C: Clock + Clone> RateLimit<C> {
    /// A bucket of `bytes_per_second` on `clock` (a `FakeRelativeClock` in tests).
    pub fn with_clock(bytes_per_second: u64, clock: C) -> RateLimit<C> {
        let cells_per_second = (bytes_per_second / CELL).clamp(1, u64::from(u32::MAX));
        let per_second = NonZeroU32::new(cells_per_second as u32).expect("at least 1");
        let burst = NonZeroU32::new((cells_per_second / 10).clamp(64, u64::from(u32::MAX)) as u32)
            .expect("at least 64");
        let quota = Quota::per_second(per_second).allow_burst(burst);
        RateLimit {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            rate: cells_per_second * CELL,
            burst,
            carry: Mutex::new(0),
            granted: AtomicU64::new(0),
            span: Mutex::new(None),
        }
    }

    /// The rate, in bytes per second (rounded down to whole KiB).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `bytes` if the bucket has them now; otherwise takes nothing and answers how long
    /// to wait on the bucket's clock before asking again. `bytes` must be at most the burst
    /// (64 KiB always is).
    ///
    /// # Panics
    ///
    /// If `bytes` is more than the burst.
    pub fn try_acquire(&self, bytes: u64) -> Result<(), Duration> {
        let mut carry = self.carry.lock().unwrap_or_else(PoisonError::into_inner);
        let total = *carry + bytes;
        let cells = total / CELL;
        assert!(cells <= u64::from(self.burst.get()), "at most the burst at once");
        let Some(n) = NonZeroU32::new(cells as u32) else {
            *carry = total;
            return Ok(());
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => {
                *carry = total % CELL;
                drop(carry);
                self.granted(n);
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            Err(_) => unreachable!("at most the burst is asked for"),
        }
    }

    /// Bytes granted so far (whole cells).
    pub fn granted_bytes(&self) -> u64 {
        self.granted.load(Relaxed)
    }

    /// The time on the bucket's clock from its first grant to its latest.
    pub fn granting_span(&self) -> Duration {
        match *self.span.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((first, last)) => last.duration_since(first).into(),
            None => Duration::ZERO,
        }
    }

    /// `bytes` (plus the carry) as batches of whole cells, each at most the burst.
    fn cells(&self, bytes: u64) -> Vec<NonZeroU32> {
        let mut carry = self.carry.lock().unwrap_or_else(PoisonError::into_inner);
        let total = *carry + bytes;
        *carry = total % CELL;
        let mut cells = total / CELL;
        let mut batches = Vec::new();
        let burst = u64::from(self.burst.get());
        while cells > 0 {
            let n = cells.min(burst);
            batches.push(NonZeroU32::new(n as u32).expect("positive"));
            cells -= n;
        }
        batches
    }

    fn granted(&self, cells: NonZeroU32) {
        self.granted.fetch_add(u64::from(cells.get()) * CELL, Relaxed);
        let now = self.clock.now();
        let mut span = self.span.lock().unwrap_or_else(PoisonError::into_inner);
        *span = Some(match *span {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }
}
