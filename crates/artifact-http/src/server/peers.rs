//! [`PeerLimit`]: a cap on what one client address holds at once (connections, tar streams),
//! so that one host cannot take every slot from the others.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

/// Counts, per client IP address, what is held, up to a limit.
#[derive(Debug)]
pub(crate) struct PeerLimit {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit held by one address; given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerPermit {
    owner: Arc<PeerLimit>,
    ip: IpAddr,
}

impl PeerLimit {
    /// At most `limit` units per address (at least 1).
    pub(crate) fn new(limit: usize) -> Arc<PeerLimit> {
        Arc::new(PeerLimit { limit: limit.max(1), held: Mutex::default() })
    }

    /// One more unit for `ip`, or `None` when it holds the limit already. An IPv4 address
    /// mapped into IPv6 counts as the IPv4 address.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPermit> {
        let ip = ip.to_canonical();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerPermit { owner: self.clone(), ip })
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_limit_and_permits_come_back() {
        let limit = PeerLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_take(a).unwrap();
        let _second = limit.try_take(mapped).unwrap();
        assert!(limit.try_take(a).is_none(), "the mapped address counts as the same");
        let _other = limit.try_take(b).expect("another address is not affected");
        drop(first);
        let _again = limit.try_take(a).expect("a dropped permit comes back");
        drop(_again);
        drop(_second);
        assert!(!limit.held.lock().unwrap().contains_key(&a), "no entry left for an idle address");
    }
}
