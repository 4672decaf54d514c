//! Flame graphs for `cargo xtask bench`: a command and a running server recorded together with
//! `perf record --call-graph dwarf`, each folded by `inferno-collapse-perf` and drawn by
//! `inferno-flamegraph` into an SVG under `docs/flamegraphs/`.
//!
//! perf (Debian's `linux-perf`) and inferno (`cargo install --locked inferno`) are installed
//! when missing, as the other tools of the benchmarks are. The server's recorder starts
//! disabled and is switched on through its control FIFO, which acknowledges: the command starts
//! only once the server is being recorded, with no waiting on a clock; `stop` on the same FIFO
//! ends it once the command has exited.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, ensure};

use super::tarstream::path;
use crate::{prereq, project_root};

/// Samples per second and thread.
const FREQUENCY: &str = "499";
/// The stack bytes copied per sample for DWARF unwinding.
const CALL_GRAPH: &str = "dwarf,16384";

/// What the flame graphs need.
pub(crate) const TOOLS: &[prereq::Tool] = &[prereq::PERF, prereq::INFERNO];

/// Where the SVGs go, and the path `docs/benchmarks.md` links them by.
pub(crate) fn svg_path(name: &str) -> (PathBuf, String) {
    let file = format!("flamegraphs/{name}.svg");
    (project_root().join("docs").join(&file), file)
}

/// Runs `argv` under `perf record` while the process `server` is recorded too, then draws
/// `<name>-client.svg` and `<name>-server.svg`; `scratch` holds the recordings.
pub(crate) fn record_pair(
    scratch: &Path,
    name: &str,
    title: &str,
    server: u32,
    argv: &[&str],
) -> anyhow::Result<()> {
    fs::create_dir_all(scratch)?;
    let (ctl, ack) = (scratch.join("perf-ctl"), scratch.join("perf-ack"));
    for fifo in [&ctl, &ack] {
        let _ = fs::remove_file(fifo);
        let made = Command::new("mkfifo").arg(fifo).status()?;
        ensure!(made.success(), "mkfifo {} failed", fifo.display());
    }
    let server_data = scratch.join(format!("{name}-server.perf"));
    let client_data = scratch.join(format!("{name}-client.perf"));
    let control = format!("fifo:{},{}", path(&ctl), path(&ack));
    let mut recorder = Command::new("perf")
        .args(["record", "-q", "-F", FREQUENCY, "--call-graph", CALL_GRAPH, "-D", "-1"])
        .args(["--control", &control, "-p", &server.to_string(), "-o", path(&server_data)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    // Opening the FIFOs waits for perf to open its ends; the control end stays open until
    // `stop`.
    let mut control = fs::OpenOptions::new().write(true).open(&ctl)?;
    control.write_all(b"enable\n")?;
    let mut answer = String::new();
    BufReader::new(fs::File::open(&ack)?).read_line(&mut answer)?;
    ensure!(answer.trim() == "ack", "perf record answered {answer:?} to `enable`");
    let client = Command::new("perf")
        .args(["record", "-q", "-F", FREQUENCY, "--call-graph", CALL_GRAPH])
        .args(["-o", path(&client_data), "--"])
        .args(argv)
        .stdout(Stdio::null())
        .status()
        .context("running perf record")?;
    control.write_all(b"stop\n")?;
    drop(control);
    let recorded = recorder.wait()?;
    ensure!(client.success(), "{} failed under perf record", argv.join(" "));
    ensure!(recorded.success(), "perf record -p {server} failed: {recorded}");
    for (side, data) in [("client", &client_data), ("server", &server_data)] {
        let (svg, _) = svg_path(&format!("{name}-{side}"));
        draw(data, &svg, &format!("{title}: {side}"))?;
        let _ = fs::remove_file(data);
    }
    Ok(())
}

/// `perf script | inferno-collapse-perf | inferno-flamegraph > svg`.
fn draw(data: &Path, svg: &Path, title: &str) -> anyhow::Result<()> {
    fs::create_dir_all(svg.parent().context("an SVG path has a parent")?)?;
    let mut script = Command::new("perf")
        .args(["script", "-i", path(data)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running perf script")?;
    let mut collapse = Command::new("inferno-collapse-perf")
        .stdin(script.stdout.take().context("perf script's output")?)
        .stdout(Stdio::piped())
        .spawn()
        .context("running inferno-collapse-perf")?;
    let drawn = Command::new("inferno-flamegraph")
        .args(["--title", title, "--width", "1600"])
        .stdin(collapse.stdout.take().context("inferno-collapse-perf's output")?)
        .stdout(fs::File::create(svg)?)
        .status()
        .context("running inferno-flamegraph")?;
    ensure!(script.wait()?.success(), "perf script failed on {}", data.display());
    ensure!(collapse.wait()?.success(), "inferno-collapse-perf failed on {}", data.display());
    ensure!(drawn.success(), "inferno-flamegraph failed for {}", svg.display());
    Ok(())
}
