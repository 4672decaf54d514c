//! [`Table`]: the in-process state of the artifacts this process touches, above the OS locks.
//!
//! One [`Entry`] per id, found through a sharded map. An entry remembers the open lock file,
//! how many [`ReadGuard`](crate::ReadGuard)s share this process's one OS shared lock, whether
//! a writer or remover of this process holds the exclusive lock, and what was read from disk
//! (the metadata, valid while the lock file's generation is unchanged). So a `get` of an id
//! that is already read in this process takes no system call, and one of a recently read id
//! takes two (`flock` and a 8-byte `pread`).
//!
//! Idle entries (no guard, no waiter) are dropped when a shard grows, which closes their lock
//! files; at most [`IDLE_PER_SHARD`] idle entries per shard keep a file descriptor open.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use crate::{ArtifactId, Metadata, lockfile::LockFile};

const SHARDS: usize = 16;
/// Idle entries a shard keeps (each holds an open lock file).
const IDLE_PER_SHARD: usize = 8;

/// The in-process state of every id in use.
#[derive(Debug)]
pub(crate) struct Table {
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<ArtifactId, Arc<Entry>>,
    /// Prune when the map grows past this.
    prune_at: usize,
}

/// One id's in-process state.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: ArtifactId,
    state: Mutex<State>,
    /// Woken whenever the id's lock is released in this process (commit, abort, removal, last
    /// reader gone), for waiting callers.
    #[cfg(feature = "tokio")]
    pub(crate) changed: tokio::sync::Notify,
}

/// What an entry knows, under its mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The id's lock file, kept open between uses.
    pub(crate) lock: Option<LockFile>,
    /// Read guards sharing this process's shared OS lock.
    pub(crate) readers: u32,
    /// A writer or remover of this process holds the exclusive OS lock.
    pub(crate) exclusive: bool,
    /// The committed artifact as last read, with the lock generation it was read under.
    pub(crate) committed: Option<Committed>,
    /// The last use in this process.
    pub(crate) last_used: Option<SystemTime>,
    /// When the last-used time on disk was last written (or read).
    pub(crate) persisted: Option<SystemTime>,
}

/// A committed artifact as cached in memory.
#[derive(Debug, Clone)]
pub(crate) struct Committed {
    pub(crate) generation: u64,
    pub(crate) meta: Metadata,
    pub(crate) tree: Arc<std::path::Path>,
}

impl Entry {
    fn new(id: ArtifactId) -> Entry {
        Entry {
            id,
            state: Mutex::new(State::default()),
            #[cfg(feature = "tokio")]
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Locks the entry's state (a poisoned mutex is taken over: the state stays consistent
    /// because every update is a single assignment after the system calls succeed).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes waiters after the lock was released.
    pub(crate) fn notify(&self) {
        #[cfg(feature = "tokio")]
        self.changed.notify_waiters();
    }
}

impl Table {
    pub(crate) fn new() -> Table {
        Table { shards: std::array::from_fn(|_| Mutex::new(Shard::default())) }
    }

    /// The entry for `id`, made if needed.
    pub(crate) fn entry(&self, id: &ArtifactId) -> Arc<Entry> {
        let mut shard = self.shard(id);
        if let Some(entry) = shard.map.get(id) {
            return entry.clone();
        }
        if shard.map.len() >= shard.prune_at.max(IDLE_PER_SHARD) {
            // Only the map holds an idle entry; nobody can clone it without the shard lock.
            shard.map.retain(|_, entry| Arc::strong_count(entry) > 1);
            shard.prune_at = 2 * shard.map.len();
        }
        let entry = Arc::new(Entry::new(*id));
        shard.map.insert(*id, entry.clone());
        entry
    }

    /// The entry for `id` if this process has one.
    pub(crate) fn get(&self, id: &ArtifactId) -> Option<Arc<Entry>> {
        self.shard(id).map.get(id).cloned()
    }

    fn shard(&self, id: &ArtifactId) -> MutexGuard<'_, Shard> {
        // FNV-1a over the id: ids are usually hashes already, but need not be.
        let hash = id.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        self.shards[(hash as usize) % SHARDS].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_shared_and_idle_ones_pruned() {
        let table = Table::new();
        let held: Vec<Arc<Entry>> =
            (0..200u8).map(|i| table.entry(&ArtifactId::try_from(&[i][..]).unwrap())).collect();
        let id = ArtifactId::try_from(&[7u8][..]).unwrap();
        assert!(Arc::ptr_eq(&table.entry(&id), &held[7]));
        drop(held);
        for i in 0..=255u8 {
            table.entry(&ArtifactId::try_from(&[i, i][..]).unwrap());
        }
        let total: usize = table.shards.iter().map(|s| s.lock().unwrap().map.len()).sum();
        assert!(total <= 2 * SHARDS * IDLE_PER_SHARD, "{total} idle entries kept");
    }
}
