//! `cargo xtask bench store`: `artifact get --from s3://…` and `artifact put --to s3://…`
//! through a real S3 server on loopback, against `curl` moving the same object.
//!
//! The server is the testkit's (`s3s` over `s3s-fs`, SigV4), run as a process of its own
//! (`cargo build --release -p artifact-testkit --features s3 --example s3_server`) with its
//! objects under `$ARTIFACT_BENCH_DIR` (default `/dev/shm`, tmpfs). For each workload, the tree
//! is generated, added to a local cache with `artifact add`, and then, alternating,
//! `$ARTIFACT_BENCH_RUNS` times (default 5) after one warm-up round:
//!
//! - upload: `artifact put ID --to s3://BUCKET` against `curl -T` of the very object file
//!   that put made (`--aws-sigv4`, unsigned payload), each object deleted again after its run;
//! - download, each into a fresh destination: `artifact get ID --from s3://BUCKET` into an
//!   empty cache, against `curl URL | tar -xf -` (one plain GET) and against four `curl -r`
//!   ranges fetched at once into files, then `cat`ed into `tar -xf -`.
//!
//! Times are wall times of the whole command; peak RSS comes from `/usr/bin/time -f %M` (for
//! the four ranges, the largest of the shell's children).
//!
//! `$ARTIFACT_BENCH_ONLY` (a substring of a workload's name) runs only what matches and leaves
//! `docs/benchmarks.md` as it is.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail, ensure};

use super::{
    Settings,
    http::{Daemon, progress, rate, remove, run_ok, same_tree, secs},
    tarstream::{
        Sample, WORKLOADS, Workload, build_release, command_line, first_line, machine, max_rss,
        median, mib, path, pipe, read_rss, target_dir, timed,
    },
};
use crate::cargo;

/// The workloads moved (SPEC §9's largest file and the many-small-files tree).
const MOVED: &[&str] = &["1 GiB file", "10,000 x 4 KiB"];
/// The testkit server's credentials and region (see `artifact_testkit::s3`).
const ACCESS_KEY: &str = "artifact-test-key";
const SECRET_KEY: &str = "artifact-test-secret";
const REGION: &str = "us-east-1";
/// How many ranges the ranged `curl` fetches at once.
const RANGES: u64 = 4;
/// Aims: `get` within 10% of the ranged curl download; peak RSS of `get` and `put`.
const TIME_TARGET: f64 = 1.10;
const RSS_TARGET_KIB: u64 = 64 * 1024;

/// One workload's samples.
struct Moved {
    workload: &'static Workload,
    object_bytes: u64,
    put: Vec<Sample>,
    curl_put: Vec<Sample>,
    get: Vec<Sample>,
    curl_get: Vec<Sample>,
    curl_ranges: Vec<Sample>,
}

pub(crate) fn run() -> anyhow::Result<Option<String>> {
    let Settings { runs, base, only } = Settings::from_env()?;
    let artifact = build_release("store")?;
    let s3_server = build_s3_server()?;
    let root = base.join(format!("artifact-bench-store-{}", std::process::id()));
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = measure(&root, &artifact, &s3_server, runs, &only);
    remove(&root);
    let moved = result?;
    let out = report(&moved, runs, &base);
    println!("{out}");
    Ok(if only.is_empty() { Some(out) } else { None })
}

/// Builds the testkit's S3 server example (release) and returns its path.
fn build_s3_server() -> anyhow::Result<PathBuf> {
    println!("bench store: building the S3 test server");
    let status = cargo()
        .args(["build", "--release", "--locked", "-p", "artifact-testkit", "--features", "s3"])
        .args(["--example", "s3_server"])
        .status()?;
    ensure!(status.success(), "cargo build of the s3_server example failed");
    Ok(target_dir().join("release/examples/s3_server"))
}

fn measure(
    root: &Path,
    artifact: &Path,
    s3_server: &Path,
    runs: usize,
    only: &str,
) -> anyhow::Result<Vec<Moved>> {
    let s3 = S3::start(s3_server, &root.join("s3"))?;
    let local = root.join("local");
    let mut moved = Vec::new();
    for (n, name) in MOVED.iter().enumerate() {
        if !name.contains(only) {
            continue;
        }
        let workload = WORKLOADS.iter().find(|w| w.name == *name).context("a workload")?;
        let id = format!("{:02x}", 0xb0 + n);
        let src = root.join("src");
        remove(&src);
        println!("bench store: generating {} and adding it to a local cache", workload.name);
        (workload.make)(&src).with_context(|| format!("generating {}", workload.name))?;
        run_ok(Command::new(artifact).args(["--root", path(&local), "add", &id, path(&src)]))?;

        let object = s3.objects.join(format!("{id}.tar"));
        let copy = root.join("object.tar");
        let (client, dst) = (root.join("client"), root.join("dst"));
        let mut m = Moved {
            workload,
            object_bytes: 0,
            put: Vec::new(),
            curl_put: Vec::new(),
            get: Vec::new(),
            curl_get: Vec::new(),
            curl_ranges: Vec::new(),
        };
        print!("bench store: {} ", workload.name);
        for i in 0..=runs {
            // Upload: ours, then curl of the same bytes; each object deleted after its run.
            let argv = [path(artifact), "--root", path(&local), "put", &id, "--to", &s3.url];
            let rss = root.join("rss-put");
            let put = sample(s3.env(&mut timed(&argv, &rss)), &rss, "artifact put")?;
            if i == 0 {
                fs::copy(&object, &copy).context("copying the uploaded object")?;
                m.object_bytes = fs::metadata(&copy)?.len();
            }
            s3.delete(&format!("{id}.tar"))?;
            let curl_key = format!("curl-{id}.tar");
            let object_url = s3.object_url(&curl_key);
            let argv = s3.curl(&["-T", path(&copy), &object_url]);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let mut curl_put = timed(&argv, &root.join("rss-curl-put"));
            let curl_put = sample(&mut curl_put, &root.join("rss-curl-put"), "curl -T")?;
            ensure!(
                fs::read(s3.objects.join(&curl_key))? == fs::read(&copy)?,
                "curl -T stored other bytes"
            );
            s3.delete(&curl_key)?;

            // Download: the object in place once more, then the three ways of fetching it.
            run_ok(s3.env(Command::new(artifact).args([
                "--root",
                path(&local),
                "put",
                &id,
                "--to",
                &s3.url,
            ])))?;
            remove(&client);
            let argv = [path(artifact), "--root", path(&client), "get", &id, "--from", &s3.url];
            let rss = root.join("rss-get");
            let get = sample(s3.env(&mut timed(&argv, &rss)), &rss, "artifact get")?;
            let url = s3.object_url(&format!("{id}.tar"));
            remove(&dst);
            fs::create_dir(&dst)?;
            let left = s3.curl(&[&url]);
            let left: Vec<&str> = left.iter().map(String::as_str).collect();
            let curl_get = pipe(root, &left, &["tar", "-xf", "-", "-C", path(&dst)])?;
            if i == 0 {
                same_tree(&src, &dst, "curl | tar")?;
                let tree = client.join("objects").join(&id).join("tree");
                same_tree(&src, &tree, "artifact get")?;
            }
            remove(&dst);
            fs::create_dir(&dst)?;
            let ranges = ranged(root, &s3, &url, m.object_bytes, &dst)?;
            if i == 0 {
                same_tree(&src, &dst, "curl ranges | tar")?;
            }
            s3.delete(&format!("{id}.tar"))?;
            if i > 0 {
                m.put.push(put);
                m.curl_put.push(curl_put);
                m.get.push(get);
                m.curl_get.push(curl_get);
                m.curl_ranges.push(ranges);
            }
            progress();
        }
        println!();
        remove(&client);
        remove(&dst);
        let _ = fs::remove_file(&copy);
        run_ok(Command::new(artifact).args(["--root", path(&local), "rm", &id]))?;
        moved.push(m);
    }
    s3.stop();
    Ok(moved)
}

/// Runs `cmd` (already under `/usr/bin/time`) and takes its time and peak RSS.
fn sample(cmd: &mut Command, rss: &Path, what: &str) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let out = cmd.stdout(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(Sample { secs, rss_kib: (read_rss(rss)?, 0) })
}

/// Four `curl -r` at once into files, then `cat` of the four into `tar -xf -`, as one shell
/// command under `/usr/bin/time`.
fn ranged(root: &Path, s3: &S3, url: &str, bytes: u64, dst: &Path) -> anyhow::Result<Sample> {
    let step = bytes.div_ceil(RANGES);
    let mut script = String::from("set -e\n");
    let mut parts = Vec::new();
    for n in 0..RANGES {
        let (start, end) = (n * step, ((n + 1) * step).min(bytes) - 1);
        let part = root.join(format!("part{n}"));
        let curl = s3.curl(&["-r", &format!("{start}-{end}"), "-o", path(&part), url]);
        script.push_str(&format!("{} &\np{n}=$!\n", shell_words(&curl)));
        parts.push(path(&part).to_owned());
    }
    // Each wait on its own, so that `set -e` stops at a failed range.
    for n in 0..RANGES {
        script.push_str(&format!("wait \"$p{n}\"\n"));
    }
    script.push_str(&format!("cat {} | tar -xf - -C {}\n", parts.join(" "), path(dst)));
    script.push_str(&format!("rm -f {}\n", parts.join(" ")));
    let rss = root.join("rss-ranges");
    sample(&mut timed(&["sh", "-c", &script], &rss), &rss, "curl ranges")
}

/// `argv` quoted for `sh`.
fn shell_words(argv: &[String]) -> String {
    argv.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
}

/// The testkit's S3 server, running until its standard input is closed.
struct S3 {
    daemon: Daemon,
    stdin: Option<ChildStdin>,
    endpoint: String,
    url: String,
    bucket: String,
    objects: PathBuf,
}

impl S3 {
    fn start(program: &Path, dir: &Path) -> anyhow::Result<S3> {
        fs::create_dir_all(dir)?;
        let mut child = Command::new(program)
            .env("TMPDIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the S3 test server")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the S3 server's stdout")?;
        let daemon = Daemon(child);
        // "ENDPOINT BUCKET OBJECT_DIR", once it listens.
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [endpoint, bucket, objects] = words[..] else {
            bail!("the S3 test server did not announce itself (printed {line:?})");
        };
        Ok(S3 {
            daemon,
            stdin,
            endpoint: endpoint.to_owned(),
            url: format!("s3://{bucket}"),
            bucket: bucket.to_owned(),
            objects: PathBuf::from(objects),
        })
    }

    /// `cmd` with the AWS environment that reaches this server.
    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", REGION)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.endpoint, self.bucket)
    }

    /// `curl` with SigV4 signing for this server, then `args`.
    fn curl(&self, args: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = [
            "curl",
            "-sSf",
            "--aws-sigv4",
            &format!("aws:amz:{REGION}:s3"),
            "--user",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        argv
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let argv = self.curl(&["-X", "DELETE", &self.object_url(key)]);
        run_ok(Command::new(&argv[0]).args(&argv[1..]))
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.daemon.0.wait();
    }
}

fn report(moved: &[Moved], runs: usize, base: &Path) -> String {
    let mut out = String::new();
    out.push_str("## store: `artifact get|put` through an S3 server against curl\n\n");
    out.push_str(&format!(
        "Measured by `cargo xtask bench store` on {}, {}, against the testkit's S3 server (s3s over s3s-fs, SigV4, a process of its own) on 127.0.0.1, objects in `{}` (tmpfs). `artifact` used its default part size (8 MiB) and parallelism (4). One warm-up round (trees compared with `diff -r`), then {runs} rounds, alternating; medians of the wall time of each whole command; peak RSS is the largest seen.\n\n",
        machine(),
        first_line(&command_line("curl", &["--version"])).split(" (").next().unwrap_or(""),
        base.display(),
    ));
    out.push_str("| workload | object | way | time | throughput | peak RSS |\n|---|---:|---|---:|---:|---:|\n");
    for m in moved {
        let rows: [(&str, &[Sample]); 5] = [
            ("`artifact get --from s3://…`", &m.get),
            ("`curl URL \\| tar -x`", &m.curl_get),
            ("4 × `curl -r`, then `cat \\| tar -x`", &m.curl_ranges),
            ("`artifact put --to s3://…`", &m.put),
            ("`curl -T` of the object", &m.curl_put),
        ];
        for (way, samples) in rows {
            let t = median(samples);
            out.push_str(&format!(
                "| {} | {} | {way} | {} | {} | {} |\n",
                m.workload.name,
                mib(m.object_bytes / 1024),
                secs(t),
                rate(m.object_bytes, t),
                mib(max_rss(samples).0),
            ));
        }
    }
    out.push_str("\nAgainst the aims (get within 10% of the ranged curl download; peak RSS of `get` and `put` under 64 MiB):\n\n");
    for m in moved {
        let ratio = median(&m.get) / median(&m.curl_ranges);
        let plain = median(&m.get) / median(&m.curl_get);
        let up = median(&m.put) / median(&m.curl_put);
        let rss = max_rss(&m.get).0.max(max_rss(&m.put).0);
        out.push_str(&format!(
            "- {}: get / ranged curl = {ratio:.2} ({}), get / plain curl = {plain:.2}, put / curl -T = {up:.2}; peak RSS {} ({}).\n",
            m.workload.name,
            if ratio <= TIME_TARGET { "met" } else { "not met" },
            mib(rss),
            if rss <= RSS_TARGET_KIB { "met" } else { "not met" },
        ));
    }
    out
}
