//! `cargo xtask bench tarstream`: `artifact pack | artifact unpack` against
//! `tar -cf - | tar -xf -` (GNU tar) and against the `tar` crate (`tar::Builder` piped into
//! `tar::Archive::unpack`, the `tar_crate` bench program of tarstream) on the four standard
//! workloads, on tmpfs.
//!
//! Each workload is generated once under `$ARTIFACT_BENCH_DIR` (default `/dev/shm`); then each
//! pipe runs once to warm up and `$ARTIFACT_BENCH_RUNS` times (default 5), the three tools
//! alternating in an order that turns with each run, into a fresh destination removed just
//! before each. The time is the wall time of the whole
//! pipe (both processes started to both exited); the peak RSS of each side comes from
//! `/usr/bin/time -f %M`. Reported: medians, and the largest RSS seen. The trees the
//! pipes produce are compared with `diff -r --no-dereference` once per workload.
//!
//! For profiling: `$ARTIFACT_BENCH_ONLY` (a substring of a workload name) runs only the
//! matching workloads, and `$ARTIFACT_BENCH_KEEP=1` leaves the generated trees in
//! `$ARTIFACT_BENCH_DIR/artifact-bench-keep/<n>/src`.

use std::{
    env, fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail, ensure};

use crate::{cargo, project_root};

/// A tree to move, generated on demand.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) make: fn(&Path) -> io::Result<()>,
}

/// The SPEC §9 workloads.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload { name: "1 GiB file", about: "one file of 1 GiB", make: one_big_file },
    Workload { name: "10,000 x 4 KiB", about: "100 dirs of 100 files of 4 KiB", make: small_files },
    Workload {
        name: "100,000 x 100 B",
        about: "100 dirs of 1,000 files of 100 B",
        make: tiny_files,
    },
    Workload {
        name: "build output",
        about: "nested dirs: 4 binaries of 24 MiB, 3,000 objects of 1-64 KiB, 6,000 sources of \
                0.2-16 KiB, 300 symlinks, executables, empty dirs",
        make: build_output,
    },
];

/// One timed run: the wall time, and the peak RSS (KiB) of its two sides.
pub(crate) struct Sample {
    pub(crate) secs: f64,
    pub(crate) rss_kib: (u64, u64),
}

pub(crate) fn run() -> anyhow::Result<Option<String>> {
    let super::Settings { runs, base, only } = super::Settings::from_env()?;
    let artifact = build_release("tarstream")?;
    let tar_crate = build_tar_crate()?;
    let keep = env::var_os("ARTIFACT_BENCH_KEEP").is_some_and(|v| v == "1");
    let root = match keep {
        true => base.join("artifact-bench-keep"),
        false => base.join(format!("artifact-bench-{}", std::process::id())),
    };
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run_all(&root, [&artifact, &tar_crate], runs, &only, keep);
    if !keep {
        let _ = fs::remove_dir_all(&root);
    }
    let rows = result?;

    let mut out = String::new();
    out.push_str(
        "## tarstream: `artifact pack | artifact unpack` against GNU tar and the tar crate\n\n",
    );
    out.push_str(&format!(
        "Measured by `cargo xtask bench tarstream` on {}, {}, in `{}` (tmpfs).\n",
        machine(),
        first_line(&command_line("tar", &["--version"])),
        base.display(),
    ));
    out.push_str(&format!(
        "Each pipe ran once to warm up, then {runs} times, the three alternating in an order that turns with each run, each into a destination removed just before it; times are medians of the wall time of the whole pipe; peak RSS is the largest seen, per side.\n\n"
    ));
    out.push_str("| workload | GNU tar | tar crate | artifact | artifact / GNU tar | artifact / tar crate | peak RSS `tar -c` / `tar -x` | peak RSS tar crate | peak RSS `pack` / `unpack` |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (workload, [tar, crate_, ours]) in &rows {
        let (t, c, a) = (median(tar), median(crate_), median(ours));
        let rss = |samples: &[Sample]| {
            let (left, right) = max_rss(samples);
            format!("{} / {}", mib(left), mib(right))
        };
        out.push_str(&format!(
            "| {} | {t:.3} s | {c:.3} s | {a:.3} s | {:.2} | {:.2} | {} | {} | {} |\n",
            workload.name,
            a / t,
            a / c,
            rss(tar),
            rss(crate_),
            rss(ours),
        ));
    }
    out.push_str("\nWorkloads:\n\n");
    for workload in WORKLOADS {
        out.push_str(&format!("- {}: {}.\n", workload.name, workload.about));
    }
    out.push_str("\nThe commands, each side under `/usr/bin/time -f %M`:\n\n```sh\n");
    out.push_str("tar -cf - -C \"$SRC\" . | tar -xf - -C \"$DST\"\n");
    out.push_str(
        "tar_crate pack \"$SRC\" | tar_crate unpack \"$DST\"   # cargo bench -p tarstream --bench tar_crate\n",
    );
    out.push_str(
        "artifact pack \"$SRC\" | artifact unpack \"$DST\"   # target/release/artifact\n```\n",
    );
    out.push_str(WHERE_THE_TIME_GOES);
    println!("{out}");
    Ok(if only.is_empty() { Some(out) } else { None })
}

/// The profile of each workload, from `perf record -e cpu-clock -g` on each side of the pipe
/// (`ARTIFACT_BENCH_ONLY` and `ARTIFACT_BENCH_KEEP=1` give the trees to profile).
const WHERE_THE_TIME_GOES: &str = "
### Where the time goes

`pack` writes with `tarstream::send_to_fd` and `unpack` reads with `tarstream::receive_from_fd`: neither computes the tree digest (`--json` asks for it), and the data of each file of 64 KiB or more moves with `splice` (from the file into the pipe, then from the pipe into the new file) instead of being copied through the 1 MiB buffers.
Shares below are of each side's CPU samples (`perf record -e cpu-clock -g`), on tmpfs.

- 1 GiB file: `pack` uses under a tenth of `unpack`'s CPU, as the pipe carries references to the file's pages.
  `unpack` is the kernel's one copy into new tmpfs pages: half `memcpy`, a quarter allocating pages.
  GNU tar and the tar crate copy every byte four times (file to buffer to pipe to buffer to file), as `artifact` does with `--json`, which also hashes on a second thread.
- 10,000 x 4 KiB: files this small go through the buffers, and both sides are mostly system calls.
  `pack`: a third in `read` of the files, a quarter in `write` into the pipe, the rest in `openat`, `fstat`, `close` and `getdents64`.
  `unpack`: two fifths in `openat(O_CREAT | O_EXCL)` (tmpfs allocating inodes), a quarter in `write`, a fifth in `read` from the pipe.
- 100,000 x 100 B: `unpack` is the slow side, with about four times `pack`'s CPU: half creating inodes, a quarter in `write`, and the rest reading the pipe and decoding headers (the header checksum is summed branch-free for this reason).
  Per file, `unpack` makes three system calls (`openat`, `write`, `close`) and `pack` four (`openat`, `fstat`, `read`, `close`); GNU tar makes more on both sides (`lstat` before opening, times and modes restored after writing).
- build output: the four 24 MiB binaries are spliced, the 9,000 smaller files copied through the buffers.
  `pack`: half in `read`, a quarter in `write`; `unpack`: a third in `write` of the small files, a quarter in the splices of the binaries, a sixth in `read` from the pipe, an eighth in `openat`.
";

/// A workload and the samples of GNU tar, the tar crate and artifact.
type Row = (&'static Workload, [Vec<Sample>; 3]);

fn run_all(
    root: &Path,
    [artifact, tar_crate]: [&Path; 2],
    runs: usize,
    only: &str,
    keep: bool,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (n, workload) in WORKLOADS.iter().enumerate() {
        if !workload.name.contains(only) {
            continue;
        }
        let src = root.join(n.to_string()).join("src");
        if !(keep && src.is_dir()) {
            let _ = fs::remove_dir_all(&src);
            println!("bench tarstream: generating {}", workload.name);
            (workload.make)(&src).with_context(|| format!("generating {}", workload.name))?;
        }
        let dsts = ["dst-tar", "dst-tar-crate", "dst-artifact"].map(|d| root.join(d));
        let mut samples: [Vec<Sample>; 3] = Default::default();
        for i in 0..=runs {
            // The order turns with every run (see `bench/http.rs` on freed memory in a VM).
            for turn in 0..dsts.len() {
                let tool = (turn + i) % dsts.len();
                let dst = &dsts[tool];
                let _ = fs::remove_dir_all(dst);
                fs::create_dir(dst)?;
                let sample = match tool {
                    0 => pipe(
                        root,
                        &["tar", "-cf", "-", "-C", path(&src), "."],
                        &["tar", "-xf", "-", "-C", path(dst)],
                    )?,
                    1 => {
                        let bin = path(tar_crate);
                        pipe(root, &[bin, "pack", path(&src)], &[bin, "unpack", path(dst)])?
                    }
                    _ => {
                        // `unpack` creates its destination itself.
                        fs::remove_dir(dst)?;
                        let bin = path(artifact);
                        pipe(root, &[bin, "pack", path(&src)], &[bin, "unpack", path(dst)])?
                    }
                };
                if i > 0 {
                    samples[tool].push(sample);
                }
            }
            print!(".");
            io::stdout().flush()?;
        }
        for other in &dsts[1..] {
            let diff = Command::new("diff")
                .args(["-r", "--no-dereference", path(&dsts[0]), path(other)])
                .output()?;
            ensure!(
                diff.status.success(),
                "{}: {} and GNU tar produced different trees",
                workload.name,
                other.display()
            );
        }
        let [tar, crate_, ours] = &samples;
        println!(
            " {}: tar {:.3} s, tar crate {:.3} s, artifact {:.3} s",
            workload.name,
            median(tar),
            median(crate_),
            median(ours)
        );
        rows.push((workload, samples));
        for dir in &dsts {
            let _ = fs::remove_dir_all(dir);
        }
        if !keep {
            let _ = fs::remove_dir_all(&src);
        }
    }
    Ok(rows)
}

/// Builds `target/release/artifact` and returns its path.
pub(crate) fn build_release(suite: &str) -> anyhow::Result<PathBuf> {
    println!("bench {suite}: building the release binary");
    let status = cargo()
        .args(["build", "--release", "--locked", "-p", "artifact", "--bin", "artifact"])
        .status()?;
    ensure!(status.success(), "cargo build --release failed");
    Ok(target_dir().join("release/artifact"))
}

/// Builds the `tar_crate` bench program of tarstream (bench profile) and returns its path.
fn build_tar_crate() -> anyhow::Result<PathBuf> {
    println!("bench tarstream: building the tar crate's pipe");
    let out = cargo()
        .args(["build", "--profile", "bench", "--locked", "-p", "tarstream"])
        .args(["--bench", "tar_crate", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "cargo build --bench tar_crate failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let exe = text
        .lines()
        .filter_map(|line| line.split("\"executable\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .next_back()
        .context("cargo printed no executable for the tar_crate bench")?;
    Ok(PathBuf::from(exe))
}

/// Runs `left | right`, each under `/usr/bin/time -f %M`, and measures the whole pipe.
pub(crate) fn pipe(root: &Path, left: &[&str], right: &[&str]) -> anyhow::Result<Sample> {
    let (rss_left, rss_right) = (root.join("rss-left"), root.join("rss-right"));
    let start = Instant::now();
    let mut producer = timed(left, &rss_left).stdout(Stdio::piped()).spawn()?;
    let stdout = producer.stdout.take().context("the producer's stdout")?;
    let mut consumer = timed(right, &rss_right).stdin(Stdio::from(stdout)).spawn()?;
    let (a, b) = (producer.wait()?, consumer.wait()?);
    let secs = start.elapsed().as_secs_f64();
    if !a.success() || !b.success() {
        bail!("`{} | {}` failed", left.join(" "), right.join(" "));
    }
    Ok(Sample { secs, rss_kib: (read_rss(&rss_left)?, read_rss(&rss_right)?) })
}

/// `/usr/bin/time -f %M -o FILE` prefixed to `argv`.
pub(crate) fn timed(argv: &[&str], rss: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o", path(rss)]).args(argv);
    cmd
}

/// The peak RSS in KiB that `/usr/bin/time -f %M -o FILE` wrote.
pub(crate) fn read_rss(file: &Path) -> anyhow::Result<u64> {
    let text = fs::read_to_string(file)?;
    text.lines().last().and_then(|l| l.trim().parse().ok()).context("parsing /usr/bin/time output")
}

pub(crate) fn median(samples: &[Sample]) -> f64 {
    median_of(samples.iter().map(|s| s.secs).collect())
}

/// The median of `secs` (not empty).
pub(crate) fn median_of(mut secs: Vec<f64>) -> f64 {
    secs.sort_by(f64::total_cmp);
    let n = secs.len();
    if n % 2 == 1 { secs[n / 2] } else { (secs[n / 2 - 1] + secs[n / 2]) / 2.0 }
}

pub(crate) fn max_rss(samples: &[Sample]) -> (u64, u64) {
    samples.iter().fold((0, 0), |(a, b), s| (a.max(s.rss_kib.0), b.max(s.rss_kib.1)))
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("benchmark paths are UTF-8")
}

pub(crate) fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| project_root().join("target"), PathBuf::from)
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("{program}: unknown"))
}

pub(crate) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// "CPU (N cores, Linux x.y)", for the header of a section.
pub(crate) fn machine() -> String {
    format!("{} ({} cores, {})", cpu_model(), available_cores(), command_line("uname", &["-sr"]))
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Deterministic incompressible bytes (xorshift64*).
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b) % n
    }
}

fn write_file(path: &Path, len: usize, noise: &mut Noise, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(len, 0);
    noise.fill(buf);
    fs::write(path, &buf[..])
}

fn set_exec(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

fn one_big_file(src: &Path) -> io::Result<()> {
    fs::create_dir_all(src)?;
    let mut file = fs::File::create(src.join("big.bin"))?;
    let mut noise = Noise(1);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        noise.fill(&mut buf);
        file.write_all(&buf)?;
    }
    Ok(())
}

fn many_files(src: &Path, dirs: usize, per_dir: usize, len: usize) -> io::Result<()> {
    let mut noise = Noise(2);
    let mut buf = Vec::new();
    for d in 0..dirs {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir_all(&dir)?;
        for f in 0..per_dir {
            write_file(&dir.join(format!("f{f:04}")), len, &mut noise, &mut buf)?;
        }
    }
    Ok(())
}

fn small_files(src: &Path) -> io::Result<()> {
    many_files(src, 100, 100, 4096)
}

fn tiny_files(src: &Path) -> io::Result<()> {
    many_files(src, 100, 1000, 100)
}

fn build_output(src: &Path) -> io::Result<()> {
    let mut noise = Noise(3);
    let mut buf = Vec::new();
    let bin = src.join("target/release");
    fs::create_dir_all(&bin)?;
    for i in 0..4 {
        let exe = bin.join(format!("tool-{i}"));
        write_file(&exe, 24 << 20, &mut noise, &mut buf)?;
        set_exec(&exe)?;
    }
    for i in 0..3000 {
        let dir = src.join(format!("target/release/build/crate-{:02}/out/obj-{}", i % 60, i % 7));
        fs::create_dir_all(&dir)?;
        let len = 1024 + noise.below(63 * 1024) as usize;
        write_file(&dir.join(format!("unit-{i}.o")), len, &mut noise, &mut buf)?;
    }
    for i in 0..6000 {
        let dir = src.join(format!("src/module-{:02}/sub-{}/deeper-{}", i % 40, i % 5, i % 3));
        fs::create_dir_all(&dir)?;
        let len = 200 + noise.below(16 * 1024) as usize;
        let file = dir.join(format!("file-{i}.rs"));
        write_file(&file, len, &mut noise, &mut buf)?;
        if i % 100 == 0 {
            set_exec(&file)?;
        }
    }
    for i in 0..300 {
        let dir = src.join(format!("target/release/deps/links-{}", i % 10));
        fs::create_dir_all(&dir)?;
        std::os::unix::fs::symlink(format!("../../tool-{}", i % 4), dir.join(format!("link-{i}")))?;
    }
    for i in 0..50 {
        fs::create_dir_all(src.join(format!("target/release/incremental/empty-{i}")))?;
    }
    Ok(())
}
