//! `cargo xtask bench http`: `artifact get` over loopback from `artifact serve`, against the
//! same tree served as a prebuilt tar file by nginx and fetched with `curl | tar -x`, and
//! against the local pipe `tar -cf - | tar -xf -` (SPEC §9), all on tmpfs.
//!
//! One `artifact serve` (the release build) and one nginx (Debian's nginx-light, installed with
//! `apt-get` when `/usr/sbin/nginx` is absent; its own config, pid, log and temp paths,
//! `daemon off`, `sendfile on`) listen on 127.0.0.1 for the whole suite. For each workload, the
//! tree is generated under `$ARTIFACT_BENCH_DIR` (default `/dev/shm`), imported into the
//! server's cache with `artifact add`, and written once as a tar file (GNU tar) for nginx; then
//! the three transfers run once to warm up (their results are compared with `diff -r`) and
//! `$ARTIFACT_BENCH_RUNS` times (default 5), alternating in an order that turns with each run,
//! each into a fresh destination removed just before it: for
//! `artifact get`, a fresh, empty client cache, so that it really transfers. Times are wall
//! times of the whole command (both sides of a pipe); the peak RSS of each command comes from
//! `/usr/bin/time -f %M`, the server's from its `VmHWM`, reset through `/proc/PID/clear_refs`
//! before each phase.
//!
//! Then aggregate throughput: N = 1, 8 and 64 `artifact get` processes at once, each fetching
//! a distinct id (copies of the 10,000 x 4 KiB tree) into a fresh cache of its own.
//!
//! In a full run (no `$ARTIFACT_BENCH_ONLY`), one more `artifact get` of the 1 GiB file and of
//! the 10,000-file tree is recorded, client and server together, and drawn as flame graphs
//! into `docs/flamegraphs/` (`bench/flame.rs`).
//!
//! Last, resumed and many-source downloads (`bench/http_ranges.rs`).
//!
//! `$ARTIFACT_BENCH_ONLY` (a substring of a workload's name, of "concurrent clients", or of
//! "ranges (resume, sources)") runs only what matches and leaves `docs/benchmarks.md` as it is.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};

use super::{
    Settings,
    tarstream::{
        Sample, WORKLOADS, Workload, build_release, command_line, first_line, machine, max_rss,
        median, median_of, mib, path, pipe, read_rss, timed,
    },
};

/// The workloads moved one at a time.
const SINGLE: &[&str] = &["1 GiB file", "10,000 x 4 KiB", "build output"];
/// The workload of the concurrent clients (one copy per client).
const CONCURRENT: &str = "10,000 x 4 KiB";
/// How many `artifact get` processes run at once.
const CLIENTS: &[usize] = &[1, 8, 64];
/// The name `$ARTIFACT_BENCH_ONLY` matches for the concurrent phase.
const CONCURRENT_PHASE: &str = "concurrent clients";
const NGINX: &str = "/usr/sbin/nginx";
/// The workloads whose `artifact get` is drawn as flame graphs (in a full run), and the
/// names of their SVGs.
const FLAMES: &[(&str, &str)] = &[("1 GiB file", "get-1gib"), ("10,000 x 4 KiB", "get-10k-files")];
/// The workload whose peak RSS the targets are about.
const BIG: &str = "1 GiB file";
/// Targets (issue 4): time within 10% of the tar pipe; peak RSS of each side.
const TIME_TARGET: f64 = 1.10;
const RSS_TARGET_KIB: u64 = 64 * 1024;
/// The aim for the server's memory per concurrent stream.
const PER_STREAM_TARGET_MIB: f64 = 1.0;

/// One workload moved one transfer at a time.
struct Single {
    workload: &'static Workload,
    bytes: u64,
    tar: Vec<Sample>,
    nginx: Vec<Sample>,
    /// `rss_kib.0` is the client's; the server's is `server_kib`.
    ours: Vec<Sample>,
    server_kib: Option<u64>,
    /// The name of its flame graphs, when they were drawn.
    flame: Option<&'static str>,
}

/// N clients at once.
struct Concurrent {
    clients: usize,
    bytes: u64,
    secs: Vec<f64>,
    client_kib: u64,
    server_kib: Option<u64>,
}

pub(crate) fn run() -> anyhow::Result<Option<String>> {
    let Settings { runs, base, only } = Settings::from_env()?;
    if !only.is_empty() && super::http_ranges::PHASE.contains(only.as_str()) {
        println!("{}", super::http_ranges::run(&base)?);
        return Ok(None);
    }
    ensure_nginx()?;
    if only.is_empty() {
        crate::prereq::ensure(super::flame::TOOLS)?;
    }
    let artifact = build_release("http")?;
    let root = base.join(format!("artifact-bench-http-{}", std::process::id()));
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = measure(&root, &artifact, runs, &only);
    remove(&root);
    let (singles, concurrent) = result?;
    let mut out = report(&singles, &concurrent, runs, &base)
        + &super::http_requests::section(&artifact, &base, &only)?;
    if only.is_empty() {
        out.push('\n');
        out.push_str(&super::http_ranges::run(&base)?);
    }
    println!("{out}");
    Ok(if only.is_empty() { Some(out) } else { None })
}

fn measure(
    root: &Path,
    artifact: &Path,
    runs: usize,
    only: &str,
) -> anyhow::Result<(Vec<Single>, Vec<Concurrent>)> {
    let www = root.join("www");
    fs::create_dir_all(&www)?;
    let nginx = Nginx::start(&root.join("nginx"), &www, "1", "")?;
    let server = Server::start(artifact, &root.join("server"), &root.join("serve.log"))?;
    let mut singles = Vec::new();
    for (n, name) in SINGLE.iter().enumerate() {
        if !name.contains(only) {
            continue;
        }
        let workload = workload(name);
        let id = format!("{:02x}", 0xa0 + n);
        let src = root.join("src");
        let bytes = prepare(workload, &src, artifact, &server, &[id.as_str()])?;
        let tar_file = www.join(format!("{id}.tar"));
        run_ok(Command::new("tar").args(["-cf", path(&tar_file), "-C", path(&src), "."]))?;
        let nginx_url = format!("{}/{id}.tar", nginx.url);
        let (dst_tar, dst_nginx, client) =
            (root.join("dst-tar"), root.join("dst-nginx"), root.join("client"));
        let (mut tar, mut curl, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        server.reset_peak();
        for i in 0..=runs {
            // Each destination is removed just before its own transfer, and the order turns
            // with every run: on a virtual machine that hands freed memory back to its host
            // (free page reporting), a transfer that writes into memory freed a while before
            // pays a fault in the host for each new page, and the last of three transfers
            // after one removal of all three destinations took up to twice as long.
            let (mut tar_pipe, mut via_nginx, mut get_run) = (None, None, None);
            for turn in 0..3 {
                match (turn + i) % 3 {
                    0 => {
                        remove(&dst_tar);
                        fs::create_dir(&dst_tar)?;
                        tar_pipe = Some(pipe(
                            root,
                            &["tar", "-cf", "-", "-C", path(&src), "."],
                            &["tar", "-xf", "-", "-C", path(&dst_tar)],
                        )?);
                    }
                    1 => {
                        remove(&dst_nginx);
                        fs::create_dir(&dst_nginx)?;
                        via_nginx = Some(pipe(
                            root,
                            &["curl", "-sSf", &nginx_url],
                            &["tar", "-xf", "-", "-C", path(&dst_nginx)],
                        )?);
                    }
                    _ => {
                        remove(&client);
                        get_run =
                            Some(get(artifact, &client, &id, &server.url, &root.join("rss-get"))?);
                    }
                }
            }
            let (Some(tar_pipe), Some(via_nginx), Some(get)) = (tar_pipe, via_nginx, get_run)
            else {
                unreachable!("each of the three transfers ran once");
            };
            if i == 0 {
                let tree = client.join("objects").join(&id).join("tree");
                same_tree(&dst_tar, &tree, name)?;
                same_tree(&dst_tar, &dst_nginx, name)?;
            } else {
                tar.push(tar_pipe);
                curl.push(via_nginx);
                ours.push(get);
            }
            progress();
        }
        let server_kib = server.peak_kib();
        println!(
            " {name}: tar pipe {:.3} s, nginx + curl {:.3} s, artifact get {:.3} s",
            median(&tar),
            median(&curl),
            median(&ours)
        );
        // One more `get`, recorded, after the measured ones (a full run only).
        let flame = FLAMES.iter().find(|(w, _)| *w == *name && only.is_empty()).map(|(_, f)| *f);
        if let Some(flame) = flame {
            remove(&client);
            let argv = get_argv(artifact, &client, &id, &server.url);
            let title = format!("artifact get, {name}");
            super::flame::record_pair(&root.join("perf"), flame, &title, server.pid(), &argv)?;
        }
        singles.push(Single { workload, bytes, tar, nginx: curl, ours, server_kib, flame });
        for dir in [&dst_tar, &dst_nginx, &client, &src] {
            remove(dir);
        }
        let _ = fs::remove_file(&tar_file);
        run_ok(Command::new(artifact).args(["--root", path(&server.root), "rm", &id]))?;
    }
    let mut concurrent = Vec::new();
    if CONCURRENT_PHASE.contains(only) {
        concurrent = measure_concurrent(root, artifact, &server, runs)?;
    }
    server.stop()?;
    nginx.stop();
    Ok((singles, concurrent))
}

/// Aggregate throughput of N `artifact get` processes at once, each with its own id and cache.
fn measure_concurrent(
    root: &Path,
    artifact: &Path,
    server: &Server,
    runs: usize,
) -> anyhow::Result<Vec<Concurrent>> {
    let most = CLIENTS.iter().copied().max().unwrap_or(1);
    let ids: Vec<String> = (0..most).map(|k| format!("c0{k:04x}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let src = root.join("src");
    let bytes = prepare(workload(CONCURRENT), &src, artifact, server, &ids)?;
    remove(&src);
    let mut results = Vec::new();
    for &clients in CLIENTS {
        server.reset_peak();
        let (mut secs, mut client_kib) = (Vec::new(), 0);
        for i in 0..=runs {
            let dirs: Vec<PathBuf> =
                (0..clients).map(|k| root.join(format!("client-{k}"))).collect();
            let rss: Vec<PathBuf> = (0..clients).map(|k| root.join(format!("rss-{k}"))).collect();
            let start = Instant::now();
            let children = (0..clients)
                .map(|k| {
                    let argv = get_argv(artifact, &dirs[k], ids[k], &server.url);
                    timed(&argv, &rss[k]).stdout(Stdio::null()).spawn()
                })
                .collect::<Result<Vec<Child>, _>>()?;
            let mut failed = 0;
            for mut child in children {
                failed += usize::from(!child.wait()?.success());
            }
            let wall = start.elapsed().as_secs_f64();
            ensure!(failed == 0, "{failed} of {clients} concurrent `artifact get` failed");
            if i > 0 {
                secs.push(wall);
                for file in &rss {
                    client_kib = client_kib.max(read_rss(file)?);
                }
            }
            for dir in &dirs {
                remove(dir);
            }
            progress();
        }
        let server_kib = server.peak_kib();
        println!(" {clients} clients: {:.3} s", median_of(secs.clone()));
        results.push(Concurrent { clients, bytes, secs, client_kib, server_kib });
    }
    for id in &ids {
        run_ok(Command::new(artifact).args(["--root", path(&server.root), "rm", id]))?;
    }
    Ok(results)
}

fn workload(name: &str) -> &'static Workload {
    WORKLOADS.iter().find(|w| w.name == name).expect("a workload of the tarstream suite")
}

/// Generates `workload` at `src` and imports it into the server's cache under each of `ids`;
/// returns the bytes of file content in the tree.
fn prepare(
    workload: &Workload,
    src: &Path,
    artifact: &Path,
    server: &Server,
    ids: &[&str],
) -> anyhow::Result<u64> {
    remove(src);
    println!("bench http: generating {} and adding it to the server's cache", workload.name);
    (workload.make)(src).with_context(|| format!("generating {}", workload.name))?;
    for id in ids {
        run_ok(Command::new(artifact).args(["--root", path(&server.root), "add", id, path(src)]))?;
    }
    content_bytes(src)
}

fn get_argv<'a>(artifact: &'a Path, client: &'a Path, id: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![path(artifact), "--root", path(client), "get", id, "--from", url]
}

/// One `artifact get` into a fresh cache at `client`, under `/usr/bin/time`.
fn get(artifact: &Path, client: &Path, id: &str, url: &str, rss: &Path) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let status = timed(&get_argv(artifact, client, id, url), rss).stdout(Stdio::null()).status()?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(status.success(), "`artifact get {id}` failed");
    Ok(Sample { secs, rss_kib: (read_rss(rss)?, 0) })
}

/// `artifact serve` on 127.0.0.1, port chosen by the system.
struct Server {
    daemon: Daemon,
    root: PathBuf,
    url: String,
}

impl Server {
    fn start(artifact: &Path, root: &Path, log: &Path) -> anyhow::Result<Server> {
        // The concurrent clients all come from 127.0.0.1 and stand for as many machines: the
        // per-address stream cap (default 16) must not turn them away.
        let mut child = Command::new(artifact)
            .args(["--root", path(root), "serve", "--listen", "127.0.0.1:0"])
            .args(["--max-streams-per-peer", "64"])
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log)?)
            .spawn()
            .context("starting artifact serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let daemon = Daemon(child);
        // "serving ROOT on http://ADDR", once it listens.
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.split_whitespace().last().filter(|url| url.starts_with("http://"));
        let Some(url) = url else {
            bail!("artifact serve did not announce its address (log: {})", log.display());
        };
        Ok(Server { url: url.to_owned(), root: root.to_owned(), daemon })
    }

    fn pid(&self) -> u32 {
        self.daemon.0.id()
    }

    /// Starts a new peak-RSS measurement (`VmHWM`), if the kernel lets us.
    fn reset_peak(&self) {
        let _ = fs::write(format!("/proc/{}/clear_refs", self.daemon.0.id()), "5");
    }

    /// The peak RSS in KiB since the last reset (or since the start).
    fn peak_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.daemon.0.id())).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
        line.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// SIGTERM, and a graceful exit.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.daemon.0.id().to_string();
        run_ok(Command::new("kill").args(["-TERM", &pid]))?;
        let status = self.daemon.0.wait()?;
        ensure!(status.success(), "artifact serve did not shut down cleanly: {status}");
        Ok(())
    }
}

/// nginx on 127.0.0.1, serving `www`, with everything of its own under `dir`.
pub(crate) struct Nginx {
    daemon: Daemon,
    pub(crate) url: String,
}

impl Nginx {
    /// `workers`: the value of `worker_processes` (`1`, `auto`); `extra`: more directives for
    /// the `http` block, each line indented and ended.
    pub(crate) fn start(
        dir: &Path,
        www: &Path,
        workers: &str,
        extra: &str,
    ) -> anyhow::Result<Nginx> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let built =
            String::from_utf8_lossy(&Command::new(NGINX).arg("-V").output()?.stderr).into_owned();
        let mut temp = String::new();
        for module in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let without = format!("--without-http_{module}_module");
            if module == "client_body" || !built.contains(&without) {
                let tmp = dir.join("tmp").join(module);
                fs::create_dir_all(&tmp)?;
                temp.push_str(&format!("    {module}_temp_path {};\n", path(&tmp)));
            }
        }
        let conf = dir.join("nginx.conf");
        let d = path(dir);
        fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n    access_log off;\n    sendfile on;\n    tcp_nopush on;\n{extra}    \
                 default_type application/x-tar;\n{temp}    \
                 server {{\n        listen 127.0.0.1:{port};\n        root {};\n    }}\n}}\n",
                path(www)
            ),
        )?;
        let daemon = Daemon(
            Command::new(NGINX)
                .args(["-p", d, "-c", path(&conf), "-e", &format!("{d}/error.log")])
                .stdout(Stdio::null())
                .spawn()
                .context("starting nginx")?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "nginx did not listen on port {port} (see {d})");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx { daemon, url: format!("http://127.0.0.1:{port}") })
    }

    /// The master process's id (its workers are its children).
    pub(crate) fn pid(&self) -> u32 {
        self.daemon.0.id()
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").args(["-QUIT", &self.daemon.0.id().to_string()]).status();
        let _ = self.daemon.0.wait();
    }
}

/// A background process, killed if still running when dropped (on an error).
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Installs Debian's nginx-light if there is no nginx.
pub(crate) fn ensure_nginx() -> anyhow::Result<()> {
    if Path::new(NGINX).is_file() {
        return Ok(());
    }
    println!("bench http: installing nginx-light (apt-get)");
    let status = Command::new("apt-get")
        .args(["install", "-y", "nginx-light"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    ensure!(status.success() && Path::new(NGINX).is_file(), "apt-get install nginx-light failed");
    Ok(())
}

pub(crate) fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdout(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

pub(crate) fn same_tree(a: &Path, b: &Path, name: &str) -> anyhow::Result<()> {
    let diff = Command::new("diff").args(["-r", "--no-dereference", path(a), path(b)]).output()?;
    ensure!(diff.status.success(), "{name}: {} and {} differ", a.display(), b.display());
    Ok(())
}

/// Bytes of regular-file content under `dir`.
fn content_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += content_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Removes a tree, read-only directories (as the cache makes them) included.
pub(crate) fn remove(dir: &Path) {
    if fs::remove_dir_all(dir).is_err() && dir.exists() {
        let _ = Command::new("chmod").args(["-R", "u+w", path(dir)]).status();
        let _ = fs::remove_dir_all(dir);
    }
}

pub(crate) fn progress() {
    use std::io::Write;
    print!(".");
    let _ = std::io::stdout().flush();
}

pub(crate) fn nginx_version() -> String {
    Command::new(NGINX)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().replace("nginx version: ", ""))
        .unwrap_or_else(|_| "nginx: unknown".to_owned())
}

pub(crate) fn secs(s: f64) -> String {
    format!("{s:.3} s")
}

pub(crate) fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.0} MiB/s", bytes as f64 / f64::from(1 << 20) / secs)
}

fn opt_mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), mib)
}

fn report(singles: &[Single], concurrent: &[Concurrent], runs: usize, base: &Path) -> String {
    let mut out = String::new();
    out.push_str("## http: `artifact get` over loopback against nginx + curl and the tar pipe\n\n");
    out.push_str(&format!(
        "Measured by `cargo xtask bench http` on {}, {}, {} (nginx-light), {}, in `{}` (tmpfs); every server and client on the same machine, over 127.0.0.1.\n",
        machine(),
        first_line(&command_line("tar", &["--version"])),
        nginx_version(),
        first_line(&command_line("curl", &["--version"])).split(" (").next().unwrap_or(""),
        base.display(),
    ));
    out.push_str(&format!(
        "Each transfer ran once to warm up (the three results compared with `diff -r`), then {runs} more time{}, the three alternating in an order that turns with each run, each into a destination removed just before it (this machine is a virtual machine that gives freed memory back to its host, and a transfer writing into memory freed earlier pays a host fault per page: the last of three transfers after one removal of all three destinations took up to twice as long); times are medians of the wall time of the whole command (both sides of a pipe); peak RSS is the largest seen.\n\n",
        if runs == 1 { "" } else { "s" }
    ));
    out.push_str("| workload | content | tar pipe | nginx + curl \\| tar | artifact get | artifact / tar pipe | artifact / nginx | artifact get rate |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in singles {
        let (t, n, a) = (median(&s.tar), median(&s.nginx), median(&s.ours));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |\n",
            s.workload.name,
            mib(s.bytes / 1024),
            secs(t),
            secs(n),
            secs(a),
            a / t,
            a / n,
            rate(s.bytes, a),
        ));
    }
    let flames: Vec<String> = singles
        .iter()
        .filter_map(|s| {
            let name = s.flame?;
            let (_, client) = super::flame::svg_path(&format!("{name}-client"));
            let (_, server) = super::flame::svg_path(&format!("{name}-server"));
            Some(format!("{}: [client]({client}), [server]({server})", s.workload.name))
        })
        .collect();
    if !flames.is_empty() {
        out.push_str(&format!(
            "\nFlame graphs of one more `artifact get` after the measured ones, the client and the server recorded together (`perf record -F 499 --call-graph dwarf`, drawn with inferno; kernel frames included): {}.\n",
            flames.join("; ")
        ));
    }
    out.push_str("\nPeak RSS:\n\n");
    out.push_str("| workload | `artifact serve` | `artifact get` | `curl` / `tar -x` (nginx) | `tar -c` / `tar -x` (pipe) |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    for s in singles {
        let (curl, tar) = (max_rss(&s.nginx), max_rss(&s.tar));
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} | {} / {} |\n",
            s.workload.name,
            opt_mib(s.server_kib),
            mib(max_rss(&s.ours).0),
            mib(curl.0),
            mib(curl.1),
            mib(tar.0),
            mib(tar.1),
        ));
    }
    if !concurrent.is_empty() {
        out.push_str(&format!(
            "\nConcurrent clients: N `artifact get` processes started at once, each fetching a distinct id (a copy of the {CONCURRENT} tree) into its own fresh cache, from the one server (`--max-streams` 64, the default); the time is from the first start to the last exit.\n\n"
        ));
        out.push_str("| clients | time | aggregate | artifacts/s | peak RSS `artifact serve` | peak RSS per `artifact get` |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|\n");
        for c in concurrent {
            let t = median_of(c.secs.clone());
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {} |\n",
                c.clients,
                secs(t),
                rate(c.bytes * c.clients as u64, t),
                c.clients as f64 / t,
                opt_mib(c.server_kib),
                mib(c.client_kib),
            ));
        }
    }
    out.push_str(&per_stream(concurrent));
    out.push_str(&targets(singles));
    out.push_str(
        "\nWhere the time goes (`perf record -e cpu-clock` on the server and on the client during a 1 GiB `get`, and on the tar pipe): everything is CPU-bound on the two cores, which the server and the client share.\n\
         About half of the client's CPU time, as of `tar -x`'s, is the kernel copying the data into the new file's pages (`copy_folio_from_iter_atomic` on tmpfs); that part is the same for both.\n\
         Beyond it, the tar pipe has two pipe copies; `artifact get` has loopback TCP and HTTP instead (the server's copy into the socket and the softirq work of delivering it, the client's copy out: nginx + curl pay those too, and the nginx column shows what they cost), \
         the BLAKE3 hash of the content that the client computes to check the tree end to end (a tenth of the client's CPU time, on a thread of its own; the server sends with `tarstream::send_without_digest_buffered`, as the digest is in the artifact's metadata), \
         one user-space copy on the server (tarstream's output buffer into the body's chunks, a tenth of the server's CPU time) and two on the client (the body's chunks into the receive job's buffers, and those into tarstream's; together a tenth of the client's CPU time), \
         and the thread switches between the blocking tar side and the async HTTP side of each end (a tenth of the server's CPU time).\n\
         With many small files, creating them is most of both sides' time (`openat` alone is a fifth of the client's CPU time on 10,000 x 4 KiB); what `artifact get` adds to what `tar -x` does is the end-to-end hash (about a tenth of the client's CPU time there) and the cache's seal of the received tree read-only, a walk with one `fchmod` per entry (about a twentieth).\n\
         nginx + curl | tar does neither, and nginx sends the tree as one prebuilt file, where `artifact serve`, like `tar -c`, walks it and reads every file.\n",
    );
    out.push_str(&out_of_reach(singles));
    out.push_str("\nWorkloads: those of the tarstream section above.\n");
    out.push_str("\nThe commands (`artifact` is target/release/artifact; each transfer under `/usr/bin/time -f %M`):\n\n```sh\n");
    out.push_str(
        "artifact --root \"$SERVER\" serve --listen 127.0.0.1:0    # once; prints its URL\n\
         artifact --root \"$SERVER\" add \"$ID\" \"$SRC\"               # once per workload (and per id)\n\
         tar -cf \"$WWW/$ID.tar\" -C \"$SRC\" .                       # once per workload, for nginx\n\
         tar -cf - -C \"$SRC\" . | tar -xf - -C \"$DST\"                      # tar pipe\n\
         curl -sSf \"http://127.0.0.1:$PORT/$ID.tar\" | tar -xf - -C \"$DST\"  # nginx + curl | tar\n\
         artifact --root \"$EMPTY\" get \"$ID\" --from \"$URL\"                 # artifact get, a fresh cache each time\n```\n\n",
    );
    out.push_str(
        "nginx runs `daemon off; worker_processes 1;` with `sendfile on; tcp_nopush on; access_log off;`, and its own pid, log and temp paths.\n",
    );
    out
}

/// Where `artifact get` misses the tar pipe's time by more than the target, what the HTTP
/// transfer alone costs there: nginx + curl's time against the tar pipe's, and ours against
/// theirs.
fn out_of_reach(singles: &[Single]) -> String {
    let ratio = |a: &[Sample], b: &[Sample]| median(a) / median(b);
    let (beyond, within): (Vec<&Single>, Vec<&Single>) = singles
        .iter()
        .filter(|s| ratio(&s.ours, &s.tar) > TIME_TARGET)
        .partition(|s| ratio(&s.nginx, &s.tar) > TIME_TARGET);
    let list = |of: &[&Single], f: &dyn Fn(&Single) -> f64| -> String {
        of.iter()
            .map(|s| format!("{:.2} on {}", f(s), s.workload.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let theirs = |s: &Single| ratio(&s.nginx, &s.tar);
    let ours = |s: &Single| ratio(&s.ours, &s.tar);
    let ours_to_theirs = |s: &Single| ratio(&s.ours, &s.nginx);
    let mut out = String::new();
    if !beyond.is_empty() {
        out.push_str(&format!(
            "Within 10% of the tar pipe is out of reach on two cores where the HTTP transfer alone costs more than that: nginx + curl, which adds only the transfer to the pipe (and sends a prebuilt file with `sendfile`, no copy), misses it too (its time over the tar pipe's: {}), and `artifact get` is close to nginx + curl (its time over theirs: {}).\n",
            list(&beyond, &theirs),
            list(&beyond, &ours_to_theirs),
        ));
    }
    if !within.is_empty() {
        out.push_str(&format!(
            "Where nginx + curl stays within 10% of the tar pipe (its time over the tar pipe's: {}), `artifact get` does not ({}): the difference is its end-to-end hash and the seal, above.\n",
            list(&within, &theirs),
            list(&within, &ours),
        ));
    }
    out
}

/// The server's memory per concurrent stream, in words: the growth of its peak RSS from one
/// client to each larger number, per added stream, against the aim.
fn per_stream(concurrent: &[Concurrent]) -> String {
    let Some(Concurrent { clients: one, server_kib: Some(low), .. }) = concurrent.first() else {
        return String::new();
    };
    let growth: Vec<(usize, f64)> = concurrent[1..]
        .iter()
        .filter_map(|c| {
            let added = c.clients.checked_sub(*one).filter(|&n| n > 0)?;
            let kib = c.server_kib?.saturating_sub(*low) as f64 / added as f64;
            Some((c.clients, kib / 1024.0))
        })
        .collect();
    if growth.is_empty() {
        return String::new();
    }
    let worst = growth.iter().map(|(_, mib)| *mib).fold(0.0, f64::max);
    let each: Vec<String> =
        growth.iter().map(|(n, mib)| format!("{mib:.2} MiB from {one} to {n}")).collect();
    format!(
        "\nServer memory per concurrent stream (the growth of its peak RSS per added stream): {}.\n\
         Aim: at most {PER_STREAM_TARGET_MIB} MiB per stream: {}.\n\
         A stream from the files holds at most six buffers of 128 KiB, lent by a pool the streams share: \
         tarstream's output buffer, the chunk held back until the read lock is released, two queued for the body, and what the HTTP stack is writing (one chunk, and the next while the tail of that one goes out).\n",
        each.join(", "),
        if worst <= PER_STREAM_TARGET_MIB { "met" } else { "not met" },
    )
}

/// Whether the issue's targets are met, in words.
fn targets(singles: &[Single]) -> String {
    let mut out = String::new();
    if singles.is_empty() {
        return out;
    }
    let (mut met, mut missed) = (Vec::new(), Vec::new());
    for s in singles {
        let ratio = median(&s.ours) / median(&s.tar);
        let entry = format!("{} ({ratio:.2})", s.workload.name);
        if ratio <= TIME_TARGET { met.push(entry) } else { missed.push(entry) }
    }
    out.push_str("\nTarget: `artifact get` within 10% of the tar pipe's time. ");
    match (met.is_empty(), missed.is_empty()) {
        (_, true) => out.push_str(&format!("Met on every workload: {}.\n", met.join(", "))),
        (true, _) => out.push_str(&format!("Not met: {}.\n", missed.join(", "))),
        _ => {
            out.push_str(&format!("Met on {}; not met on {}.\n", met.join(", "), missed.join(", ")))
        }
    }
    if let Some(big) = singles.iter().find(|s| s.workload.name == BIG) {
        let client = max_rss(&big.ours).0;
        let verdict = |kib: Option<u64>| match kib {
            Some(kib) if kib <= RSS_TARGET_KIB => "met",
            Some(_) => "not met",
            None => "not measured",
        };
        out.push_str(&format!(
            "Target: at most 64 MiB peak RSS on each side while moving the 1 GiB file: server {} ({}), client {} ({}).\n",
            opt_mib(big.server_kib),
            verdict(big.server_kib),
            mib(client),
            verdict(Some(client)),
        ));
    }
    out
}
