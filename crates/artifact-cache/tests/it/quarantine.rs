//! `Cache::quarantine`: a corrupt artifact moved out of the way, readers in flight, the bound
//! on the quarantine area, and `verify_with`'s read hook.

use std::fs;

use artifact_cache::{Error, Options};
use artifact_testkit::cache::{TempCache, assert_known, commit_known, flip_byte, test_id};

#[test]
fn a_quarantined_artifact_is_gone_and_its_id_can_be_filled_again() {
    let cache = TempCache::new();
    let id = test_id(1);
    let meta = commit_known(&cache, &id, 3).unwrap();
    flip_byte(cache.root(), &id, "f1");
    assert!(cache.verify(&id).unwrap_err().is_corrupt());

    let moved = cache.quarantine(&id, "digest <mismatch>").unwrap();
    assert_eq!(moved.id, id);
    assert_eq!(moved.metadata.as_ref().unwrap().digest, meta.digest);
    assert!(moved.path.starts_with(cache.root().join("quarantine")));
    assert!(moved.path.join("tree/f1").exists(), "the damaged tree is kept for inspection");
    assert!(cache.get(&id).unwrap_err().is_not_found());
    assert!(cache.stat(&id).unwrap_err().is_not_found());
    assert_eq!(cache.list().unwrap().count(), 0);
    assert_eq!(cache.usage().unwrap().artifacts, 0);
    assert!(!cache.is_condemned(&id));

    // Another handle (another process) lists it with its reason.
    let listed = cache.reopen().quarantined().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason, "digest <mismatch>");
    assert_eq!(listed[0].metadata.as_ref().unwrap().digest, meta.digest);
    assert_eq!(listed[0].at, moved.at);

    // A good copy comes back under the same id.
    let again = commit_known(&cache, &id, 3).unwrap();
    assert_eq!(again.digest, meta.digest);
    assert_known(cache.get(&id).unwrap().path(), &id, 3);
    assert_eq!(cache.verify(&id).unwrap().digest, meta.digest);
}

#[test]
fn readers_delay_the_quarantine_but_no_new_reader_of_this_process_gets_in() {
    let cache = TempCache::new();
    let id = test_id(2);
    commit_known(&cache, &id, 2).unwrap();
    let reader = cache.get(&id).unwrap();

    let err = cache.quarantine(&id, "corrupt").unwrap_err();
    assert!(matches!(err, Error::ReadLocked { .. }), "{err:?}");
    assert!(cache.is_condemned(&id));
    // Condemned: absent to new readers, busy to writers; the reader keeps its files.
    assert!(cache.get(&id).unwrap_err().is_not_found());
    assert!(matches!(cache.create(&id).unwrap_err(), Error::WriteLocked { .. }));
    assert_known(reader.path(), &id, 2);

    drop(reader);
    cache.quarantine(&id, "corrupt").unwrap();
    assert!(!cache.is_condemned(&id));
    commit_known(&cache, &id, 2).unwrap();
    assert_known(cache.get(&id).unwrap().path(), &id, 2);
}

#[test]
fn a_reader_in_another_process_delays_the_quarantine() {
    let cache = TempCache::new();
    let other = cache.reopen();
    let id = test_id(3);
    commit_known(&cache, &id, 2).unwrap();
    let reader = other.get(&id).unwrap();
    assert!(matches!(cache.quarantine(&id, "x").unwrap_err(), Error::ReadLocked { .. }));
    drop(reader);
    cache.quarantine(&id, "x").unwrap();
    assert!(other.get(&id).unwrap_err().is_not_found());
    // Nothing of it is left where artifacts live, and its lock file is retired.
    assert!(!cache.root().join("objects").join(id.to_string()).exists());
    assert!(!cache.root().join("locks").join(id.to_string()).exists());
}

#[test]
fn an_artifact_removed_meanwhile_ends_the_condemnation() {
    let cache = TempCache::new();
    let other = cache.reopen();
    let id = test_id(4);
    commit_known(&cache, &id, 1).unwrap();
    let reader = other.get(&id).unwrap();
    assert!(cache.quarantine(&id, "x").unwrap_err().is_locked());
    drop(reader);
    other.remove(&id).unwrap();
    // Nothing left to quarantine; the id is free again here too.
    assert!(cache.quarantine(&id, "x").unwrap_err().is_not_found());
    assert!(!cache.is_condemned(&id));
    commit_known(&cache, &id, 1).unwrap();
}

#[test]
fn the_newest_are_kept_and_gc_clears_the_rest() {
    let cache = TempCache::with_options(Options::default().quarantine_keep(2));
    for n in 1..=3 {
        commit_known(&cache, &test_id(n), 1).unwrap();
        cache.quarantine(&test_id(n), &format!("number {n}")).unwrap();
    }
    let kept = cache.quarantined().unwrap();
    let reasons: Vec<&str> = kept.iter().map(|q| q.reason.as_str()).collect();
    assert_eq!(reasons, ["number 3", "number 2"]);
    assert_eq!(fs::read_dir(cache.root().join("quarantine")).unwrap().count(), 2);
    let report = cache.gc(None).unwrap();
    assert_eq!(report.quarantine_removed, 2);
    assert!(cache.quarantined().unwrap().is_empty());
}

#[test]
fn quarantine_of_an_absent_id_is_not_found() {
    let cache = TempCache::new();
    assert!(cache.quarantine(&test_id(5), "x").unwrap_err().is_not_found());
    assert!(!cache.is_condemned(&test_id(5)));
    commit_known(&cache, &test_id(5), 1).unwrap();
}

#[test]
fn verify_with_announces_every_byte_once() {
    let cache = TempCache::new();
    let id = test_id(6);
    let writer = cache.create(&id).unwrap();
    fs::write(writer.path().join("big"), vec![7u8; 600 << 10]).unwrap();
    fs::write(writer.path().join("small"), b"abc").unwrap();
    let meta = writer.commit().unwrap();
    let mut calls = Vec::new();
    cache
        .verify_with(&id, |bytes| {
            calls.push(bytes);
            Ok(())
        })
        .unwrap();
    assert_eq!(calls.iter().sum::<u64>(), meta.size);
    assert!(calls.iter().all(|&bytes| bytes <= 256 << 10), "{calls:?}");
    // A hook that fails stops the walk.
    let err = cache.verify_with(&id, |_| Err(std::io::Error::other("stop"))).unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err:?}");
}
