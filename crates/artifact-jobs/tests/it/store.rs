//! The SQLite store: equal jobs, the queue bound, restart recovery, pruning, paging, the
//! schema version.

use std::time::{Duration, SystemTime};

use artifact_jobs::{Action, Change, Event, LOG_ENTRIES, NewJob, State, Store};
use artifact_testkit::cache::test_id;

fn pull(n: u64) -> NewJob {
    NewJob {
        action: Action::Pull,
        id: test_id(n),
        endpoints: vec!["http://a:1".into(), "http://b:1".into()],
        priority: 0,
    }
}

#[test]
fn an_equal_active_job_is_returned_not_queued_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let now = SystemTime::now();
    let first = store.submit(&[pull(1), pull(2)], 10, now).unwrap();
    assert!(first.iter().all(|(_, created)| *created));
    let again = store.submit(&[pull(1)], 10, now).unwrap();
    assert_eq!(again, vec![(first[0].0.clone(), false)]);
    // Other endpoints, or another action, make another job.
    let mut other = pull(1);
    other.endpoints.reverse();
    let mut push = pull(1);
    push.action = Action::Push;
    assert!(store.submit(&[other, push], 10, now).unwrap().iter().all(|(_, c)| *c));
    // Once ended, the same job may be queued again.
    let job = first[0].0.job;
    store.apply(job, Event::Cancel, Change::default(), now).unwrap();
    let (renewed, created) = store.submit(&[pull(1)], 10, now).unwrap().remove(0);
    assert!(created);
    assert!(renewed.job > job);
}

#[test]
fn a_full_queue_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let now = SystemTime::now();
    store.submit(&[pull(1), pull(2)], 3, now).unwrap();
    let err = store.submit(&[pull(3), pull(4)], 3, now).unwrap_err();
    assert!(matches!(err, artifact_jobs::Error::QueueFull { max: 3 }), "{err}");
    assert_eq!(store.list(None, None, 100).unwrap().len(), 2, "nothing of the batch kept");
    // A duplicate takes no room.
    assert_eq!(store.submit(&[pull(1), pull(3)], 3, now).unwrap().len(), 2);
}

#[test]
fn a_restart_requeues_running_jobs_and_keeps_due_times() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let due = now + Duration::from_secs(30);
    let (running, retrying, queued) = {
        let mut store = Store::open(dir.path()).unwrap();
        let jobs = store.submit(&[pull(1), pull(2), pull(3)], 10, now).unwrap();
        let ids: Vec<_> = jobs.iter().map(|(j, _)| j.job).collect();
        store.apply(ids[0], Event::Start, Change::default(), now).unwrap();
        store.apply(ids[1], Event::Start, Change::default(), now).unwrap();
        let change = Change { due: Some(due), error: Some("503".into()), ..Change::default() };
        store.apply(ids[1], Event::Retry, change, now).unwrap();
        // Dropped without any shutdown: a crash.
        (ids[0], ids[1], ids[2])
    };
    let mut store = Store::open(dir.path()).unwrap();
    let recovered = store.recover(now).unwrap();
    assert_eq!(recovered.iter().map(|j| j.job).collect::<Vec<_>>(), vec![running]);
    let job = store.get(running).unwrap();
    assert_eq!((job.state, job.attempts), (State::Queued, 1));
    assert_eq!(job.log.last().unwrap().note.as_deref(), Some("requeued at start"));
    let job = store.get(retrying).unwrap();
    assert_eq!(
        (job.state, job.due, job.error.as_deref()),
        (State::Retrying, Some(due), Some("503"))
    );
    assert_eq!(store.get(queued).unwrap().state, State::Queued);
    let waiting: Vec<_> = store.waiting().unwrap().iter().map(|j| j.job).collect();
    assert_eq!(waiting, vec![running, retrying, queued]);
}

#[test]
fn ended_jobs_are_pruned_after_the_keep_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let jobs = store.submit(&[pull(1), pull(2), pull(3)], 10, then).unwrap();
    let ids: Vec<_> = jobs.iter().map(|(j, _)| j.job).collect();
    store.apply(ids[0], Event::Cancel, Change::default(), then).unwrap();
    store.apply(ids[1], Event::Cancel, Change::default(), then + Duration::from_secs(100)).unwrap();
    assert_eq!(store.prune(then + Duration::from_secs(50)).unwrap(), 1);
    assert!(store.get(ids[0]).unwrap_err().is_not_found());
    assert_eq!(store.get(ids[1]).unwrap().state, State::Cancelled);
    // Active jobs are never pruned, however old.
    assert_eq!(store.prune(then + Duration::from_secs(10_000)).unwrap(), 1);
    assert_eq!(store.get(ids[2]).unwrap().state, State::Queued);
}

#[test]
fn lists_page_and_filter_and_logs_stay_short() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let now = SystemTime::now();
    let news: Vec<_> = (0..5).map(pull).collect();
    let ids: Vec<_> =
        store.submit(&news, 10, now).unwrap().into_iter().map(|(j, _)| j.job).collect();
    store.apply(ids[1], Event::Cancel, Change::default(), now).unwrap();
    let page = store.list(None, Some(ids[1]), 2).unwrap();
    assert_eq!(page.iter().map(|j| j.job).collect::<Vec<_>>(), vec![ids[2], ids[3]]);
    let cancelled = store.list(Some(State::Cancelled), None, 10).unwrap();
    assert_eq!(cancelled.iter().map(|j| j.job).collect::<Vec<_>>(), vec![ids[1]]);
    let counts = store.counts().unwrap();
    assert!(counts.contains(&(State::Queued, 4)) && counts.contains(&(State::Running, 0)));

    for _ in 0..LOG_ENTRIES {
        store.apply(ids[0], Event::Start, Change::default(), now).unwrap();
        store.apply(ids[0], Event::Requeue, Change::default(), now).unwrap();
    }
    let job = store.get(ids[0]).unwrap();
    assert_eq!(job.log.len(), LOG_ENTRIES);
    assert_eq!((job.log[0].state, job.attempts), (State::Queued, LOG_ENTRIES as u32));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = store.path().to_owned();
    drop(store);
    set_user_version_in_header(&path);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, artifact_jobs::Error::Schema { found: 99, .. }), "{err}");
}

/// Writes `user_version = 99` into the SQLite header (offset 60, big-endian), as a newer
/// program would.
fn set_user_version_in_header(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_unusable_root_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, artifact_jobs::Error::Database { what: "opening", .. }), "{text}");
    assert!(text.contains("not-a-dir/jobs.sqlite3"), "{text}");
    // Not a database.
    std::fs::write(dir.path().join(artifact_jobs::FILE_NAME), vec![7u8; 4096]).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, artifact_jobs::Error::Database { .. }), "{err}");
}
