//! `cargo xtask bench cache`: lock throughput, commit cost and open() time of artifact-cache.
//!
//! Runs the `cache` bench binary of `artifact-cache` (`crates/artifact-cache/benches/cache.rs`,
//! built with `cargo bench`), which prints `key<TAB>value<TAB>unit` lines, and turns them into
//! the Markdown section of `docs/benchmarks.md`. The caches live on tmpfs (`/dev/shm`) when
//! there is one, so that the numbers measure the cache rather than the disk; set
//! `CACHE_BENCH_DIR` to measure another file system.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context, bail};

use crate::cargo;

pub(crate) fn run() -> anyhow::Result<String> {
    let dir = std::env::var("CACHE_BENCH_DIR").unwrap_or_else(|_| {
        if Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir().display().to_string()
        }
    });
    let results = bench(&dir, None)?;
    // Durable commits cost what the disk costs: measure them on the temporary directory's file
    // system too, when that is another one (tmpfs makes fsync free).
    let disk = std::env::temp_dir().display().to_string();
    let on_disk =
        if fs_type(&disk) != fs_type(&dir) { Some(bench(&disk, Some("commit"))?) } else { None };
    Ok(section(&results, &dir, on_disk.as_ref().map(|r| (r, disk.as_str()))))
}

/// Runs the bench binary with its caches in `dir` (only the `only` groups, if given).
fn bench(dir: &str, only: Option<&str>) -> anyhow::Result<Results> {
    println!("bench cache: running `cargo bench -p artifact-cache --bench cache` in {dir}");
    let mut command = cargo();
    command
        .args(["bench", "--quiet", "-p", "artifact-cache", "--bench", "cache"])
        .env("CACHE_BENCH_DIR", dir)
        .stderr(std::process::Stdio::inherit());
    if let Some(only) = only {
        command.env("CACHE_BENCH_ONLY", only);
    }
    let output = command.output().context("running cargo bench")?;
    if !output.status.success() {
        bail!("the cache benchmark failed ({})", output.status);
    }
    let text = String::from_utf8(output.stdout).context("benchmark output is not UTF-8")?;
    print!("{text}");
    parse(&text)
}

/// The file system type of `dir` (`tmpfs`, `ext2/ext3`, ...), as `stat -f` names it.
fn fs_type(dir: &str) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T", dir])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |s| s.trim().to_owned())
}

/// `key -> (value, unit)`.
type Results = BTreeMap<String, (f64, String)>;

fn parse(text: &str) -> anyhow::Result<Results> {
    let mut results = Results::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(key), Some(value), Some(unit)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected benchmark output line {line:?}");
        };
        let value = value.parse().with_context(|| format!("in line {line:?}"))?;
        results.insert(key.to_owned(), (value, unit.to_owned()));
    }
    Ok(results)
}

fn rate(results: &Results, key: &str) -> String {
    match results.get(key) {
        Some((value, _)) if *value >= 1e6 => format!("{:.2} M/s", value / 1e6),
        Some((value, _)) if *value >= 1e3 => format!("{:.1} k/s", value / 1e3),
        Some((value, _)) => format!("{value:.0}/s"),
        None => "–".into(),
    }
}

fn amount(results: &Results, key: &str) -> String {
    match results.get(key) {
        Some((value, unit)) if unit == "us" => format!("{value:.0} µs"),
        Some((value, unit)) if *value >= 100.0 => format!("{value:.0} {unit}"),
        Some((value, unit)) => format!("{value:.2} {unit}"),
        None => "–".into(),
    }
}

fn section(results: &Results, dir: &str, disk: Option<(&Results, &str)>) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |s| s.trim().to_owned());
    let fs = fs_type(dir);
    out.push_str("## cache\n\n");
    out.push_str(
        "Command: `cargo xtask bench cache`, which runs `cargo bench -p artifact-cache --bench cache` \
         (source: `crates/artifact-cache/benches/cache.rs`; medians of three runs of about a \
         second each).\n",
    );
    out.push_str(&format!("Machine: {cpus} CPUs, Linux {kernel}; caches in `{dir}` ({fs}).\n\n"));
    out.push_str("| operation | 1 thread | 2 threads | 8 threads |\n|---|---|---|---|\n");
    let rows: [(&str, &str); 6] = [
        ("get+drop, one hot id, no other reader", "get_drop.hot.alone"),
        ("get+drop, one hot id, another reader holds it", "get_drop.hot.shared"),
        ("get+drop, 10,000 ids round robin", "get_drop.many"),
        ("create+abort, one hot id", "create_abort.hot"),
        ("create+commit+remove, one hot id", "create_commit_remove.hot"),
        ("create+commit (one small file), a new id each", "create_commit.many"),
    ];
    for (name, key) in rows {
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            rate(results, &format!("{key}.t1")),
            rate(results, &format!("{key}.t2")),
            rate(results, &format!("{key}.t8")),
        ));
    }
    out.push_str(&format!(
        "| *floor: `flock` shared + 8-byte `pread` + `flock` unlock on a plain file* | {} | | |\n\n",
        rate(results, "floor.flock_pread_unlock.t1")
    ));
    out.push_str("| commit of a 10,000-file artifact (100 dirs x 100 files of 4 KiB) | ");
    out.push_str(&format!("{fs} |"));
    if let Some((_, disk_dir)) = disk {
        out.push_str(&format!(" {} (`{disk_dir}`) |", fs_type(disk_dir)));
    }
    out.push_str(if disk.is_some() { "\n|---|---|---|\n" } else { "\n|---|---|\n" });
    for (name, key) in [
        ("`commit` (seals the tree read-only, computes the digest)", "commit_10k_files.commit"),
        ("`commit_with` (digest given by the transfer)", "commit_10k_files.commit_with"),
        ("`commit`, `Durability::Fsync`", "commit_10k_files.fsync.commit"),
        ("`commit_with`, `Durability::Fsync`", "commit_10k_files.fsync.commit_with"),
    ] {
        out.push_str(&format!("| {name} | {} |", amount(results, key)));
        if let Some((disk, _)) = disk {
            out.push_str(&format!(" {} |", amount(disk, key)));
        }
        out.push('\n');
    }
    let n = results.get("open.artifacts").map_or(0.0, |(v, _)| *v);
    out.push_str(&format!("\n| a cache of {n:.0} artifacts | time |\n|---|---|\n"));
    for (name, key) in [
        ("`Cache::open` (median of 5)", "open.time"),
        ("first `usage()` (reads every metadata file once)", "open.first_usage_scan"),
        ("first `get` on the fresh handle", "open.first_get"),
    ] {
        out.push_str(&format!("| {name} | {} |\n", amount(results, key)));
    }
    out.push_str(&format!(
        "\n(Filling it ran at {} commits of one small file.)\n",
        rate(results, "open.fill_commits")
    ));
    let hot = results.get("get_drop.hot.alone.t1").map_or(0.0, |(v, _)| *v);
    let floor = results.get("floor.flock_pread_unlock.t1").map_or(0.0, |(v, _)| *v);
    out.push_str(&format!(
        "\nTarget: at least 1 M get+drop per second on one thread (hot id). {}\n",
        if hot >= 1e6 {
            "Met.".to_owned()
        } else {
            format!(
                "Not met when no other reader holds the id ({}): a `get` must take the OS shared \
                 lock and read the lock file's generation, and the `drop` must release the lock, \
                 so that another process can remove the artifact right after; those three \
                 system calls alone run at {} here (the floor row), and get+drop reaches {:.0}% of \
                 that. When a reader of the same process holds the id (the usual case for \
                 a hot artifact under concurrent requests), get+drop shares its lock and makes \
                 no system call: {}.",
                rate(results, "get_drop.hot.alone.t1"),
                rate(results, "floor.flock_pread_unlock.t1"),
                if floor > 0.0 { hot / floor * 100.0 } else { 0.0 },
                rate(results, "get_drop.hot.shared.t1"),
            )
        }
    ));
    out
}
