//! The ranges section of `cargo xtask bench http`: a resumed download and a download from
//! many sources, measured by artifact-http's `bench_ranges` example (release build), which
//! serves one artifact from artifact-testkit's `TestServer`s over loopback.
//!
//! - The artifact (`$ARTIFACT_BENCH_RANGES_MIB` MiB of random data, default 1024) uncut, then
//!   cut once at 50% and at 90% of its stream: time, and the bytes the servers sent.
//! - From 1, 2 and 3 sources, each throttled by the fault layer to the same rate
//!   (`$ARTIFACT_BENCH_RANGES_RATE` MiB/s, default 64): time and throughput.

use std::{env, path::Path};

use anyhow::{Context, ensure};

use super::tarstream::machine;
use crate::cargo;

/// The name `$ARTIFACT_BENCH_ONLY` matches for this section.
pub(crate) const PHASE: &str = "ranges (resume, sources)";

/// One measured case.
struct Case {
    name: String,
    secs: f64,
    sent: u64,
    len: u64,
}

/// Runs the measurement and returns the Markdown section.
pub(crate) fn run(base: &Path) -> anyhow::Result<String> {
    println!("bench http: building and running the ranges measurement");
    let mib = env::var("ARTIFACT_BENCH_RANGES_MIB").unwrap_or_else(|_| "1024".into());
    let rate = env::var("ARTIFACT_BENCH_RANGES_RATE").unwrap_or_else(|_| "64".into());
    let out = cargo()
        .args(["run", "--quiet", "--release", "--locked", "-p", "artifact-http"])
        .args(["--example", "bench_ranges"])
        .env("ARTIFACT_BENCH_RANGES_MIB", &mib)
        .env("ARTIFACT_BENCH_RANGES_RATE", &rate)
        .env("ARTIFACT_BENCH_DIR", base)
        .output()
        .context("running the bench_ranges example")?;
    ensure!(out.status.success(), "bench_ranges failed: {}", String::from_utf8_lossy(&out.stderr));
    let cases = parse(&String::from_utf8_lossy(&out.stdout))?;
    Ok(report(&cases, &mib, &rate, base))
}

fn parse(text: &str) -> anyhow::Result<Vec<Case>> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            ensure!(fields.len() == 4, "bench_ranges printed {line:?}");
            Ok(Case {
                name: fields[0].to_owned(),
                secs: fields[1].parse()?,
                sent: fields[2].parse()?,
                len: fields[3].parse()?,
            })
        })
        .collect()
}

fn report(cases: &[Case], mib: &str, rate: &str, base: &Path) -> String {
    let find = |name: &str| cases.iter().find(|c| c.name == name);
    let mut out = String::new();
    out.push_str("### Resumed and many-source downloads\n\n");
    out.push_str(&format!(
        "Measured by `cargo xtask bench http` (`ARTIFACT_BENCH_ONLY=ranges` runs only this part) on {}: one artifact of {mib} MiB of random data, served by artifact-testkit's `TestServer` (the real router behind the fault layer) and fetched by a `Downloader` into a fresh cache in `{}`, all in one process over 127.0.0.1; one run each, after one to warm up.\n\n",
        machine(),
        base.display(),
    ));
    out.push_str("| case | time | bytes sent by the servers | sent / stream | time / uncut |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    let uncut = find("uncut").map_or(f64::NAN, |c| c.secs);
    for case in cases.iter().filter(|c| !c.name.contains("source") && c.name != "warm-up") {
        out.push_str(&format!(
            "| {} | {:.2} s | {} | {:.3} | {:.2} |\n",
            case.name,
            case.secs,
            case.sent,
            case.sent as f64 / case.len as f64,
            case.secs / uncut,
        ));
    }
    out.push_str(&format!(
        "\nEach source throttled by the fault layer to {rate} MiB/s (`Fault::Rate`); 8 MiB chunks, many-source threshold 64 MiB:\n\n"
    ));
    out.push_str("| sources | time | throughput | vs 1 source |\n|---:|---:|---:|---:|\n");
    let one = find("1 source(s)").map_or(f64::NAN, |c| c.secs);
    for case in cases.iter().filter(|c| c.name.contains("source")) {
        let n = case.name.split(' ').next().unwrap_or("?");
        out.push_str(&format!(
            "| {n} | {:.2} s | {:.1} MiB/s | {:.2}x |\n",
            case.secs,
            case.len as f64 / case.secs / (1 << 20) as f64,
            one / case.secs,
        ));
    }
    out
}
