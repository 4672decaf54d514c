//! `tarstream::receive` of arbitrary bytes: no panic, nothing written outside the destination,
//! a received tree digests as reported, work bounded by the receive limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::receive_contained(data));
