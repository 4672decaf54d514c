//! Project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! - `cargo xtask test`: everything that must pass before a change lands (the README's test
//!   command and what `.ci/run` calls).
//! - `cargo xtask bench [tarstream|cache|http|store|jobs]...`: the benchmark suite, side by
//!   side with its anchors; writes its tables into `docs/benchmarks.md`.
//! - `cargo xtask tidy`: the repository's layout rules (also run by `test`, and as a `#[test]`).
//! - `cargo xtask soak`: the cache's crash, stress and model tests, hundreds of rounds long,
//!   and the store's 1 GiB download.
//! - `cargo xtask fuzz [--seconds N] [TARGET]...`: the cargo-fuzz targets of `fuzz/`.
//! - `cargo xtask mutants [CRATE]...`: mutation testing with cargo-mutants.

mod bench;
mod fuzz;
mod mutants;
mod prereq;
mod soak;
mod test;
mod tidy;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  test [--quick] [-- <test filter>...]
                      installs missing prerequisites (bsdtar, GNU tar, python3, curl,
                      kill, cargo-nextest) where it can, then fmt check, clippy
                      (-D warnings), every library without default
                      features, all tests (nextest), doc tests, rustdoc
                      (-D warnings) and tidy; --quick leaves out the builds without
                      default features and rustdoc
  bench [SUITE]...    run benchmarks side by side with their anchors and write
                      docs/benchmarks.md; SUITE is tarstream, cache, http, store or jobs
                      (default: all)
  tidy                check the repository's layout rules
  soak [--rounds N] [--stress-secs S] [--cases N] [--seed N]
                      the cache's crash test for N rounds of killed processes (300),
                      its stress test for S seconds (60) and its model test for N cases
                      (1000), then the store's download of a 1 GiB object under its
                      memory bound; minutes, not part of `test`
  fuzz [--seconds N] [TARGET]... [-- <libFuzzer flag>...]
                      seed the corpora and run each fuzz target of fuzz/ for N seconds
                      (default 60) on nightly; installs cargo-fuzz if missing
  mutants [CRATE]... [-- <cargo mutants flag>...]
                      mutation testing with cargo-mutants and nextest (default:
                      tarstream artifact-cache); installs cargo-mutants if missing
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("tidy") => tidy::run(),
        Some("soak") => soak::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("mutants") => mutants::run(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root, using the same cargo that runs us.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}
