//! End-to-end tests across the crates and the `artifact` binary.
//!
//! Each module drives the real `artifact` program (found by [`support::artifact`]) and the
//! library crates together, the way a build system or CI runner would.

mod cli;
mod docs;
mod jobs;
mod local;
mod net;
mod out;
mod pack;
mod scrub;
mod seed;
mod store;
mod support;
mod transport;
