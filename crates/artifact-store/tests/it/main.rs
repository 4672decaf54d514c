//! Integration tests of artifact-store: against a real S3 server (s3s over s3s-fs, SigV4, on
//! `127.0.0.1:0`, behind the testkit's fault layer) and against a local directory.

mod file;
mod large;
mod s3;

use std::time::Duration;

use artifact_cache::{ArtifactId, Cache};
use artifact_store::{Store, StoreOptions};
use artifact_testkit::s3::S3Server;

/// Options for tests: quick retries.
fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry_backoff = Duration::from_millis(5);
    options.retries = 4;
    options
}

/// A store on `server` with `options` and the server's credentials.
fn s3_store(server: &S3Server, mut options: StoreOptions) -> Store {
    options.config = server.config();
    Store::open_with(&server.url(), options).expect("the test server's URL opens")
}

/// Commits a tree of `bytes` of pseudo-random file content under `id` in `cache`.
fn commit_large(cache: &Cache, id: &ArtifactId, bytes: usize) {
    let writer = cache.create(id).expect("a writer");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ bytes as u64;
    let content: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::create_dir(writer.path().join("big")).expect("a directory");
    std::fs::write(writer.path().join("big/blob"), &content).expect("a file");
    std::fs::write(writer.path().join("small"), b"small").expect("a file");
    writer.commit().expect("commit");
}
