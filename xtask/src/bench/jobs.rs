//! `cargo xtask bench jobs`: 1,000 small pull jobs end to end against `download_many` of the
//! same artifacts, and the rate limiter's accuracy in wall time.
//!
//! Runs the `jobs` bench binary of `artifact-jobs` (`crates/artifact-jobs/benches/jobs.rs`,
//! built with `cargo bench`), which prints `key<TAB>value<TAB>unit` lines, and turns them into
//! the Markdown section of `docs/benchmarks.md`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::cargo;

type Results = BTreeMap<String, f64>;

pub(crate) fn run() -> anyhow::Result<String> {
    println!("bench jobs: running `cargo bench -p artifact-jobs --bench jobs`");
    let output = cargo()
        .args(["bench", "--quiet", "-p", "artifact-jobs", "--bench", "jobs"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo bench")?;
    if !output.status.success() {
        bail!("the jobs benchmark failed ({})", output.status);
    }
    let text = String::from_utf8(output.stdout).context("benchmark output is not UTF-8")?;
    print!("{text}");
    Ok(section(&parse(&text)?))
}

fn parse(text: &str) -> anyhow::Result<Results> {
    let mut results = Results::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            bail!("unexpected benchmark output line {line:?}");
        };
        let value = value.parse().with_context(|| format!("in line {line:?}"))?;
        results.insert(key.to_owned(), value);
    }
    Ok(results)
}

fn section(results: &Results) -> String {
    let get = |key: &str| results.get(key).copied().unwrap_or(f64::NAN);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = String::from("## jobs\n\n");
    out.push_str(
        "Command: `cargo xtask bench jobs`, which runs `cargo bench -p artifact-jobs --bench jobs` \
         (source: `crates/artifact-jobs/benches/jobs.rs`).\n",
    );
    out.push_str(&format!("Machine: {cpus} CPUs; the source is a test server on loopback.\n\n"));
    out.push_str("| measure | value |\n|---|---|\n");
    out.push_str(&format!(
        "| {:.0} pull jobs of small artifacts, 8 at a time | {:.0} jobs/s |\n",
        get("jobs"),
        get("jobs_per_second")
    ));
    out.push_str(&format!(
        "| the same with `download_many`, 8 at a time | {:.0} downloads/s |\n",
        get("direct_per_second")
    ));
    out.push_str(&format!(
        "| the scheduler's cost per job (the difference) | {:.0} µs |\n",
        get("overhead_per_job_us")
    ));
    out.push_str(&format!("| submitting them in one call | {:.1} ms |\n", get("submit_ms")));
    out.push_str(&format!(
        "| a 64 MiB pull limited to {:.0} MiB/s, measured in wall time | {:.2} MiB/s ({:+.1}%) |\n",
        get("rate_limit"),
        get("rate_measured"),
        get("rate_error")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_becomes_a_table() {
        let text = "jobs\t1000\tjobs\njobs_per_second\t490\tjobs/s\nrate_error\t+0.9\t%\n";
        let section = section(&parse(text).unwrap());
        assert!(
            section.contains("| 1000 pull jobs of small artifacts, 8 at a time | 490 jobs/s |"),
            "{section}"
        );
        assert!(section.contains("(+0.9%)"), "{section}");
        assert!(parse("nonsense").is_err());
    }
}
