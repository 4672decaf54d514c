//! `cargo xtask test`: the one command that says whether the workspace is fit to land.
//!
//! It first makes sure the tools the tests run are present (see [`prereq::TEST`]), installing
//! what is missing where it can; the tests then run under nextest with the `ci` profile of
//! `.config/nextest.toml`, whose per-test timeouts turn a hung test into a failure.
//!
//! Every step runs even when an earlier one failed, so one run reports everything that is
//! wrong; the summary at the end lists each step with its outcome and duration, and the exit
//! status is non-zero if any step failed.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{cargo, prereq, tidy};

/// The library crates, each of which must also build (and lint) without default features.
const LIBRARIES: &[&str] = &[
    "tarstream",
    "artifact-cache",
    "artifact-store",
    "artifact-http",
    "artifact-jobs",
    "artifact",
];

struct Outcome {
    name: String,
    ok: bool,
    took: Duration,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut quick = false;
    let mut filters: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--" => filters.extend(rest.by_ref().cloned()),
            other => bail!("test: unknown argument `{other}` (see `cargo xtask help`)"),
        }
    }

    // Before anything else: a missing tool would otherwise show up as failed tests much later.
    prereq::ensure(prereq::TEST)?;

    let mut outcomes = Vec::new();
    let mut step = |name: &str, cmd: &mut Command| {
        println!("\n==> {name}\n    {}", display(cmd));
        let start = Instant::now();
        let ok = match cmd.status() {
            Ok(status) => status.success(),
            Err(err) => {
                eprintln!("    could not start: {err}");
                false
            }
        };
        outcomes.push(Outcome { name: name.to_owned(), ok, took: start.elapsed() });
    };

    step("fmt", cargo().args(["fmt", "--all", "--check"]));
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    );
    if !quick {
        for lib in LIBRARIES {
            step(
                &format!("clippy {lib} --no-default-features"),
                cargo()
                    .args(["clippy", "--locked", "-p", lib, "--no-default-features", "--"])
                    .args(["-D", "warnings"]),
            );
        }
    }
    step(
        "tests (nextest)",
        cargo()
            .args(["nextest", "run", "--workspace", "--locked", "--no-fail-fast"])
            .args(["--profile", "ci"])
            .args(&filters),
    );
    step("doc tests", cargo().args(["test", "--workspace", "--locked", "--doc"]));
    if !quick {
        step(
            "rustdoc",
            cargo()
                .args(["doc", "--workspace", "--no-deps", "--locked"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        );
    }
    let start = Instant::now();
    println!("\n==> tidy");
    let tidy_ok = match tidy::check() {
        Ok(problems) if problems.is_empty() => true,
        Ok(problems) => {
            for problem in problems {
                eprintln!("    {problem}");
            }
            false
        }
        Err(err) => {
            eprintln!("    {err:#}");
            false
        }
    };
    outcomes.push(Outcome { name: "tidy".to_owned(), ok: tidy_ok, took: start.elapsed() });

    println!("\n==> summary");
    for outcome in &outcomes {
        let verdict = if outcome.ok { "ok  " } else { "FAIL" };
        println!("    {verdict} {:>7.1}s  {}", outcome.took.as_secs_f64(), outcome.name);
    }
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.name.as_str()).collect();
    if failed.is_empty() {
        println!("    all {} steps passed", outcomes.len());
        Ok(())
    } else {
        bail!("{} of {} steps failed: {}", failed.len(), outcomes.len(), failed.join(", "))
    }
}

fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}
