//! Fixtures, fakes and fault injection for the tests of the artifact crates.
//!
//! NOTE: under construction (issues 2-4).

pub mod peer;
pub mod server;
