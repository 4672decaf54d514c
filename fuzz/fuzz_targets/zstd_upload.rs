//! A zstd-encoded upload of arbitrary bytes through the server's decoder into `receive`:
//! no panic, no 500, nothing written outside the cache, bounded memory (`-rss_limit_mb`).
#![no_main]

use axum::{body::Body, http::Request};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "common.rs"]
mod common;
#[path = "server.rs"]
mod server;

fuzz_target!(|data: &[u8]| {
    let (scratch, router) = server::server();
    let request = Request::put("/artifact?id=00ff")
        .header("content-encoding", "zstd")
        .body(Body::from(data.to_vec()))
        .expect("request");
    let response = server::call(&router, request);
    let status = response.status().as_u16();
    assert!(status == 201 || (400..500).contains(&status), "PUT answered {status}");
    common::assert_only_inner(scratch.path());
});
