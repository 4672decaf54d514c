//! A server over a fresh cache in a temp dir, driven without sockets.

use std::sync::OnceLock;

use artifact_http::ServerConfig;
use axum::{Router, body::Body, http::Request, response::Response};
use tower::ServiceExt;

/// One runtime for every input (building one per input would dominate the work).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    })
}

/// A scratch dir holding a cache at `scratch/inner`, and a router serving it; uploads are
/// limited to 4 MiB.
pub fn server() -> (tempfile::TempDir, Router) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = artifact_cache::Cache::open(scratch.path().join("inner")).expect("cache opens");
    let mut config = ServerConfig::default();
    config.max_upload_bytes = 4 << 20;
    (scratch, artifact_http::router(cache, config))
}

/// Sends `request` through `router`.
pub fn call(router: &Router, request: Request<Body>) -> Response {
    runtime().block_on(router.clone().oneshot(request)).expect("infallible")
}
