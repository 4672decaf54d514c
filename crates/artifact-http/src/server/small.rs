//! [`SmallStreams`]: the rendered tar streams of small artifacts, kept in memory within a byte
//! budget, least recently used out first.
//!
//! An entry is keyed by the artifact's id and checked against its tree digest and commit time
//! on every use: the stream is a function of the tree, which the digest names, and an artifact
//! removed and added again under the same id has a new commit time, so a stale entry is never
//! served (it is dropped when met). The headers of the answer are built once, with the entry,
//! and so are checked with it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::SystemTime,
};

use artifact_cache::{ArtifactId, Metadata, ReadGuard};
use axum::{body::Bytes, http::HeaderMap};
use tarstream::Digest;

/// A kept stream, with the headers of the answer that sends it whole.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) stream: Bytes,
    /// Formatting the digest, the tag and the counts took half the work of a request answered
    /// from memory; a clone of this map takes a fraction of that.
    pub(crate) headers: Arc<HeaderMap>,
}

impl Kept {
    /// What the entry holds in memory, as charged to the budget: the stream, and each header
    /// as HTTP/2 counts it (name, value and 32 bytes).
    fn charge(&self) -> u64 {
        let headers: usize =
            self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        (self.stream.len() + headers) as u64
    }
}

/// The streams kept, and their counters.
#[derive(Debug)]
pub(crate) struct SmallStreams {
    /// The most bytes of streams kept at once.
    budget: u64,
    /// The longest stream kept.
    max_stream: u64,
    lru: Mutex<Lru>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Lru {
    map: HashMap<ArtifactId, Slot>,
    /// Use ticks, oldest first.
    order: BTreeMap<u64, ArtifactId>,
    tick: u64,
    /// The streams' bytes.
    bytes: u64,
    /// What the budget holds: the streams and their headers.
    charged: u64,
}

#[derive(Debug)]
struct Slot {
    digest: Digest,
    created: SystemTime,
    kept: Kept,
    charge: u64,
    tick: u64,
}

/// What `/metrics` reports of the kept streams.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SmallGauges {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) bytes: u64,
    pub(crate) streams: u64,
    pub(crate) budget: u64,
}

impl SmallStreams {
    /// `None` when `budget` is 0 (nothing is kept).
    pub(crate) fn new(budget: u64, max_stream: u64) -> Option<SmallStreams> {
        (budget > 0 && max_stream > 0).then(|| SmallStreams {
            budget,
            max_stream: max_stream.min(budget),
            lru: Mutex::new(Lru::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Whether a stream of `len` bytes is small enough to keep.
    pub(crate) fn fits(&self, len: u64) -> bool {
        len <= self.max_stream
    }

    /// The kept stream of the artifact that `meta` describes, counted as a hit or a miss
    /// (only for an artifact whose file bytes alone fit: a larger one is never kept).
    pub(crate) fn get(&self, meta: &Metadata) -> Option<Kept> {
        if !self.fits(meta.size) {
            return None;
        }
        let found = self.lock().get(meta);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// Keeps `kept`, the whole tar stream of the artifact that `meta` describes and its
    /// answer's headers, evicting the least recently used streams to stay within the budget;
    /// a stream over the size limit, or one that the budget cannot hold with its headers, is
    /// not kept.
    pub(crate) fn insert(&self, meta: &Metadata, kept: Kept) {
        let charge = kept.charge();
        if !self.fits(kept.stream.len() as u64) || charge > self.budget {
            return;
        }
        let mut lru = self.lock();
        lru.remove(&meta.id);
        while lru.charged + charge > self.budget {
            let Some((_, oldest)) = lru.order.pop_first() else { break };
            if let Some(slot) = lru.map.remove(&oldest) {
                lru.bytes -= slot.kept.stream.len() as u64;
                lru.charged -= slot.charge;
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.order.insert(tick, meta.id);
        lru.bytes += kept.stream.len() as u64;
        lru.charged += charge;
        let slot = Slot { digest: meta.digest, created: meta.created, kept, charge, tick };
        lru.map.insert(meta.id, slot);
    }

    /// The whole stream of the artifact that `guard` holds, rendered from its files, when its
    /// `index` says that it is short enough to keep; `None` (logged) when the files do not give
    /// the digest recorded at commit.
    pub(crate) fn render(&self, guard: &ReadGuard, index: &tarstream::Index) -> Option<Bytes> {
        let len = index.stream_len();
        if !self.fits(len) {
            return None;
        }
        let mut out = Vec::with_capacity(len as usize);
        match tarstream::send(guard.path(), &mut out) {
            Ok(summary) if summary.digest == guard.metadata().digest && out.len() as u64 == len => {
                Some(Bytes::from(out))
            }
            Ok(summary) => {
                tracing::warn!(
                    expected = %guard.metadata().digest,
                    actual = %summary.digest,
                    "the artifact's files do not give its digest: not kept in memory"
                );
                None
            }
            Err(err) => {
                tracing::warn!(
                    error = %crate::error::error_chain(&err),
                    "cannot render the artifact's stream: not kept in memory"
                );
                None
            }
        }
    }

    /// Drops what is kept of `id` (removed, or found absent).
    pub(crate) fn forget(&self, id: &ArtifactId) {
        self.lock().remove(id);
    }

    pub(crate) fn gauges(&self) -> SmallGauges {
        let lru = self.lock();
        SmallGauges {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            bytes: lru.bytes,
            streams: lru.map.len() as u64,
            budget: self.budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lru {
    fn get(&mut self, meta: &Metadata) -> Option<Kept> {
        let slot = self.map.get(&meta.id)?;
        if slot.digest != meta.digest || slot.created != meta.created {
            // Another artifact under the same id since: never serve the old stream.
            self.remove(&meta.id);
            return None;
        }
        let old = slot.tick;
        self.tick += 1;
        let tick = self.tick;
        self.order.remove(&old);
        self.order.insert(tick, meta.id);
        let slot = self.map.get_mut(&meta.id).expect("found above");
        slot.tick = tick;
        Some(slot.kept.clone())
    }

    fn remove(&mut self, id: &ArtifactId) {
        if let Some(slot) = self.map.remove(id) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.kept.stream.len() as u64;
            self.charged -= slot.charge;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(id: &str, digest_byte: u8, created_secs: u64) -> Metadata {
        let dir = tempfile::tempdir().unwrap();
        let cache = artifact_cache::Cache::open(dir.path().join("c")).unwrap();
        let id: ArtifactId = id.parse().unwrap();
        let writer = cache.create(&id).unwrap();
        std::fs::write(writer.path().join("f"), [digest_byte]).unwrap();
        let mut meta = writer.commit().unwrap();
        meta.created = SystemTime::UNIX_EPOCH + Duration::from_secs(created_secs);
        meta
    }

    /// A stream with no headers: charged its length alone.
    fn kept(stream: impl Into<Bytes>) -> Kept {
        Kept { stream: stream.into(), headers: Arc::default() }
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let small = SmallStreams::new(100, 60).unwrap();
        let (a, b, c) = (meta("0a", 1, 1), meta("0b", 2, 1), meta("0c", 3, 1));
        small.insert(&a, kept(vec![1; 40]));
        small.insert(&b, kept(vec![2; 40]));
        assert!(small.get(&a).is_some(), "a is now the most recent");
        small.insert(&c, kept(vec![3; 40]));
        assert!(small.get(&b).is_none(), "b was the least recently used");
        assert_eq!(small.get(&a).unwrap().stream[..], [1; 40]);
        assert_eq!(small.get(&c).unwrap().stream[..], [3; 40]);
        let gauges = small.gauges();
        assert_eq!((gauges.bytes, gauges.streams, gauges.hits, gauges.misses), (80, 2, 3, 1));
        // Over the size limit: not kept.
        small.insert(&b, kept(vec![2; 61]));
        assert!(small.get(&b).is_none());
        small.forget(&a.id);
        assert_eq!(small.gauges().bytes, 40);
    }

    #[test]
    fn another_artifact_under_the_same_id_is_a_miss() {
        let small = SmallStreams::new(1000, 1000).unwrap();
        let old = meta("0d", 1, 1);
        small.insert(&old, kept(&b"old"[..]));
        let same_tree_later = meta("0d", 1, 2);
        assert!(small.get(&same_tree_later).is_none(), "a new commit time");
        small.insert(&old, kept(&b"old"[..]));
        let other_tree = meta("0d", 9, 1);
        assert!(small.get(&other_tree).is_none(), "another digest");
        assert_eq!(small.gauges().bytes, 0, "the stale stream was dropped");
        assert!(SmallStreams::new(0, 1000).is_none());
    }

    #[test]
    fn the_headers_are_charged_to_the_budget() {
        let small = SmallStreams::new(200, 100).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-artifact-digest", "0123456789".parse().unwrap());
        let (a, b) = (meta("0e", 1, 1), meta("0f", 2, 1));
        let with_headers =
            |byte| Kept { stream: vec![byte; 50].into(), headers: Arc::new(headers.clone()) };
        // 50 bytes of stream and 17 + 10 + 32 of header: two do not fit in 200.
        small.insert(&a, with_headers(1));
        small.insert(&b, with_headers(2));
        assert!(small.get(&a).is_none(), "evicted for b");
        let got = small.get(&b).unwrap();
        assert_eq!(got.headers["x-artifact-digest"], "0123456789", "kept with the stream");
        assert_eq!(small.gauges().bytes, 50, "the gauge counts the streams");
        // A stream that fits the size limit, but not the budget with its headers: not kept,
        // and nothing is evicted for it.
        let big = SmallStreams::new(120, 100).unwrap();
        big.insert(&a, with_headers(3));
        big.insert(&b, Kept { stream: vec![4; 90].into(), headers: Arc::new(headers.clone()) });
        assert!(big.get(&b).is_none());
        assert_eq!(big.get(&a).unwrap().stream[..], [3; 50]);
    }
}
