//! The locking rules between real processes sharing one root.

use artifact_cache::{Error, Quick, QuickStat};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, test_id};

use crate::child::Child;

#[test]
fn a_reader_in_another_process_blocks_remove_until_it_dies() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 2).unwrap();
    let mut child = Child::spawn("hold-read 1", cache.root());
    child.expect("holding");
    let err = cache.remove(&test_id(1)).unwrap_err();
    assert!(matches!(err, Error::ReadLocked { .. }), "{err:?}");
    assert!(cache.create(&test_id(1)).unwrap_err().is_exists());
    // Readers share: this process reads too.
    assert_known(cache.get(&test_id(1)).unwrap().path(), &test_id(1), 2);
    child.kill();
    cache.remove(&test_id(1)).unwrap();
}

#[test]
fn a_reader_in_another_process_that_lets_go_unblocks_remove() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 2).unwrap();
    let mut child = Child::spawn("hold-read 1", cache.root());
    child.expect("holding");
    assert!(cache.remove(&test_id(1)).unwrap_err().is_locked());
    assert!(child.finish().success());
    cache.remove(&test_id(1)).unwrap();
}

#[test]
fn a_writer_in_another_process_locks_out_get_and_create() {
    let cache = TempCache::new();
    let mut child = Child::spawn("hold-write 1", cache.root());
    child.expect("writing");
    assert!(matches!(cache.get(&test_id(1)).unwrap_err(), Error::WriteLocked { .. }));
    assert!(matches!(cache.create(&test_id(1)).unwrap_err(), Error::WriteLocked { .. }));
    assert!(matches!(cache.remove(&test_id(1)).unwrap_err(), Error::WriteLocked { .. }));
    child.say("commit");
    child.expect("committed");
    assert!(child.finish().success());
    assert_known(cache.get(&test_id(1)).unwrap().path(), &test_id(1), 3);
}

#[test]
fn a_writer_that_dies_releases_its_lock_and_its_leftovers_go() {
    let cache = TempCache::new();
    let mut child = Child::spawn("hold-write 1", cache.root());
    child.expect("writing");
    assert!(cache.create(&test_id(1)).unwrap_err().is_locked());
    child.kill();
    // The lock died with the process; its staging directory is a leftover...
    assert!(cache.get(&test_id(1)).unwrap_err().is_not_found());
    let staging = cache.root().join(format!("tmp/{}", test_id(1)));
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
    // ...that the next writer of the id clears (so does recovery, see `open.rs`).
    let writer = cache.create(&test_id(1)).unwrap();
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, [writer.path().parent().unwrap()]);
    assert_eq!(cache.gc(None).unwrap().leftovers_removed, 0);
    assert!(writer.path().exists(), "gc removed a live writer's staging directory");
    writer.abort().unwrap();
    assert_eq!(std::fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_wait_sees_a_writer_in_another_process_die() {
    let cache = TempCache::new();
    let mut child = Child::spawn("hold-write 1", cache.root());
    child.expect("writing");
    let waiter = tokio::spawn({
        let cache = cache.cache().clone();
        async move { cache.get_wait(&test_id(1), std::time::Duration::from_secs(60)).await }
    });
    tokio::task::yield_now().await;
    child.kill();
    assert!(waiter.await.unwrap().unwrap_err().is_not_found());
}

#[test]
fn a_write_that_fails_for_want_of_space_leaves_no_lock_file() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(3), 2).unwrap();
    let mut child = Child::spawn_without_space("no-space", cache.root());
    // EFBIG: the child may not grow any file, so neither its data nor the lock file's
    // tombstone can be written.
    assert_eq!(child.expect("fill-failed"), format!("Some({})", libc_efbig()));
    let err = child.expect("commit-failed");
    // The first file a commit writes beside the tree is its index, then its metadata.
    assert!(err.contains("index") || err.contains("meta"), "{err}");
    assert!(child.finish().success());
    // Only the committed artifact keeps a lock file; nothing is staged or in the trash.
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cache.root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("locks"), [test_id(3).to_string()]);
    assert_eq!(names("tmp"), Vec::<String>::new());
    assert_eq!(names("trash"), Vec::<String>::new());
    // Both ids work as usual afterwards.
    for n in 1..=2 {
        commit_known(&cache, &test_id(n), 1).unwrap();
        cache.remove(&test_id(n)).unwrap();
    }
    assert_eq!(names("locks"), [test_id(3).to_string()]);
}

fn libc_efbig() -> i32 {
    rustix::io::Errno::FBIG.raw_os_error()
}

#[test]
fn a_commit_in_another_process_ends_a_remembered_miss() {
    let cache = TempCache::new();
    let id = test_id(1);
    let mut child = Child::spawn("hold-write 1", cache.root());
    child.expect("writing");
    // Asked again and again: after the first, the answer comes from the remembered miss.
    for _ in 0..3 {
        assert!(matches!(cache.get_quick(&id), Quick::Absent));
        assert!(matches!(cache.stat_quick(&id), QuickStat::Absent));
    }
    child.say("commit");
    child.expect("committed");
    // The child's rename returned before these lookups began: they must see it.
    assert!(!matches!(cache.get_quick(&id), Quick::Absent));
    assert!(!matches!(cache.stat_quick(&id), QuickStat::Absent));
    assert!(child.finish().success());
    assert_known(cache.get(&id).unwrap().path(), &id, 3);
}
