//! Opening a root: its checks, and recovery from crash states built by hand.

use std::{fs, os::unix::fs::PermissionsExt, time::Instant};

use artifact_cache::{Cache, Error, RootProblem};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, test_id};

fn problem(result: Result<Cache, Error>) -> RootProblem {
    match result {
        Err(Error::RootNotUsable { problem, .. }) => problem,
        other => panic!("expected RootNotUsable, got {other:?}"),
    }
}

#[test]
fn creates_the_root_and_tags_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/cache");
    let cache = Cache::open(&root).unwrap();
    assert_eq!(cache.root(), root);
    let tag = fs::read_to_string(root.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"), "{tag}");
    // Opening again (and concurrently) is fine.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| Cache::open(&root).unwrap());
        }
    });
}

#[test]
fn concurrent_first_opens_of_an_empty_root_agree() {
    // One opener may tag the root and create its layout between another's read of the tag
    // and its listing of the root; the window is narrow, so try many fresh roots.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..100 {
        let root = dir.path().join(format!("fresh{round}"));
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Cache::open(&root)
                    })
                })
                .collect();
            for open in opens {
                open.join().unwrap().unwrap();
            }
        });
    }
}

#[test]
fn refuses_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert_eq!(problem(Cache::open(&file)), RootProblem::NotADirectory);
    let err = Cache::open(&file).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(err.to_string().contains("file"), "{err}");
}

#[test]
fn refuses_a_directory_that_is_not_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    assert_eq!(problem(Cache::open(dir.path())), RootProblem::NotACache);
    assert!(dir.path().join("notes.txt").exists());
    assert!(!dir.path().join("objects").exists());
}

#[test]
fn refuses_another_layout_version() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path()).unwrap();
    let tag = dir.path().join("CACHEDIR.TAG");
    let text = fs::read_to_string(&tag).unwrap().replace("layout 1", "layout 2");
    fs::write(&tag, text).unwrap();
    assert!(matches!(problem(Cache::open(dir.path())), RootProblem::UnknownLayout { .. }));
}

#[test]
fn refuses_a_root_inside_a_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), "x").unwrap();
    let err = Cache::open(dir.path().join("file/cache")).unwrap_err();
    assert!(matches!(err, Error::RootNotUsable { .. }), "{err:?}");
}

#[test]
fn recovery_removes_dead_writers_staging_and_trash() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 2).unwrap();
    let root = cache.root();
    // A writer that died mid-fill: its staging directory, lock file still there, unlocked.
    let dead = root.join(format!("tmp/{}/999999.0", test_id(2)));
    fs::create_dir_all(dead.join("tree/sub")).unwrap();
    fs::write(dead.join("tree/sub/f"), "partial").unwrap();
    fs::set_permissions(dead.join("tree/sub"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::write(root.join(format!("locks/{}", test_id(2))), []).unwrap();
    // A writer whose lock file is gone too.
    let orphan = root.join(format!("tmp/{}/999999.1", test_id(3)));
    fs::create_dir_all(orphan.join("tree")).unwrap();
    // A remover that died while deleting.
    let trash = root.join(format!("trash/{}.999999.2", test_id(4)));
    fs::create_dir_all(trash.join("tree/x")).unwrap();
    fs::set_permissions(trash.join("tree"), fs::Permissions::from_mode(0o555)).unwrap();
    // A live writer in another handle: its staging directory must survive.
    let live = cache.reopen();
    let writer = live.create(&test_id(5)).unwrap();

    let reopened = cache.reopen();
    assert!(!dead.parent().unwrap().exists());
    assert!(!orphan.parent().unwrap().exists());
    assert!(!trash.exists());
    assert!(writer.path().exists());
    assert_known(reopened.get(&test_id(1)).unwrap().path(), &test_id(1), 2);
    assert!(reopened.get(&test_id(2)).unwrap_err().is_not_found());
    reopened.create(&test_id(2)).unwrap().abort().unwrap();
    writer.commit().unwrap();
    reopened.get(&test_id(5)).unwrap();
}

#[test]
fn a_tombstone_left_by_a_dead_remover_is_cleared() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 1).unwrap();
    let lock = cache.root().join(format!("locks/{}", test_id(1)));
    // The remover renamed the object away and wrote the tombstone, then died.
    fs::rename(
        cache.root().join(format!("objects/{}", test_id(1))),
        cache.root().join(format!("trash/{}.1.1", test_id(1))),
    )
    .unwrap();
    fs::write(&lock, u64::MAX.to_le_bytes()).unwrap();
    let other = cache.reopen();
    assert!(other.get(&test_id(1)).unwrap_err().is_not_found());
    commit_known(&other, &test_id(1), 2).unwrap();
    assert_known(cache.get(&test_id(1)).unwrap().path(), &test_id(1), 2);
    assert_eq!(fs::read(&lock).unwrap().len(), 8);
}

#[test]
fn a_lost_lock_file_does_not_hide_an_artifact() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 1).unwrap();
    fs::remove_file(cache.root().join(format!("locks/{}", test_id(1)))).unwrap();
    let other = cache.reopen();
    other.get(&test_id(1)).unwrap();
    assert!(other.create(&test_id(1)).unwrap_err().is_exists());
    other.remove(&test_id(1)).unwrap();
}

#[test]
fn missing_metadata_is_a_clear_error() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 1).unwrap();
    fs::remove_file(cache.root().join(format!("objects/{}/meta", test_id(1)))).unwrap();
    let other = cache.reopen();
    assert!(other.get(&test_id(1)).unwrap_err().is_not_found());
    fs::write(cache.root().join(format!("objects/{}/meta", test_id(1))), "garbage").unwrap();
    let err = other.get(&test_id(1)).unwrap_err();
    assert!(matches!(err, Error::BadMetadata { .. }), "{err:?}");
    // It can still be removed.
    other.remove(&test_id(1)).unwrap();
}

#[test]
fn open_does_no_work_per_artifact() {
    let cache = TempCache::new();
    for n in 0..200 {
        cache.create(&test_id(n)).unwrap().commit().unwrap();
    }
    // Make every metadata file unreadable garbage: an open that read them would notice.
    for n in 0..200 {
        fs::write(cache.root().join(format!("objects/{}/meta", test_id(n))), "x").unwrap();
    }
    let started = Instant::now();
    let reopened = cache.reopen();
    assert!(started.elapsed().as_secs() < 5);
    assert_eq!(reopened.list().unwrap().count(), 200);
}
