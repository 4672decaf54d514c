//! `cargo xtask mutants`: mutation testing with cargo-mutants, tests run by nextest.
//!
//! Each mutant is a small change to the code (a function returning a default, a `<` made
//! `<=`, a `&&` made `||`); a mutant the tests do not notice ("missed") points at untested
//! behaviour. CPU heavy (a build and a test run per mutant), so not part of `cargo xtask test`;
//! `docs/testing.md` records the last results and explains the survivors.

use anyhow::bail;

use crate::{cargo, prereq};

/// The crates mutated when none is named.
const DEFAULT_CRATES: &[&str] = &["tarstream", "artifact-cache"];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut crates: Vec<String> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--" => extra.extend(rest.by_ref().cloned()),
            flag if flag.starts_with('-') => {
                bail!("mutants: unknown argument `{flag}` (see `cargo xtask help`)")
            }
            name => crates.push(name.to_owned()),
        }
    }
    if crates.is_empty() {
        crates = DEFAULT_CRATES.iter().map(|&c| c.to_owned()).collect();
    }
    prereq::ensure(&[prereq::CARGO_MUTANTS, prereq::NEXTEST])?;

    let mut failed = Vec::new();
    for krate in &crates {
        let mut cmd = cargo();
        cmd.args(["mutants", "--package", krate, "--test-tool", "nextest"])
            // A mutant that makes a loop endless is "timeout", not a stuck run: a few times
            // the clean test run, plus the build.
            .args(["--timeout-multiplier", "3"])
            // The warm dependencies come along to the scratch copy instead of being rebuilt.
            .arg("--copy-target=true")
            // tarstream's hidden entry points for the fuzz targets are not behaviour to test.
            .args(["--exclude-re", "fuzzing::"])
            .args(["--output", &format!("target/mutants/{krate}")])
            .args(&extra);
        println!("\n==> mutants {krate}\n    {cmd:?}");
        // cargo-mutants exits non-zero when a mutant is missed: report, then go on.
        if !cmd.status()?.success() {
            failed.push(krate.as_str());
        }
        println!("    results: target/mutants/{krate}/mutants.out/outcomes.json and *.txt");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("mutants missed or timed out in: {}", failed.join(", "))
    }
}
