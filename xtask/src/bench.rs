//! `cargo xtask bench`: benchmark suites that run side by side with their anchors.
//!
//! Each suite lives in `bench/<suite>.rs`, measures in one run against its anchor (GNU tar,
//! nginx + curl, ...), and returns a Markdown section that replaces the suite's part of
//! `docs/benchmarks.md` (between `<!-- bench:<suite> -->` and `<!-- /bench:<suite> -->`).

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail, ensure};

use crate::project_root;

mod cache;
mod flame;
mod http;
mod http_ranges;
mod http_requests;
mod jobs;
mod store;
mod tarstream;

const SUITES: &[&str] = &["tarstream", "cache", "http", "store", "jobs"];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let suites: Vec<&str> =
        if args.is_empty() { SUITES.to_vec() } else { args.iter().map(String::as_str).collect() };
    for suite in &suites {
        if !SUITES.contains(suite) {
            bail!("bench: unknown suite `{suite}` (known: {})", SUITES.join(", "));
        }
    }
    for suite in suites {
        match run_suite(suite)? {
            Some(section) => write_section(suite, section)?,
            None => println!("bench: a partial run of `{suite}`; docs/benchmarks.md left as it is"),
        }
    }
    Ok(())
}

/// Runs one suite and returns its Markdown section (`None` for a partial run, which must not
/// replace the published numbers).
fn run_suite(suite: &str) -> anyhow::Result<Option<String>> {
    match suite {
        "tarstream" => tarstream::run(),
        "cache" => cache::run().map(Some),
        "http" => http::run(),
        "store" => store::run(),
        "jobs" => jobs::run().map(Some),
        _ => bail!("bench: the `{suite}` suite is not written yet"),
    }
}

/// Replaces the suite's section of `docs/benchmarks.md` (appending it if absent).
fn write_section(suite: &str, body: String) -> anyhow::Result<()> {
    let path = project_root().join("docs/benchmarks.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let (open, close) = (format!("<!-- bench:{suite} -->"), format!("<!-- /bench:{suite} -->"));
    let block = format!("{open}\n{}\n{close}", body.trim_end());
    let text = match (text.find(&open), text.find(&close)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{block}{}", &text[..start], &text[end + close.len()..])
        }
        _ => format!("{}\n{block}\n", text.trim_end()),
    };
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("bench: wrote the `{suite}` section of {}", path.display());
    Ok(())
}

/// What every suite reads from its environment.
pub(crate) struct Settings {
    /// Measured runs after the warm-up (`$ARTIFACT_BENCH_RUNS`, default 5).
    pub(crate) runs: usize,
    /// Where trees and servers live (`$ARTIFACT_BENCH_DIR`, default `/dev/shm`: tmpfs).
    pub(crate) base: PathBuf,
    /// A substring of the workloads to run (`$ARTIFACT_BENCH_ONLY`); a partial run when set.
    pub(crate) only: String,
}

impl Settings {
    /// Reads the environment and checks that `/usr/bin/time` (peak RSS) is there.
    pub(crate) fn from_env() -> anyhow::Result<Settings> {
        ensure!(
            Path::new("/usr/bin/time").is_file(),
            "bench: /usr/bin/time is needed (Debian: apt-get install time)"
        );
        Ok(Settings {
            runs: env::var("ARTIFACT_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5),
            base: env::var_os("ARTIFACT_BENCH_DIR")
                .map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from),
            only: env::var("ARTIFACT_BENCH_ONLY").unwrap_or_default(),
        })
    }
}
