//! In-process single flight: concurrent downloads of one id into one cache share one transfer
//! and its outcome, success or failure. (`Cache::create_or_get` de-duplicates across processes;
//! this also spares the waiters of a failed transfer from each retrying it in turn.)

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use artifact_cache::ArtifactId;
use tokio::sync::watch;

use crate::Error;

type Key = (PathBuf, ArtifactId);
type Outcome = Option<Result<(), Error>>;

/// The transfers in flight, by cache root and id.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<Key, watch::Receiver<Outcome>>>>,
}

/// What [`Flights::join`] made of the caller.
pub(crate) enum Role {
    /// Do the transfer, then [`Ticket::finish`].
    Leader(Ticket),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Follower),
}

/// The leader's duty: report the outcome. Dropping it unreported (the leader was cancelled)
/// sends the followers back to [`Flights::join`].
pub(crate) struct Ticket {
    key: Key,
    map: Arc<Mutex<HashMap<Key, watch::Receiver<Outcome>>>>,
    tx: Option<watch::Sender<Outcome>>,
}

/// A follower's view of the leader.
pub(crate) struct Follower {
    rx: watch::Receiver<Outcome>,
}

impl Flights {
    pub(crate) fn join(&self, root: PathBuf, id: ArtifactId) -> Role {
        let key = (root, id);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(&key).filter(|rx| rx.has_changed().is_ok()) {
            return Role::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Role::Leader(Ticket { key, map: self.map.clone(), tx: Some(tx) })
    }
}

impl Ticket {
    /// Reports the outcome to the followers.
    pub(crate) fn finish(mut self, outcome: Result<(), Error>) {
        self.leave();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(outcome));
        }
    }

    fn leave(&self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&self.key);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.leave();
        }
    }
}

impl Follower {
    /// The leader's outcome, or `None` if it was cancelled before it had one.
    pub(crate) async fn wait(mut self) -> Outcome {
        match self.rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ArtifactId {
        "aa".parse().unwrap()
    }

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let flights = Flights::default();
        let Role::Leader(ticket) = flights.join("/c".into(), id()) else { panic!("first leads") };
        let Role::Follower(a) = flights.join("/c".into(), id()) else { panic!("second follows") };
        let Role::Leader(other) = flights.join("/other".into(), id()) else {
            panic!("another cache is another flight")
        };
        drop(other);
        ticket.finish(Err(Error::NotFound { id: id(), endpoints: vec![] }));
        assert!(a.wait().await.unwrap().unwrap_err().is_not_found());
        assert!(matches!(flights.join("/c".into(), id()), Role::Leader(_)), "the flight is over");
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_its_followers() {
        let flights = Flights::default();
        let Role::Leader(ticket) = flights.join("/c".into(), id()) else { panic!() };
        let Role::Follower(follower) = flights.join("/c".into(), id()) else { panic!() };
        drop(ticket);
        assert!(follower.wait().await.is_none());
        assert!(matches!(flights.join("/c".into(), id()), Role::Leader(_)));
    }
}
