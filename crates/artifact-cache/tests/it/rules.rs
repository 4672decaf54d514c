//! The seed's rules, one test each, plus the basics around them.

use std::{fs, os::unix::fs::PermissionsExt, thread};

use artifact_cache::Error;
use artifact_testkit::cache::{TempCache, assert_known, commit_known, fill_known, test_id};

#[test]
fn second_create_while_a_writer_holds_is_write_locked() {
    let cache = TempCache::new();
    let _writer = cache.create(&test_id(1)).unwrap();
    let err = cache.create(&test_id(1)).unwrap_err();
    assert!(matches!(err, Error::WriteLocked { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn get_while_being_written_is_write_locked() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    fill_known(writer.path(), &test_id(1), 3).unwrap();
    let err = cache.get(&test_id(1)).unwrap_err();
    assert!(matches!(err, Error::WriteLocked { .. }), "{err:?}");
    writer.commit().unwrap();
    cache.get(&test_id(1)).unwrap();
}

#[test]
fn remove_while_a_reader_holds_is_read_locked() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 2).unwrap();
    let reader = cache.get(&test_id(1)).unwrap();
    let err = cache.remove(&test_id(1)).unwrap_err();
    assert!(matches!(err, Error::ReadLocked { .. }), "{err:?}");
    assert_known(reader.path(), &test_id(1), 2);
    drop(reader);
    cache.remove(&test_id(1)).unwrap();
}

#[test]
fn get_of_an_absent_id_is_not_found() {
    let cache = TempCache::new();
    let err = cache.get(&test_id(9)).unwrap_err();
    assert!(matches!(err, Error::NotFound { id } if id == test_id(9)), "{err:?}");
    assert!(cache.stat(&test_id(9)).unwrap_err().is_not_found());
    assert!(cache.remove(&test_id(9)).unwrap_err().is_not_found());
    // A miss leaves no lock file behind.
    assert_eq!(fs::read_dir(cache.root().join("locks")).unwrap().count(), 0);
}

#[test]
fn abort_leaves_nothing() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    fill_known(writer.path(), &test_id(1), 5).unwrap();
    let staging = writer.path().to_owned();
    writer.abort().unwrap();
    assert!(!staging.exists());
    assert!(cache.get(&test_id(1)).unwrap_err().is_not_found());
    assert_eq!(cache.list().unwrap().count(), 0);
    for dir in ["tmp", "trash", "locks", "objects"] {
        let left: Vec<_> = fs::read_dir(cache.root().join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}/ keeps {left:?}");
    }
    // And the id can be written again.
    commit_known(&cache, &test_id(1), 1).unwrap();
}

#[test]
fn drop_without_commit_aborts() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    fill_known(writer.path(), &test_id(1), 2).unwrap();
    let staging = writer.path().to_owned();
    drop(writer);
    assert!(!staging.exists());
    assert!(cache.get(&test_id(1)).unwrap_err().is_not_found());
    assert_eq!(fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
    cache.create(&test_id(1)).unwrap();
}

#[test]
fn commit_then_get_sees_the_files() {
    let cache = TempCache::new();
    let meta = commit_known(&cache, &test_id(1), 7).unwrap();
    assert_eq!((meta.files, meta.dirs, meta.symlinks), (8, 2, 1));
    let reader = cache.get(&test_id(1)).unwrap();
    assert_known(reader.path(), &test_id(1), 7);
    assert_eq!(reader.id(), &test_id(1));
    assert_eq!(reader.metadata().digest, meta.digest);
    assert_eq!(reader.metadata().size, meta.size);
    assert_eq!(tarstream::digest_dir(reader.path()).unwrap().digest, meta.digest);
    assert_eq!(cache.stat(&test_id(1)).unwrap().digest, meta.digest);
}

#[test]
fn after_commit_nothing_changes_the_artifact() {
    let cache = TempCache::new();
    let id = test_id(1);
    let writer = cache.create(&id).unwrap();
    fill_known(writer.path(), &id, 3).unwrap();
    // Commit consumes the guard: there is no handle left to change the artifact with, and
    // dropping the (consumed) guard does not abort it.
    let meta = writer.commit().unwrap();
    assert!(cache.create(&id).unwrap_err().is_exists());
    // On disk it is read-only.
    let reader = cache.get(&id).unwrap();
    let file = reader.path().join("f1");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o444);
    assert_eq!(
        fs::metadata(reader.path().join("tool")).unwrap().permissions().mode() & 0o777,
        0o555
    );
    assert_eq!(fs::metadata(reader.path()).unwrap().permissions().mode() & 0o777, 0o555);
    assert_eq!(
        fs::metadata(reader.path().join("sub")).unwrap().permissions().mode() & 0o777,
        0o555
    );
    drop(reader);
    assert_eq!(cache.verify(&id).unwrap().digest, meta.digest);

    // The same after an abort: the id stays absent.
    let writer = cache.create(&test_id(2)).unwrap();
    writer.abort().unwrap();
    assert!(cache.get(&test_id(2)).unwrap_err().is_not_found());
}

#[test]
fn many_readers_at_once() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 4).unwrap();
    let other = cache.reopen();
    let mut readers: Vec<_> = (0..50).map(|_| cache.get(&test_id(1)).unwrap()).collect();
    readers.extend((0..50).map(|_| other.get(&test_id(1)).unwrap()));
    readers.push(readers[0].clone());
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let guards: Vec<_> = (0..100).map(|_| cache.get(&test_id(1)).unwrap()).collect();
                assert_known(guards[99].path(), &test_id(1), 4);
            });
        }
    });
    assert!(cache.remove(&test_id(1)).unwrap_err().is_locked());
    assert!(other.remove(&test_id(1)).unwrap_err().is_locked());
    readers.truncate(1);
    assert!(other.remove(&test_id(1)).unwrap_err().is_locked());
    drop(readers);
    other.remove(&test_id(1)).unwrap();
    assert!(cache.get(&test_id(1)).unwrap_err().is_not_found());
}

#[test]
fn create_of_a_committed_id_is_exists_even_while_read() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 1).unwrap();
    assert!(cache.create(&test_id(1)).unwrap_err().is_exists());
    let _reader = cache.get(&test_id(1)).unwrap();
    assert!(cache.create(&test_id(1)).unwrap_err().is_exists());
    assert!(cache.reopen().create(&test_id(1)).unwrap_err().is_exists());
}

#[test]
fn list_and_stat_show_committed_artifacts_only() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(1), 1).unwrap();
    commit_known(&cache, &test_id(2), 2).unwrap();
    let _writer = cache.create(&test_id(3)).unwrap();
    let mut ids: Vec<_> = cache.list().unwrap().map(Result::unwrap).collect();
    ids.sort();
    assert_eq!(ids, [test_id(1), test_id(2)]);
    let stat = cache.stat(&test_id(2)).unwrap();
    assert_eq!(stat.files, 3);
    assert!(stat.created <= stat.last_used);
    assert!(cache.stat(&test_id(3)).unwrap_err().is_not_found());
}

#[test]
fn verify_reports_a_changed_file_as_corrupt() {
    let cache = TempCache::new();
    let meta = commit_known(&cache, &test_id(1), 3).unwrap();
    let file = cache.root().join(format!("objects/{}/tree/f1", test_id(1)));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&file).unwrap();
    bytes[0] ^= 1;
    fs::write(&file, bytes).unwrap();
    match cache.verify(&test_id(1)).unwrap_err() {
        Error::Corrupt { id, expected, actual } => {
            assert_eq!(id, test_id(1));
            assert_eq!(*expected, meta.digest);
            assert_ne!(*actual, meta.digest);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn commit_with_trusts_the_given_summary() {
    let cache = TempCache::new();
    let source = cache.scratch("source");
    fill_known(&source, &test_id(1), 3).unwrap();
    let summary = tarstream::digest_dir(&source).unwrap();
    let writer = cache.create(&test_id(1)).unwrap();
    fill_known(writer.path(), &test_id(1), 3).unwrap();
    let meta = writer.commit_with(&summary).unwrap();
    assert_eq!(meta.digest, summary.digest);
    assert_eq!(meta.size, summary.file_bytes);
    cache.verify(&test_id(1)).unwrap();
}

#[test]
fn commit_of_an_unsupported_file_fails_and_leaves_nothing() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(1)).unwrap();
    let fifo = writer.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let err = writer.commit().unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err:?}");
    assert!(cache.get(&test_id(1)).unwrap_err().is_not_found());
    assert_eq!(fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
    cache.create(&test_id(1)).unwrap();
}

/// Compile-time: what the HTTP server needs to move handles and guards across tasks.
const _: fn() = || {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    send_sync_static::<artifact_cache::Cache>();
    send_sync_static::<artifact_cache::ReadGuard>();
    send_sync_static::<artifact_cache::WriteGuard>();
    send_sync_static::<Error>();
    #[cfg(feature = "tokio")]
    {
        let cache = TempCache::new();
        send_static(&cache.get_wait(&test_id(1), std::time::Duration::ZERO));
        send_static(&cache.create_or_get(&test_id(1), std::time::Duration::ZERO));
    }
};

#[test]
fn a_tree_deeper_than_any_path_is_committed_verified_and_removed() {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let cache = TempCache::new();
    let id = test_id(1);
    let writer = cache.create(&id).unwrap();
    // 40 levels of 200-byte names: the bottom's path (over 8,000 bytes) is beyond PATH_MAX, so
    // only fd-relative calls reach it.
    let name = std::ffi::CString::new("d".repeat(200)).unwrap();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(writer.path(), flags, Mode::empty()).unwrap();
    for _ in 0..40 {
        mkdirat(&fd, &name, Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, &name, flags, Mode::empty()).unwrap();
    }
    let file = openat(&fd, c"f", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644));
    rustix::io::write(file.unwrap(), b"deep").unwrap();
    drop(fd);
    let meta = writer.commit().unwrap();
    assert_eq!((meta.dirs, meta.files, meta.size), (40, 1, 4));
    assert_eq!(cache.verify(&id).unwrap().digest, meta.digest);
    cache.remove(&id).unwrap();
    assert!(cache.get(&id).unwrap_err().is_not_found());
    // Deleted, not left in the trash for every open to stumble on.
    assert_eq!(fs::read_dir(cache.root().join("trash")).unwrap().count(), 0);
    // And the same tree, aborted before its commit, goes too.
    let writer = cache.create(&id).unwrap();
    let mut fd = rustix::fs::open(writer.path(), flags, Mode::empty()).unwrap();
    for _ in 0..40 {
        mkdirat(&fd, &name, Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, &name, flags, Mode::empty()).unwrap();
    }
    drop(fd);
    writer.abort().unwrap();
    assert_eq!(fs::read_dir(cache.root().join("trash")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(cache.root().join("tmp")).unwrap().count(), 0);
}
