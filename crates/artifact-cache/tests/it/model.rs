//! Model-based tests: random operation sequences against a small in-memory reference model.
//!
//! Two handles on one root stand for two processes (each has its own in-process state, so the
//! OS locks decide between them); the model does not care which handle an operation uses.

use std::collections::BTreeMap;

use artifact_cache::{Cache, Error, Quick, QuickStat, ReadGuard, WriteGuard};
use artifact_testkit::cache::{TempCache, assert_known, fill_known, test_id};
use proptest::prelude::*;

const IDS: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Create {
        handle: usize,
        id: u64,
    },
    Fill {
        writer: usize,
        files: usize,
    },
    Commit {
        writer: usize,
    },
    Abort {
        writer: usize,
    },
    DropWriter {
        writer: usize,
    },
    Get {
        handle: usize,
        id: u64,
    },
    DropReader {
        reader: usize,
    },
    Remove {
        handle: usize,
        id: u64,
    },
    List {
        handle: usize,
    },
    Stat {
        handle: usize,
        id: u64,
    },
    /// `get_quick`, then `stat_quick`.
    Quick {
        handle: usize,
        id: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let handle = 0..2usize;
    let id = 0..IDS;
    prop_oneof![
        3 => (handle.clone(), id.clone()).prop_map(|(handle, id)| Op::Create { handle, id }),
        2 => (0..4usize, 0..6usize).prop_map(|(writer, files)| Op::Fill { writer, files }),
        3 => (0..4usize).prop_map(|writer| Op::Commit { writer }),
        1 => (0..4usize).prop_map(|writer| Op::Abort { writer }),
        1 => (0..4usize).prop_map(|writer| Op::DropWriter { writer }),
        4 => (handle.clone(), id.clone()).prop_map(|(handle, id)| Op::Get { handle, id }),
        2 => (0..8usize).prop_map(|reader| Op::DropReader { reader }),
        2 => (handle.clone(), id.clone()).prop_map(|(handle, id)| Op::Remove { handle, id }),
        1 => handle.clone().prop_map(|handle| Op::List { handle }),
        1 => (handle.clone(), id.clone()).prop_map(|(handle, id)| Op::Stat { handle, id }),
        5 => (handle, id).prop_map(|(handle, id)| Op::Quick { handle, id }),
    ]
}

/// What the model expects of an operation that can fail.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    Exists,
    WriteLocked,
    ReadLocked,
}

fn outcome<T>(result: &Result<T, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(Error::NotFound { .. }) => Outcome::NotFound,
        Err(Error::Exists { .. }) => Outcome::Exists,
        Err(Error::WriteLocked { .. }) => Outcome::WriteLocked,
        Err(Error::ReadLocked { .. }) => Outcome::ReadLocked,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// The reference model of one set of ids, and the real guards that go with it.
#[derive(Default)]
struct Model {
    /// Committed ids and what they were filled with (`None`: nothing, an empty tree).
    committed: BTreeMap<u64, Option<usize>>,
    /// Open writers: (id, what they were filled with, guard).
    writers: Vec<(u64, Option<usize>, WriteGuard)>,
    /// Open readers: (id, what it was filled with, guard).
    readers: Vec<(u64, Option<usize>, ReadGuard)>,
}

impl Model {
    /// Applies `op` to the real cache (`handles`) and the model, ids shifted by `base`, and
    /// checks that both agree.
    fn apply(&mut self, handles: &[Cache], base: u64, op: &Op) {
        match *op {
            Op::Create { handle, id } => {
                let result = handles[handle].create(&test_id(base + id));
                let expect = if self.writers.iter().any(|w| w.0 == id) {
                    Outcome::WriteLocked
                } else if self.committed.contains_key(&id) {
                    Outcome::Exists
                } else {
                    Outcome::Ok
                };
                assert_eq!(outcome(&result), expect, "{op:?}");
                if let Ok(writer) = result {
                    assert!(std::fs::read_dir(writer.path()).unwrap().next().is_none());
                    self.writers.push((id, None, writer));
                }
            }
            Op::Fill { writer, files } => {
                if let Some((id, filled @ None, guard)) = self.writers.get_mut(writer) {
                    fill_known(guard.path(), &test_id(base + *id), files).unwrap();
                    *filled = Some(files);
                }
            }
            Op::Commit { writer } => {
                if writer < self.writers.len() {
                    let (id, files, guard) = self.writers.remove(writer);
                    let meta = guard.commit().unwrap();
                    assert_eq!(meta.files, file_count(files), "{op:?}");
                    self.committed.insert(id, files);
                }
            }
            Op::Abort { writer } => {
                if writer < self.writers.len() {
                    self.writers.remove(writer).2.abort().unwrap();
                }
            }
            Op::DropWriter { writer } => {
                if writer < self.writers.len() {
                    drop(self.writers.remove(writer));
                }
            }
            Op::Get { handle, id } => {
                let result = handles[handle].get(&test_id(base + id));
                let expect = if self.writers.iter().any(|w| w.0 == id) {
                    Outcome::WriteLocked
                } else if self.committed.contains_key(&id) {
                    Outcome::Ok
                } else {
                    Outcome::NotFound
                };
                assert_eq!(outcome(&result), expect, "{op:?}");
                if let Ok(reader) = result {
                    let files = self.committed[&id];
                    if let Some(files) = files {
                        assert_known(reader.path(), &test_id(base + id), files);
                    }
                    assert_eq!(reader.metadata().files, file_count(files));
                    self.readers.push((id, files, reader));
                }
            }
            Op::DropReader { reader } => {
                if reader < self.readers.len() {
                    let (id, files, guard) = self.readers.remove(reader);
                    if let Some(files) = files {
                        // Still intact while held, however much happened meanwhile.
                        assert_known(guard.path(), &test_id(base + id), files);
                    }
                }
            }
            Op::Remove { handle, id } => {
                let result = handles[handle].remove(&test_id(base + id));
                let expect = if self.writers.iter().any(|w| w.0 == id) {
                    Outcome::WriteLocked
                } else if !self.committed.contains_key(&id) {
                    Outcome::NotFound
                } else if self.readers.iter().any(|r| r.0 == id) {
                    Outcome::ReadLocked
                } else {
                    Outcome::Ok
                };
                assert_eq!(outcome(&result), expect, "{op:?}");
                if result.is_ok() {
                    self.committed.remove(&id);
                }
            }
            Op::List { handle } => {
                let mut listed: Vec<u64> = handles[handle]
                    .list()
                    .unwrap()
                    .map(|id| u64::from_be_bytes(id.unwrap().as_bytes().try_into().unwrap()))
                    .filter(|n| (base..base + IDS).contains(n))
                    .map(|n| n - base)
                    .collect();
                listed.sort();
                assert_eq!(listed, self.committed.keys().copied().collect::<Vec<_>>());
            }
            Op::Stat { handle, id } => {
                let result = handles[handle].stat(&test_id(base + id));
                match self.committed.get(&id) {
                    Some(&files) => assert_eq!(result.unwrap().files, file_count(files)),
                    None => assert!(result.unwrap_err().is_not_found()),
                }
            }
            Op::Quick { handle, id } => {
                // Quick calls may always answer `Slow`; otherwise they must agree with the
                // model (a remembered miss must not outlive a commit through either handle).
                let committed = self.committed.get(&id).copied();
                match (handles[handle].get_quick(&test_id(base + id)), committed) {
                    (Quick::Ready(reader), Some(files)) => {
                        if let Some(files) = files {
                            assert_known(reader.path(), &test_id(base + id), files);
                        }
                        self.readers.push((id, files, reader));
                    }
                    (Quick::Absent, None) | (Quick::Slow, _) => {}
                    (other, committed) => panic!("{op:?}: {other:?}, committed {committed:?}"),
                }
                match (handles[handle].stat_quick(&test_id(base + id)), committed) {
                    (QuickStat::Committed(meta), Some(files)) => {
                        assert_eq!(meta.files, file_count(files), "{op:?}");
                    }
                    (QuickStat::Absent, None) | (QuickStat::Slow, _) => {}
                    (other, committed) => panic!("{op:?}: {other:?}, committed {committed:?}"),
                }
            }
        }
    }

    /// Drops every guard and checks the cache against the model from a fresh handle.
    fn finish(mut self, root: &std::path::Path, base: u64) {
        self.readers.clear();
        self.writers.clear();
        let cache = Cache::open(root).unwrap();
        for id in 0..IDS {
            match self.committed.get(&id) {
                Some(_) => {
                    cache.verify(&test_id(base + id)).unwrap();
                }
                None => assert!(cache.get(&test_id(base + id)).unwrap_err().is_not_found()),
            }
        }
    }
}

/// Regular files in a tree filled by `fill_known(files)` (which adds an executable).
fn file_count(filled: Option<usize>) -> u64 {
    filled.map_or(0, |files| files as u64 + 1)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn single_thread_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let cache = TempCache::new();
        let handles = [cache.cache().clone(), cache.reopen()];
        let mut model = Model::default();
        for op in &ops {
            model.apply(&handles, 0, op);
        }
        model.finish(cache.root(), 0);
        // Nothing staged or trashed once every guard is gone.
        for dir in ["tmp", "trash"] {
            prop_assert_eq!(std::fs::read_dir(cache.root().join(dir)).unwrap().count(), 0);
        }
    }

    /// Threads share both handles (and so the in-process tables and eviction-free paths);
    /// each thread owns its ids, so each has an exact model.
    #[test]
    fn threads_sharing_handles_match_their_models(
        per_thread in prop::collection::vec(prop::collection::vec(op(), 1..40), 2..5)
    ) {
        let cache = TempCache::new();
        let handles = [cache.cache().clone(), cache.reopen()];
        let models = std::thread::scope(|s| {
            let threads: Vec<_> = per_thread
                .iter()
                .enumerate()
                .map(|(t, ops)| {
                    let handles = &handles;
                    s.spawn(move || {
                        let base = 100 * t as u64;
                        let mut model = Model::default();
                        for op in ops {
                            model.apply(handles, base, op);
                        }
                        (base, model)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
        });
        // Checked once every thread is done: `finish` opens another handle, and opening runs
        // recovery, which briefly takes the lock of any id with a staging directory (a
        // writer of another thread): a legitimate, retryable conflict the models don't know.
        for (base, model) in models {
            model.finish(cache.root(), base);
        }
    }
}
