//! The token bucket on a fake clock: its rate holds to within a few percent.

use std::time::Duration;

use artifact_jobs::RateLimit;
use governor::clock::FakeRelativeClock;

#[test]
fn sixty_four_mib_at_eight_mib_per_second_take_eight_seconds_of_the_buckets_clock() {
    let clock = FakeRelativeClock::default();
    let rate = 8u64 << 20;
    let bucket = RateLimit::with_clock(rate, clock.clone());
    let chunk = 60_000u64; // Not a whole number of KiB: the carry is exercised.
    let total = 64u64 << 20;
    let mut sent = 0;
    let mut waited = Duration::ZERO;
    while sent < total {
        let n = chunk.min(total - sent);
        match bucket.try_acquire(n) {
            Ok(()) => sent += n,
            Err(wait) => {
                assert!(wait > Duration::ZERO);
                clock.advance(wait);
                waited += wait;
            }
        }
    }
    let measured = bucket.granted_bytes() as f64 / bucket.granting_span().as_secs_f64();
    let error = (measured - rate as f64).abs() / rate as f64;
    assert!(error < 0.15, "{measured} bytes/s for a limit of {rate} ({:.1}% off)", error * 100.0);
    assert!(bucket.granted_bytes() <= total && bucket.granted_bytes() + 1024 > total);
    assert!(waited >= Duration::from_secs(7), "{waited:?}");
}
