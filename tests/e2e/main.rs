//! End-to-end tests across the crates and the `artifact` binary.

mod bin;
mod pack;
