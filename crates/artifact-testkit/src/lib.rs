//! Fixtures, fakes and fault injection for the tests of the artifact crates.
//!
//! - [`tree`]: build directory trees ([`TreeBuilder`]), read them back ([`snapshot`]) and
//!   compare them ([`assert_same_tree`]).
//! - [`strategy`]: proptest strategies for random trees ([`tree_spec`]).
//! - [`fault`]: readers and writers that fail, end early, flip bits, or are slow
//!   ([`Faults`]).
//! - [`watchdog`]: run a test body with a time limit.
//! - [`cache`]: a temporary cache ([`cache::TempCache`]) and artifacts with known content.
//! - [`server`]: the real HTTP router on `127.0.0.1:0` behind a fault-injecting layer
//!   ([`server::TestServer`]); [`peer`]: peers that stall, talk garbage or hang up
//!   ([`peer::FakePeer`]); [`seed`]: a fake of the original seed server (bare tar answers, 400
//!   for a missing id).
//! - `s3` (feature `s3`): a real S3 server on `127.0.0.1:0` behind the same fault layer
//!   (`s3::S3Server`).

pub mod cache;
pub mod fault;
pub mod peer;
#[cfg(feature = "s3")]
pub mod s3;
pub mod seed;
pub mod server;
pub mod strategy;
pub mod tree;
mod watchdog;

pub use fault::{Faults, FaultyAsyncRead, FaultyRead, FaultyWrite};
pub use strategy::{EntrySpec, TreeSpec, tree_spec, tree_spec_with};
pub use tree::{Node, Snapshot, TreeBuilder, assert_same_tree, modes, snapshot};
pub use watchdog::watchdog;
