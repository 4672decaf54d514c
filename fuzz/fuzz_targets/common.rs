//! What every target that receives a stream checks.

use std::{fs, path::Path};

use tarstream::ReceiveOptions;

/// Limits that keep one input's work and disk use small; libFuzzer's `-rss_limit_mb` bounds
/// memory on top.
pub fn options() -> ReceiveOptions {
    ReceiveOptions::default().max_bytes(4 << 20).max_entries(1_000).max_path_len(1024)
}

/// Receives `stream` into `scratch/inner` and checks that nothing appeared beside it, whatever
/// the outcome: the stream may only write inside its destination.
pub fn receive_contained(stream: &[u8]) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let inner = scratch.path().join("inner");
    let result = tarstream::receive_with(&inner, stream, &options());
    assert_only_inner(scratch.path());
    if let Ok(summary) = result {
        // What was received walks back to the same digest.
        let walked = tarstream::digest_dir(&inner).expect("received tree walks");
        assert_eq!(walked.digest, summary.digest);
    }
}

/// `dir` holds nothing but (possibly) `inner`.
pub fn assert_only_inner(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read scratch dir") {
        let name = entry.expect("dir entry").file_name();
        assert_eq!(name, "inner", "the stream wrote outside its destination");
    }
}
