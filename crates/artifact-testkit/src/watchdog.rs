//! [`watchdog`]: fail a test that hangs instead of letting it block the suite.

use std::{sync::mpsc, thread, time::Duration};

/// Runs `f` on its own thread and returns its result; panics if it takes longer than
/// `limit` (the thread is left behind; the test fails at once). A panic in `f` is passed on.
///
/// ```
/// use std::time::Duration;
///
/// let answer = artifact_testkit::watchdog(Duration::from_secs(10), || 6 * 7);
/// assert_eq!(answer, 42);
/// ```
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::Builder::new()
        .name("watched".into())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .expect("spawning the watched thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => {
            let _ = worker.join();
            value
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("watchdog: still running after {limit:?}; a hang?"),
    }
}
