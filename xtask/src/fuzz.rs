//! `cargo xtask fuzz`: seed the corpora of the cargo-fuzz targets in `fuzz/`, then run each
//! target for a while on nightly (cargo-fuzz builds with AddressSanitizer).
//!
//! Seeds are generated, not committed: small trees written as tar streams by `artifact pack`
//! (our sender), GNU tar in each of its formats and bsdtar, their zstd encodings, and a few
//! query strings. They land in `fuzz/corpus/<target>/`, beside what earlier runs found.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::{cargo, prereq, project_root};

/// Every target in `fuzz/fuzz_targets/`.
pub(crate) const TARGETS: &[&str] = &["receive", "header", "zstd_upload", "id_query"];

/// libFuzzer's memory bound per process, in MiB: a decoder or receive that allocates with the
/// input's size instead of within its limits trips it.
const RSS_LIMIT_MB: &str = "2048";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut seconds: u64 = 60;
    let mut targets: Vec<String> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = rest.next().context("--seconds needs a number")?;
                seconds = value.parse().with_context(|| format!("--seconds {value}"))?;
            }
            "--" => extra.extend(rest.by_ref().cloned()),
            flag if flag.starts_with('-') => {
                bail!("fuzz: unknown argument `{flag}` (see `cargo xtask help`)")
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            name => bail!("fuzz: no target `{name}` (targets: {})", TARGETS.join(", ")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|&t| t.to_owned()).collect();
    }
    prereq::ensure(&[prereq::CARGO_FUZZ, prereq::GNU_TAR, prereq::BSDTAR, prereq::ZSTD])?;
    if !prereq::has_toolchain("nightly") {
        bail!("the nightly toolchain is missing (rustup toolchain install nightly)");
    }

    let corpus = project_root().join("fuzz/corpus");
    seed(&corpus).context("writing the seed corpora")?;

    let mut report = Vec::new();
    for target in &targets {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(project_root())
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg("-timeout=20")
            .arg("-print_final_stats=1")
            .args(&extra)
            // cargo-fuzz picks its toolchain through rustup, not the cargo that runs us.
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .stderr(Stdio::piped());
        println!("\n==> fuzz {target} ({seconds} s)\n    {cmd:?}");
        let mut child = cmd.spawn().context("starting cargo fuzz")?;
        let mut runs = None;
        let stderr = child.stderr.take().expect("piped");
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                runs = n.trim().parse::<u64>().ok();
            }
            eprintln!("{line}");
        }
        let ok = child.wait()?.success();
        report.push((target.clone(), ok, runs));
    }

    println!("\n==> fuzz summary");
    for (target, ok, runs) in &report {
        let verdict = if *ok { "ok  " } else { "FAIL" };
        let runs = runs.map_or("?".to_owned(), |n| n.to_string());
        println!("    {verdict} {target}: {runs} executions");
    }
    let failed: Vec<&str> =
        report.iter().filter(|(_, ok, _)| !ok).map(|(t, _, _)| t.as_str()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz targets failed (inputs in fuzz/artifacts/): {}", failed.join(", "))
    }
}

/// Writes the seed corpora under `corpus/<target>/`.
fn seed(corpus: &Path) -> anyhow::Result<()> {
    let trees = project_root().join("target/fuzz-seeds");
    let _ = fs::remove_dir_all(&trees);
    fs::create_dir_all(&trees)?;
    for target in TARGETS {
        fs::create_dir_all(corpus.join(target))?;
    }
    let dirs = seed_trees(&trees)?;

    let status = cargo().args(["build", "--quiet", "--locked", "-p", "artifact"]).status()?;
    if !status.success() {
        bail!("building the artifact CLI failed");
    }
    let artifact = project_root().join("target/debug/artifact");

    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().expect("named").to_string_lossy().into_owned();
        let path = dir.to_str().context("seed path is not UTF-8")?;
        streams
            .push((format!("{name}-ours"), output(Command::new(&artifact).args(["pack", path]))?));
        for format in ["gnu", "ustar", "posix", "oldgnu"] {
            let stream = output(Command::new("tar").args([
                &format!("--format={format}"),
                "-cf",
                "-",
                "-C",
                path,
                ".",
            ]));
            // ustar cannot hold every tree (long names): skip what a format refuses.
            if let Ok(stream) = stream {
                streams.push((format!("{name}-gnu-{format}"), stream));
            }
        }
        for format in ["pax", "ustar"] {
            if let Ok(stream) = output(
                Command::new("bsdtar").args(["--format", format, "-cf", "-", "-C", path, "."]),
            ) {
                streams.push((format!("{name}-bsdtar-{format}"), stream));
            }
        }
    }

    for (name, stream) in &streams {
        fs::write(corpus.join("receive").join(format!("{name}.tar")), stream)?;
        fs::write(corpus.join("header").join(format!("{name}.hdr")), header_seed(stream))?;
        let mut zstd = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running zstd")?;
        zstd.stdin.take().expect("piped").write_all(stream)?;
        let out = zstd.wait_with_output()?;
        if !out.status.success() {
            bail!("zstd failed");
        }
        fs::write(corpus.join("zstd_upload").join(format!("{name}.zst")), out.stdout)?;
    }

    let long = "ab".repeat(64);
    let queries = [
        "id=00ff".to_owned(),
        "id=DEADbeef".to_owned(),
        format!("id={long}"),
        format!("id={long}00"),
        "id=0".to_owned(),
        "id=%30%30".to_owned(),
        "id=00&id=11".to_owned(),
        "limit=10&after=00ff".to_owned(),
        "limit=0".to_owned(),
        "after=&limit=18446744073709551616".to_owned(),
    ];
    for (i, query) in queries.iter().enumerate() {
        fs::write(corpus.join("id_query").join(format!("seed-{i}")), query)?;
    }
    println!(
        "    seeds: {} streams, {} queries in {}",
        streams.len(),
        queries.len(),
        corpus.display()
    );
    Ok(())
}

/// Small trees that cover each kind of entry: files (empty, executable, multi-block), nested
/// directories, an empty directory, symlinks, a hard link and names too long for ustar.
fn seed_trees(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let empty = root.join("empty");
    fs::create_dir(&empty)?;

    let small = root.join("small");
    fs::create_dir_all(small.join("bin"))?;
    fs::create_dir_all(small.join("share/doc"))?;
    fs::create_dir(small.join("empty-dir"))?;
    fs::write(small.join("bin/tool"), "#!/bin/sh\necho hi\n")?;
    fs::set_permissions(
        small.join("bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    fs::write(small.join("share/doc/readme"), "read me\n".repeat(100))?;
    fs::write(small.join("zero"), "")?;
    symlink("bin/tool", small.join("latest"))?;
    symlink("../..", small.join("share/doc/up"))?;
    fs::hard_link(small.join("share/doc/readme"), small.join("readme-again"))?;

    let long = root.join("long");
    let deep = long.join("d".repeat(90)).join("e".repeat(90));
    fs::create_dir_all(&deep)?;
    fs::write(deep.join("f".repeat(120)), "long name\n")?;
    symlink("t".repeat(150), long.join("far"))?;
    Ok(vec![empty, small, long])
}

/// A `header` seed from a stream: its first header block, and when that is a PAX extended
/// header, the entry header after the records followed by the records themselves.
fn header_seed(stream: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let Some(first) = stream.get(..BLOCK) else { return Vec::new() };
    if first[156] != b'x' {
        return first.to_vec();
    }
    let size = std::str::from_utf8(&first[124..135])
        .ok()
        .and_then(|s| usize::from_str_radix(s.trim_matches(|c| c == '\0' || c == ' '), 8).ok())
        .unwrap_or(0);
    let entry = BLOCK + size.next_multiple_of(BLOCK);
    let (Some(header), Some(records)) =
        (stream.get(entry..entry + BLOCK), stream.get(BLOCK..BLOCK + size))
    else {
        return first.to_vec();
    };
    [header, records].concat()
}

/// Runs `cmd` and returns its standard output; an error when it fails.
fn output(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd.stderr(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(out.stdout)
}
