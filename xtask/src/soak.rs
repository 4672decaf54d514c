//! `cargo xtask soak`: the cache's crash, stress and model tests, run far longer than the
//! default suite runs them.
//!
//! The default suite keeps each of these tests to a few seconds; a soak turns up the knobs
//! each test reads from its environment:
//!
//! | variable | test | default in the suite | default here |
//! |---|---|---|---|
//! | `ARTIFACT_CRASH_ROUNDS` | `crash::` (writer and remover processes killed with SIGKILL) | 12 | 300 |
//! | `ARTIFACT_CRASH_SEED` | `crash::` (where the kills land) | 1 | the clock |
//! | `ARTIFACT_STRESS_MS` | `stress::` (threads and processes on one root) | 1500 | 60000 |
//! | `PROPTEST_CASES` | `model::` (operations against a model) | 48 | 1000 |
//! | `ARTIFACT_STORE_LARGE_MIB` | artifact-store's `large::` (peak memory of a download) | 96 | 1024 |
//!
//! It runs them with `cargo test` (the test profile the suite already built, one test at a
//! time; their cost is processes and system calls, not code), which has no per-test time
//! limit: the tests' own watchdogs scale with the rounds and durations asked for. The store's
//! large download runs under nextest, which gives it a process of its own to measure.

use std::{
    process::Command,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use crate::cargo;

const USAGE: &str = "usage: cargo xtask soak [--rounds N] [--stress-secs S] [--cases N] [--seed N]";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut rounds: u64 = 300;
    let mut stress_secs: u64 = 60;
    let mut cases: u64 = 1000;
    let mut seed: Option<u64> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            let value = rest.next().with_context(|| format!("soak: {name} needs a value"))?;
            value.parse().with_context(|| format!("soak: {name} `{value}` is not a number"))
        };
        match arg.as_str() {
            "--rounds" => rounds = value("--rounds")?,
            "--stress-secs" => stress_secs = value("--stress-secs")?,
            "--cases" => cases = value("--cases")?,
            "--seed" => seed = Some(value("--seed")?),
            other => bail!("soak: unknown argument `{other}`\n{USAGE}"),
        }
    }
    // A fresh seed each run explores new kill points; it is printed so a failure can be
    // replayed with `--seed`.
    let seed = match seed {
        Some(seed) => seed,
        None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs()),
    };
    println!(
        "soak: {rounds} crash rounds (seed {seed}), {stress_secs} s of stress, {cases} model cases"
    );
    let start = Instant::now();
    let mut cmd = cargo();
    cmd.args(["test", "--locked", "-p", "artifact-cache", "--test", "integration"])
        .args(["--", "crash::", "stress::", "model::", "--test-threads=1", "--nocapture"])
        .env("ARTIFACT_CRASH_ROUNDS", rounds.to_string())
        .env("ARTIFACT_CRASH_SEED", seed.to_string())
        .env("ARTIFACT_STRESS_MS", (stress_secs * 1000).to_string())
        .env("PROPTEST_CASES", cases.to_string());
    let status = spawn(&mut cmd)?;
    let took = start.elapsed().as_secs();
    if !status.success() {
        bail!("soak failed after {took} s (replay with `cargo xtask soak --seed {seed}`)");
    }
    let mut large = cargo();
    large
        .args(["nextest", "run", "--locked", "-p", "artifact-store", "--no-fail-fast"])
        .args(["-E", "test(large::)", "--no-capture"])
        .env("ARTIFACT_STORE_LARGE_MIB", "1024");
    let status = spawn(&mut large)?;
    let took = start.elapsed().as_secs();
    if !status.success() {
        bail!("soak: the store's 1 GiB download failed after {took} s");
    }
    println!("soak: passed in {took} s");
    Ok(())
}

fn spawn(cmd: &mut Command) -> anyhow::Result<std::process::ExitStatus> {
    println!("    {cmd:?}");
    cmd.status().context("soak: cannot run cargo")
}
