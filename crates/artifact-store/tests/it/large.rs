//! A large object through a real S3 server: the process's memory stays within a few parts
//! whatever the object's size.
//!
//! The size is `ARTIFACT_STORE_LARGE_MIB` MiB (96 in the default suite; `cargo xtask soak`
//! runs it with 1024). The peak resident set of the test process (`VmHWM`, reset through
//! `/proc/self/clear_refs` before the download) must grow by less than the bound the options
//! promise, `part_size * parallelism`, plus a fixed allowance for the runtime and the
//! in-process S3 server. The peak is the process's, so it is checked only under nextest,
//! which runs each test in a process of its own.

use std::{
    fs,
    io::{BufWriter, Write},
    sync::atomic::Ordering::SeqCst,
};

use artifact_testkit::{
    cache::{TempCache, test_id},
    s3::S3Server,
};

use crate::{options, s3_store};

const MIB: u64 = 1024 * 1024;
/// What the process may grow by beyond the parts themselves (runtime, server, buffers).
const ALLOWANCE: u64 = 48 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_stays_within_its_memory_bound() {
    let mib: u64 =
        std::env::var("ARTIFACT_STORE_LARGE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    let server = S3Server::start().await;
    let (here, there) = (TempCache::new(), TempCache::new());
    let id = test_id(21);
    let writer = here.cache().create(&id).unwrap();
    let mut file = BufWriter::new(fs::File::create(writer.path().join("big")).unwrap());
    let mut block = vec![0u8; MIB as usize];
    for n in 0..mib {
        // Different bytes in every MiB, written a MiB at a time (never the whole in memory).
        block.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u64 ^ n.wrapping_mul(31)) as u8);
        file.write_all(&block).unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    drop(block);
    let digest = writer.commit().unwrap().digest;

    let mut upload_options = options();
    upload_options.part_size = 8 * MIB as usize;
    s3_store(&server, upload_options).upload(here.cache(), &id).await.unwrap();

    let mut download_options = options();
    download_options.part_size = 8 * MIB as usize;
    download_options.parallelism = 4;
    let bound = download_options.part_size as u64 * download_options.parallelism as u64;
    let store = s3_store(&server, download_options);
    let before = reset_peak_kib() * 1024;
    let reader = store.download(there.cache(), &id).await.unwrap();
    let peak = peak_kib() * 1024;

    assert_eq!(reader.metadata().digest, digest);
    assert_eq!(fs::metadata(reader.path().join("big")).unwrap().len(), mib * MIB);
    assert_eq!(store.stats().parts_in_flight.load(SeqCst), 0);
    let grew = peak.saturating_sub(before);
    eprintln!("a {mib} MiB download grew the peak resident set by {} MiB", grew / MIB);
    if std::env::var_os("NEXTEST").is_none() {
        // Other tests share this process under `cargo test`: their memory is not ours.
        eprintln!("not under nextest: the peak ({} MiB of growth) is not checked", grew / MIB);
        return;
    }
    assert!(
        grew < bound + ALLOWANCE,
        "a {mib} MiB download grew the process by {} MiB (bound {} MiB + {} MiB)",
        grew / MIB,
        bound / MIB,
        ALLOWANCE / MIB
    );
}

/// Resets the peak resident set to the current one and returns it (KiB).
fn reset_peak_kib() -> u64 {
    fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM through clear_refs");
    status_kib("VmRSS:")
}

/// The peak resident set since the last reset (KiB).
fn peak_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find_map(|l| l.strip_prefix(field)).expect("the field");
    line.trim().trim_end_matches("kB").trim().parse().expect("a number of kB")
}
