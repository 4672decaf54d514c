//! Crash consistency: writer processes killed (SIGKILL) at random points.

use std::time::Duration;

use artifact_testkit::cache::TempCache;

use crate::{
    child::Child,
    stress::{Rng, check_quiet_root, watchdog},
};

/// Rounds to run: `ARTIFACT_CRASH_ROUNDS`, 12 by default (`cargo xtask soak` runs hundreds).
fn rounds() -> u64 {
    std::env::var("ARTIFACT_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

#[test]
fn processes_killed_at_random_points_leave_every_artifact_whole_or_absent() {
    // A round takes well under a second; the watchdog only catches a hang.
    let _watchdog = watchdog(Duration::from_secs(240 + 2 * rounds()));
    let seed = std::env::var("ARTIFACT_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    let mut interrupted = 0;
    for round in 0..rounds() {
        let cache = TempCache::new();
        let fsync = u64::from(round % 3 == 0);
        // Two processes at once, so one dies while the other holds locks too.
        let mut children: Vec<Child> = (0..2)
            .map(|c| {
                Child::spawn(
                    &format!("churn {} {fsync}", seed * 1000 + round * 2 + c),
                    cache.root(),
                )
            })
            .collect();
        for child in &mut children {
            for _ in 0..=rng.below(15) {
                child.expect("step");
            }
        }
        // Let them run on a little, so the kills land anywhere in an operation: filling,
        // sealing, hashing, renaming, removing.
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        for child in children {
            child.kill();
        }
        let leftovers = ["tmp", "trash"]
            .iter()
            .map(|dir| std::fs::read_dir(cache.root().join(dir)).unwrap().count())
            .sum::<usize>();
        interrupted += u64::from(leftovers > 0);
        check_quiet_root(cache.root(), 6);
    }
    eprintln!("crash: {interrupted} of {} rounds killed a writer or remover mid-way", rounds());
    // Most kills land inside an operation; if none did, the test tested nothing.
    assert!(interrupted > 0, "no kill interrupted an operation");
}
