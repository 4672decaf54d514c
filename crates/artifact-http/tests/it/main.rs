//! Integration tests of `artifact-http`, one binary (see STYLE.md, "Tests"): the real router
//! on `127.0.0.1:0` (artifact-testkit's `TestServer`), driven by the real client and by raw
//! HTTP.

#![cfg(all(feature = "server", feature = "client"))]

mod abuse;
mod concurrency;
mod faults;
mod hostile;
mod hot;
mod interop;
mod ranges;
mod resume;
mod scrub;
mod seed;
mod server;
mod small;
mod sources;
mod status;
#[cfg(feature = "store")]
mod store;
mod support;
#[cfg(feature = "tls")]
mod tls;
mod transfer;
mod upload;
