//! [`Activity`]: what the status page shows of the moment: the transfers in flight (with their
//! progress) and a bounded ring of recent warnings.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Instant, SystemTime},
};

use serde::Serialize;

/// How many warnings the ring keeps (the oldest go first).
pub(crate) const MAX_WARNINGS: usize = 32;
/// How many characters of an untrusted text (an id as the client sent it, a message) are kept.
const MAX_TEXT: usize = 256;
/// How many transfers `/status` lists (all are counted).
pub(crate) const MAX_LISTED: usize = 100;

/// Transfers in flight and recent warnings, shared by the middleware and the status handlers.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    next: AtomicU64,
    transfers: Mutex<BTreeMap<u64, Transfer>>,
    warnings: Mutex<VecDeque<Warning>>,
    store_error: Mutex<Option<Warning>>,
}

/// One transfer in flight.
#[derive(Debug)]
struct Transfer {
    kind: &'static str,
    id: String,
    /// Written out only when the status page lists it.
    peer: Option<SocketAddr>,
    total: Option<u64>,
    bytes: Arc<AtomicU64>,
    started: Instant,
}

/// A transfer as `/status` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransferView {
    /// `get` (a download from this server) or `put` (an upload to it).
    pub(crate) kind: &'static str,
    /// The artifact id as the client sent it.
    pub(crate) id: String,
    /// The client's address, when known.
    pub(crate) peer: Option<String>,
    /// Body bytes moved so far.
    pub(crate) bytes: u64,
    /// The body's length, when announced.
    pub(crate) total: Option<u64>,
    /// Seconds since the request came in.
    pub(crate) seconds: f64,
}

/// A warning the server logged, kept for the status page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Warning {
    /// When, in seconds since the Unix epoch.
    pub(crate) at: u64,
    /// The endpoint of the request it came from.
    pub(crate) endpoint: &'static str,
    /// What went wrong, as the client was told.
    pub(crate) message: String,
}

/// The marker a response carries when its refusal was logged as a warning (set by
/// `Reject::into_response`, taken by the middleware).
#[derive(Debug, Clone)]
pub(crate) struct Warned {
    pub(crate) message: String,
    /// The store failed.
    pub(crate) store: bool,
}

/// Removes its transfer from the list when dropped; counts the transfer's bytes.
#[derive(Debug)]
pub(crate) struct TransferGuard {
    activity: Arc<Activity>,
    kind: &'static str,
    key: u64,
    bytes: Arc<AtomicU64>,
}

impl TransferGuard {
    pub(crate) fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Relaxed);
    }

    /// `get` or `put`.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.activity.transfers.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// At most [`MAX_TEXT`] characters of `text`.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Activity {
    /// Lists a transfer until the returned guard is dropped.
    pub(crate) fn start(
        self: &Arc<Self>,
        kind: &'static str,
        id: &str,
        peer: Option<SocketAddr>,
        total: Option<u64>,
    ) -> TransferGuard {
        let key = self.next.fetch_add(1, Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        let transfer = Transfer {
            kind,
            id: bounded(id),
            peer,
            total,
            bytes: bytes.clone(),
            started: Instant::now(),
        };
        self.transfers.lock().unwrap_or_else(PoisonError::into_inner).insert(key, transfer);
        TransferGuard { activity: self.clone(), kind, key, bytes }
    }

    /// The transfers in flight (the oldest [`MAX_LISTED`]) and how many there are in all.
    pub(crate) fn transfers(&self) -> (Vec<TransferView>, usize) {
        let transfers = self.transfers.lock().unwrap_or_else(PoisonError::into_inner);
        let listed = transfers
            .values()
            .take(MAX_LISTED)
            .map(|t| TransferView {
                kind: t.kind,
                id: t.id.clone(),
                peer: t.peer.map(|peer| peer.to_string()),
                bytes: t.bytes.load(Relaxed),
                total: t.total,
                seconds: t.started.elapsed().as_secs_f64(),
            })
            .collect();
        (listed, transfers.len())
    }

    /// Keeps a warning, dropping the oldest beyond [`MAX_WARNINGS`].
    pub(crate) fn warn(&self, endpoint: &'static str, warned: &Warned) {
        let warning = Warning { at: now_unix(), endpoint, message: bounded(&warned.message) };
        if warned.store {
            *self.store_error.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(warning.clone());
        }
        let mut warnings = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        if warnings.len() == MAX_WARNINGS {
            warnings.pop_front();
        }
        warnings.push_back(warning);
    }

    /// The recent warnings, newest first.
    pub(crate) fn warnings(&self) -> Vec<Warning> {
        let warnings = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        warnings.iter().rev().cloned().collect()
    }

    /// The store's last failure.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn store_error(&self) -> Option<Warning> {
        self.store_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_ring_is_bounded_and_newest_first() {
        let activity = Activity::default();
        for i in 0..MAX_WARNINGS + 5 {
            let store = i == 3;
            activity.warn("get", &Warned { message: format!("w{i}"), store });
        }
        let warnings = activity.warnings();
        assert_eq!(warnings.len(), MAX_WARNINGS);
        assert_eq!(warnings[0].message, format!("w{}", MAX_WARNINGS + 4));
        assert_eq!(warnings[MAX_WARNINGS - 1].message, "w5");
        assert_eq!(activity.store_error().unwrap().message, "w3");
    }

    #[test]
    fn transfers_are_listed_while_their_guard_lives() {
        let activity = Arc::new(Activity::default());
        let long = "x".repeat(1000);
        let a = activity.start("get", &long, Some("127.0.0.1:1".parse().unwrap()), Some(10));
        let b = activity.start("put", "ab", None, None);
        a.add(4);
        a.add(3);
        let (listed, count) = activity.transfers();
        assert_eq!(count, 2);
        assert_eq!((listed[0].kind, listed[0].bytes, listed[0].total), ("get", 7, Some(10)));
        assert_eq!(listed[0].id.chars().count(), MAX_TEXT + 1, "untrusted ids are cut");
        assert_eq!(listed[1].id, "ab");
        drop(a);
        let (listed, count) = activity.transfers();
        assert_eq!((listed.len(), count), (1, 1));
        drop(b);
        assert_eq!(activity.transfers().1, 0);
    }
}
