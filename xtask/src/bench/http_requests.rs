//! `cargo xtask bench http`, its `requests` part: the request rate of a small artifact, `wrk`
//! against `artifact serve` and against nginx serving the same artifact as a prebuilt tar
//! file, in the same run.
//!
//! One `artifact serve` (the release build, `--log warn`) and one nginx (`sendfile on`,
//! `access_log off`, `log_not_found off`, its config written here) listen on 127.0.0.1, with
//! as many threads answering on each side: first one each (`serve --threads 1`, nginx
//! `worker_processes 1`), then one per core each (`serve`'s default, nginx `worker_processes
//! auto`). The artifact is one 4 KiB file of random bytes; nginx serves the very stream that
//! `artifact serve` answers (fetched once with curl and compared byte for byte). Each case
//! runs `wrk -t1 -cN -dS --latency` once to warm up, then `$ARTIFACT_BENCH_RUNS` times
//! (default 3) on each server, alternating; the table gives the median request rate and the
//! median p99 latency. A miss is a `GET` of an id (a file name for nginx) that is not there.
//! `$ARTIFACT_BENCH_WRK_SECS` sets S (default 3).

use std::{
    env, fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, bail, ensure};

use super::{
    http::{Daemon, Nginx, nginx_version, remove},
    tarstream::{command_line, first_line, machine, median_of, path},
};
use crate::prereq;

/// The artifact's id (and, with `.tar`, the file nginx serves).
const ID: &str = "5a11";
const MISSING: &str = "0bad";
/// The size of the artifact's one file.
const FILE_BYTES: usize = 4096;
/// The aim: at least this share of nginx's request rate.
const AIM: f64 = 0.8;

/// One kind of request, at one concurrency.
struct Case {
    name: &'static str,
    connections: u32,
    hit: bool,
}

const CASES: &[Case] = &[
    Case { name: "GET hit, 4 KiB artifact", connections: 1, hit: true },
    Case { name: "GET hit, 4 KiB artifact", connections: 32, hit: true },
    Case { name: "GET miss (404)", connections: 1, hit: false },
    Case { name: "GET miss (404)", connections: 32, hit: false },
];

/// How many threads answer requests, the same on both sides.
struct Pairing {
    name: &'static str,
    /// `artifact serve`'s arguments for it.
    serve: &'static [&'static str],
    /// nginx's `worker_processes`.
    nginx: &'static str,
}

const PAIRINGS: &[Pairing] = &[
    Pairing { name: "1 each", serve: &["--threads", "1"], nginx: "1" },
    Pairing { name: "1 per core each", serve: &[], nginx: "auto" },
];

/// What wrk reported for one run, and the server's CPU time per request.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    p99_us: f64,
    /// Requests completed.
    requests: f64,
    /// Microseconds of CPU (user and system, all threads and child processes) per request;
    /// `None` where `/proc` does not tell.
    cpu_us: Option<f64>,
}

/// A case with its medians on `artifact serve` and on nginx.
type Row = (&'static Pairing, &'static Case, Measured, Measured);

/// What the part measured: the rows, the server's small-stream counters, the stream's length.
type Measurements = (Vec<Row>, String, u64);

/// Medians over the runs of one case on one server.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rate: f64,
    p99_us: f64,
    cpu_us: Option<f64>,
}

/// The name `$ARTIFACT_BENCH_ONLY` matches for this part.
const PHASE: &str = "requests";

/// Runs the `requests` part with the release binary `artifact`, under `base` (tmpfs), unless
/// `only` (`$ARTIFACT_BENCH_ONLY`) names something else; returns its Markdown.
pub(crate) fn section(artifact: &Path, base: &Path, only: &str) -> anyhow::Result<String> {
    if !PHASE.contains(only) {
        return Ok(String::new());
    }
    prereq::ensure(prereq::BENCH_REQUESTS)?;
    let runs: usize =
        env::var("ARTIFACT_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let secs: u64 =
        env::var("ARTIFACT_BENCH_WRK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let root = base.join(format!("artifact-bench-requests-{}", std::process::id()));
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = measure(artifact, &root, runs, secs);
    remove(&root);
    let (rows, kept, stream_len) = result?;
    Ok(report(&rows, &kept, stream_len, runs, secs, base))
}

fn measure(artifact: &Path, root: &Path, runs: usize, secs: u64) -> anyhow::Result<Measurements> {
    let src = root.join("src");
    fs::create_dir_all(&src)?;
    let mut content = vec![0u8; FILE_BYTES];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for byte in &mut content {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    fs::write(src.join("object.o"), &content)?;
    let server_root = root.join("server");
    let status = Command::new(artifact)
        .args(["--root", path(&server_root), "add", ID, path(&src)])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "artifact add failed");
    let www = root.join("www");
    fs::create_dir_all(&www)?;
    let tar = www.join(format!("{ID}.tar"));
    let mut rows = Vec::new();
    let mut kept = String::new();
    for (n, pairing) in PAIRINGS.iter().enumerate() {
        let dir = root.join(format!("pairing-{n}"));
        fs::create_dir_all(&dir)?;
        let log = dir.join("serve.log");
        let server = Server::start(artifact, &server_root, pairing.serve, &log)?;
        if n == 0 {
            let hit = format!("{}/artifact?id={ID}", server.url);
            let fetched = Command::new("curl").args(["-sSf", "-o", path(&tar), &hit]).status()?;
            ensure!(fetched.success(), "curl could not fetch the artifact from artifact serve");
        }
        // No not-found log, and keep-alive connections as long as wrk's.
        let nginx = Nginx::start(
            &dir.join("nginx"),
            &www,
            pairing.nginx,
            "    log_not_found off;\n    keepalive_requests 1000000;\n",
        )?;
        rows.extend(measure_pairing(pairing, &server, &nginx, &tar, runs, secs)?);
        kept = metrics_summary(&server.url);
        server.stop()?;
        nginx.stop();
    }
    Ok((rows, kept, fs::metadata(&tar)?.len()))
}

/// The cases against one server and one nginx with `pairing`'s threads.
fn measure_pairing(
    pairing: &'static Pairing,
    server: &Server,
    nginx: &Nginx,
    tar: &Path,
    runs: usize,
    secs: u64,
) -> anyhow::Result<Vec<Row>> {
    let ours_hit = format!("{}/artifact?id={ID}", server.url);
    let ours_miss = format!("{}/artifact?id={MISSING}", server.url);
    let theirs_hit = format!("{}/{ID}.tar", nginx.url);
    let theirs_miss = format!("{}/{MISSING}.tar", nginx.url);
    let from_nginx = Command::new("curl").args(["-sSf", &theirs_hit]).output()?;
    ensure!(
        from_nginx.status.success() && from_nginx.stdout == fs::read(tar)?,
        "nginx does not serve the artifact's stream"
    );
    for url in [&ours_miss, &theirs_miss] {
        let code = command_line("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", url]);
        ensure!(code.trim() == "404", "{url}: {code} rather than 404");
    }
    let mut rows = Vec::new();
    let (ours_pid, theirs_pid) = (server.daemon.0.id(), nginx.pid());
    for case in CASES {
        let (ours, theirs) =
            if case.hit { (&ours_hit, &theirs_hit) } else { (&ours_miss, &theirs_miss) };
        wrk(ours, case.connections, 1, ours_pid)?;
        wrk(theirs, case.connections, 1, theirs_pid)?;
        let (mut a, mut n) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            a.push(wrk(ours, case.connections, secs, ours_pid)?);
            n.push(wrk(theirs, case.connections, secs, theirs_pid)?);
        }
        let (a, n) = (medians(&a), medians(&n));
        println!(
            " {} ({} conn., threads {}): artifact serve {:.0} req/s, nginx {:.0} req/s",
            case.name, case.connections, pairing.name, a.rate, n.rate
        );
        rows.push((pairing, case, a, n));
    }
    Ok(rows)
}

fn medians(runs: &[Run]) -> Measured {
    let cpu: Option<Vec<f64>> = runs.iter().map(|r| r.cpu_us).collect();
    Measured {
        rate: median_of(runs.iter().map(|r| r.rate).collect()),
        p99_us: median_of(runs.iter().map(|r| r.p99_us).collect()),
        cpu_us: cpu.map(median_of),
    }
}

/// One `wrk` run: requests per second, the p99 latency, and the CPU time per request of the
/// server whose process is `pid`.
fn wrk(url: &str, connections: u32, secs: u64, pid: u32) -> anyhow::Result<Run> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency"]);
    let before = cpu_ticks(pid);
    let out = cmd.arg(url).output().context("running wrk")?;
    let after = cpu_ticks(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    ensure!(!text.contains("Socket errors"), "wrk saw socket errors: {text}");
    let mut run = parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    if let (Some(before), Some(after)) = (before, after) {
        let ticks = after.saturating_sub(before) as f64;
        run.cpu_us = Some(ticks * 1e6 / clock_ticks_per_second() / run.requests.max(1.0));
    }
    Ok(run)
}

/// The request rate, p99 latency and request count in wrk's `--latency` report.
fn parse_wrk(text: &str) -> anyhow::Result<Run> {
    let mut rate = None;
    let mut p99 = None;
    let mut requests = None;
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            rate = value.trim().parse::<f64>().ok();
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = duration_us(value.trim());
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse::<f64>().ok();
        }
    }
    match (rate, p99, requests) {
        (Some(rate), Some(p99_us), Some(requests)) => {
            Ok(Run { rate, p99_us, requests, cpu_us: None })
        }
        _ => bail!("no `Requests/sec`, `99%` or `requests in` line"),
    }
}

/// The CPU time, in clock ticks, that process `pid` and its children (nginx's worker) have
/// used so far, user and system, their ended threads included; `None` where `/proc` does not
/// tell.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let children = children.split_whitespace().map(|child| ticks_of(child.parse().ok()?));
    ticks_of(pid)?.checked_add(children.sum::<Option<u64>>()?)
}

/// `utime + stime` of `/proc/PID/stat`.
fn ticks_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name start at the third, the state; utime is the 14th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The unit of [`cpu_ticks`] (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    command_line("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0)
}

/// A wrk duration (`412.00us`, `1.23ms`, `2.00s`, `1.50m`) in microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(number * scale)
}

/// The server's counters of the streams kept in memory, as one sentence.
fn metrics_summary(url: &str) -> String {
    let text = command_line("curl", &["-sSf", &format!("{url}/metrics")]);
    let value = |name: &str| {
        text.lines()
            .find(|line| line.split(' ').next() == Some(name))
            .and_then(|line| line.rsplit(' ').next())
            .unwrap_or("n/a")
            .to_owned()
    };
    format!(
        "`/metrics` at the end: {} hits and {} misses of the small-stream memory, {} bytes kept.",
        value("artifact_http_small_hits_total"),
        value("artifact_http_small_misses_total"),
        value("artifact_http_small_bytes"),
    )
}

/// CPU time per request, or `n/a`.
fn cpu(us: Option<f64>) -> String {
    us.map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1} µs"))
}

fn latency(us: f64) -> String {
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.0} µs") }
}

fn report(
    rows: &[Row],
    kept: &str,
    stream_len: u64,
    runs: usize,
    secs: u64,
    base: &Path,
) -> String {
    let mut out = String::new();
    out.push_str("\n### Requests: small artifacts against nginx\n\n");
    out.push_str(&format!(
        "Measured by `cargo xtask bench http` on {}, {}, {} (nginx-light), in `{}` (tmpfs); wrk, the server and nginx on the same machine, over 127.0.0.1.\n",
        machine(),
        first_line(&command_line("wrk", &["-v"])).split(" [").next().unwrap_or("wrk"),
        nginx_version(),
        base.display(),
    ));
    out.push_str(&format!(
        "The artifact is one file of {FILE_BYTES} random bytes (a stream of {stream_len} bytes); nginx serves the same stream as a prebuilt tar file, with `sendfile on` and no access or not-found log; `artifact serve` runs with `--log warn` and its defaults otherwise (64 MiB of memory for small streams).\n\
         Both answer with as many threads: first one each (`artifact serve --threads 1`, nginx `worker_processes 1`), then one per core each (`serve`'s default, nginx `worker_processes auto`). wrk's one thread shares the same cores.\n"
    ));
    out.push_str(&format!(
        "Each case ran `wrk -t1 -cN -d{secs}s --latency` once for a second to warm up, then {runs} time{} on each server, alternating; the figures are medians.\n\
         CPU is the server's processor time (user and system, all its threads; nginx's master and workers) per request answered, from `/proc`; it moves less than the rate with what else the machine runs.\n\n",
        if runs == 1 { "" } else { "s" }
    ));
    out.push_str(
        "| request | connections | threads | `artifact serve` | p99 | CPU | nginx | p99 | CPU | ratio |\n",
    );
    out.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (pairing, case, a, n) in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} req/s | {} | {} | {:.0} req/s | {} | {} | {:.2} |\n",
            case.name,
            case.connections,
            pairing.name,
            a.rate,
            latency(a.p99_us),
            cpu(a.cpu_us),
            n.rate,
            latency(n.p99_us),
            cpu(n.cpu_us),
            a.rate / n.rate,
        ));
    }
    out.push_str(&format!("\n{kept}\n"));
    let below: Vec<String> = rows
        .iter()
        .filter(|(_, _, a, n)| a.rate < AIM * n.rate)
        .map(|(pairing, case, a, n)| {
            format!(
                "{} with {}, threads {} ({:.2})",
                case.name,
                case.connections,
                pairing.name,
                a.rate / n.rate
            )
        })
        .collect();
    if below.is_empty() {
        out.push_str(&format!("\nAim: every `GET` case at {AIM}× nginx's rate or better: met.\n"));
    } else {
        out.push_str(&format!(
            "\nAim: every `GET` case at {AIM}× nginx's rate or better: not met for {}.\n",
            below.join(", ")
        ));
    }
    out.push_str(PROFILE);
    out.push_str("\nThe commands:\n\n```sh\n");
    out.push_str(
        "artifact --root \"$SERVER\" add 5a11 \"$SRC\"                 # one 4 KiB file\n\
         artifact --root \"$SERVER\" --log warn serve --listen 127.0.0.1:0 --threads 1  # then without --threads\n\
         curl -sSf -o \"$WWW/5a11.tar\" \"$URL/artifact?id=5a11\"      # the same stream, for nginx\n\
         wrk -t1 -c32 -d3s --latency \"$URL/artifact?id=5a11\"        # GET hit (also -c1)\n\
         wrk -t1 -c32 -d3s --latency \"$URL/artifact?id=0bad\"        # GET miss\n\
         wrk -t1 -c32 -d3s --latency \"http://127.0.0.1:$PORT/5a11.tar\"  # nginx, likewise\n```\n",
    );
    out
}

/// What the profiles of `artifact serve` under this load showed, and what was changed for it.
const PROFILE: &str = "
Where a request's time goes in `artifact serve`, from profiles of the release server under `wrk -t1 -c32` (`perf record -e cpu-clock -g` for the split between kernel and user space, callgrind for user-space instructions per request over 4,000 keep-alive `GET`s on 32 connections, `strace -c -f` for system calls):

- Most of the CPU time is the kernel's (60% for a miss after the changes below, one runtime thread): the loopback TCP send, 35-45% (a `writev` on 127.0.0.1 also delivers into the receiving socket and wakes wrk), `recvfrom` 7%, `epoll_wait` 5%, and, until the last change below, the `statx` of a miss: 4% on ext4 but 11% on tmpfs, which keeps no negative dentries (each miss allocated one and killed it; nginx's `open` of a missing file pays the same). nginx spends 78% of its time in the kernel.
- A hit made four to six system calls: `recvfrom`, `writev`, and for the read lock an `flock` to take it, an 8-byte `pread` of the lock file's generation and an `flock` to give it back, all three skipped when another request of the process held the lock.
  Changed: an answer from memory reads none of the artifact's files, so it takes no read lock (`Cache::stat_quick`): the `pread` of the generation alone tells that the artifact is still committed as kept. A hit now makes three: `recvfrom`, `pread`, `writev` (counted with `perf stat -e 'syscalls:sys_enter_*'`: two `flock` per hit before, none after).
  With 32 connections on two runtime threads there is also about one `futex` per five hits: two thirds of them glibc's arena lock, taken by `malloc` and `free` on both threads (`perf record -e syscalls:sys_enter_futex --call-graph dwarf`), the rest the threads waking each other.
  A miss made three: `recvfrom`, a `statx` of the metadata path, `writev`; a repeated miss now makes a `read` of the cache's inotify queue in place of the `statx` (the last change below).
- User space, before the changes below: 70,000 instructions per hit, 44% of them building the answer's headers (the digest written out twice, for `X-Artifact-Digest` and `ETag`, one byte at a time), 10% cloning the boxed services of the router's nested per-route layers, and 29% in `malloc` and `free` all told; 41,000 per miss, 17% of them writing the error's text twice.
- Changed: a kept stream carries the headers of its answer, built once when it is kept (and charged to `--small-cache` with it); the router's three layers are applied as one stack, and so are the jobs' two; the request counters of the common statuses are taken from their metric family once; a 404 writes its error's text once; an answer from memory is not listed among the transfers in flight.
- Then: 30,000 instructions per hit and 31,000 per miss (callgrind over `wrk -t1 -c32 -d4s`, the server's instructions less those of a server that answered one request), and 38 allocations per hit and 41 per miss (`perf stat -e probe_libc:malloc`): a tenth of the time in `malloc` and `free`.
  Four of them per layer came from `axum::middleware::from_fn` (the request's future boxed, the inner service boxed again and cloned), which the request middleware and the jobs' layer used; two from the header map that the `HeaderMap` extractor copies; four from the 404's error text and JSON.
- Changed: the request middleware and the jobs' layer are tower layers written out, whose futures are not boxed (the jobs' layer passes every request but `GET /metrics` straight through); `GET` reads the method, query and headers in the request's parts in place; a 404 writes its JSON body at once.
- After: 25,000 instructions per hit and 24,000 per miss; 25 allocations per hit and 28 per miss.
  What was left was mostly hyper's parsing and writing, axum's routing (each `Router::layer` still boxes and clones a service per request) and the moves of the request between the layers.
- Then the router itself. A server whose connections answered the 404 at once, in hyper's service, spent 4.8 µs of CPU per miss against 7.4 µs through the router (one runtime thread, `wrk -t1 -c32`, CPU from `/proc`): 2.6 µs went to the router, the layers and the handler.
  Changed: `artifact serve` answers `GET` and `HEAD /artifact` on a hot path (`artifact_http::serve_endpoints`): the same handler inside the same layers (span, counters, panic guard), without the router's dispatch (matching, a boxed and cloned service per route and per `Router::layer`, the futures nested in them); every other request goes through the router. The release builds before and after, three alternating rounds each: 8.5 → 7.7 µs per hit and 7.2 → 6.6 µs per miss with one runtime thread, 9.9 → 8.7 and 8.8 → 7.2 µs with two (medians).
- Then copies: the handler's future (kilobytes of state, for the blocking pool and the store) was moved through every layer, and `memcpy` took 12% of a miss's instructions. Changed: `GET` gives the answers from memory and the misses in a first, synchronous part, and the hot path boxes the rest; 18,900 → 17,500 instructions per miss and 19,500 → 18,300 per hit (callgrind over `wrk -t1 -c32 -d4s`, one runtime thread, less the instructions of a server that answered one request).
- Then allocations, 17 per miss (callgrind's callers of `malloc`). Changed: the hot path knows its connection's peer, so requests on it carry no `ConnectInfo` extension (an extension map per request: three allocations and a SipHash); a panic guard of our own replaces tower-http's `CatchPanic`, which boxed every answer's body once more (and axum then boxed that again); the metadata path of a miss's lookup is built on the stack. 17,700 → 14,800 instructions per miss and 18,500 → 17,300 per hit (as above).
- Then the lookup of a miss. On tmpfs, the lookup of a missing name allocates a dentry and frees it again: 0.79 µs for a `statx` of the metadata path against 0.23 µs on ext4 (a C loop of the call on this machine), and the kernel's time per miss was 5.2 µs against nginx's 4.9 µs (`/proc`, one runtime thread each, `wrk -t1 -c32`).
  Changed: artifact-cache remembers a miss (`absent.rs`) while its inotify watch of `objects/` reports nothing new; each lookup first reads the watch's queue (0.14 µs when it is empty), which the kernel fills before a commit's `rename` returns, so a commit that returned before the request is always seen, whichever process made it.
  Also: the 404's body is written at its exact length (two allocations fewer), and the hot path drops the unread body of `GET` and `HEAD` rather than boxing it (one fewer per request).
  The release builds before and after, three alternating rounds on tmpfs, one runtime thread: 7.1 → 5.8 µs of CPU per miss (the kernel's share 5.2 → 4.2 µs) and 137,000 → 170,000 misses/s; hits unchanged, 7.4-7.6 µs. In user space, 14,800 → 14,000 instructions per miss and 17,300 → 17,000 per hit (callgrind, start-up included).
  What is left in user space is mostly `malloc` and `free` (hyper's request, read buffer and header read timer, the 404's header map, the box of each answer's body), hyper's parsing and writing, and the timer of the header read timeout.
- `--threads N` sets how many threads answer requests (one per core by default). With wrk on the same two cores, two runtime threads spend more CPU per request than one: they wake each other (`futex`), and `malloc` and `free` on both take glibc's arena lock. So the table pairs the servers by threads, one each and then one per core each, and nginx's `worker_processes` follows.
";

/// `artifact serve` on 127.0.0.1, port chosen by the system.
struct Server {
    daemon: Daemon,
    url: String,
}

impl Server {
    fn start(artifact: &Path, root: &Path, args: &[&str], log: &Path) -> anyhow::Result<Server> {
        let mut child = Command::new(artifact)
            .args(["--root", path(root), "--log", "warn", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log)?)
            .spawn()
            .context("starting artifact serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let daemon = Daemon(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.split_whitespace().last().filter(|url| url.starts_with("http://"));
        let Some(url) = url else {
            bail!("artifact serve did not announce its address (log: {})", log.display());
        };
        Ok(Server { url: url.to_owned(), daemon })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.daemon.0.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        let status = self.daemon.0.wait()?;
        ensure!(status.success(), "artifact serve did not shut down cleanly: {status}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc() {
        let pid = std::process::id();
        let own = ticks_of(pid).expect("this process's stat");
        assert!(cpu_ticks(pid).expect("with its children") >= own);
        assert_eq!(ticks_of(u32::MAX), None);
    }

    #[test]
    fn wrk_reports_are_read() {
        let text = "Running 3s test @ http://127.0.0.1:1/x\n  1 threads and 32 connections\n\
            \x20 Latency Distribution\n     50%  412.00us\n     75%  500.00us\n     90%    1.01ms\n\
            \x20    99%    2.50ms\n  60000 requests in 3.00s, 1.00MB read\nRequests/sec:  20000.50\n\
            Transfer/sec:    341.00KB\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run.rate, 20000.5);
        assert_eq!(run.p99_us, 2500.0);
        assert_eq!(run.requests, 60000.0);
        assert_eq!(duration_us("412.00us"), Some(412.0));
        assert_eq!(duration_us("1.50s"), Some(1.5e6));
        assert!(parse_wrk("Requests/sec: 1\n").is_err());
    }
}
