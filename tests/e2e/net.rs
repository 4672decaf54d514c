//! The networked commands: `serve`, `get`, `put`, between real processes over loopback.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Output, Stdio},
};

use artifact_testkit::assert_same_tree;

use crate::support::{artifact, code, run, stderr};

/// A running `artifact serve`, stopped (SIGKILL) when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    /// Starts `artifact --root <root> serve --listen 127.0.0.1:0 <extra...>` and waits for
    /// the line that names its address.
    pub(crate) fn start(root: &Path, extra: &[&str]) -> Server {
        let mut child = artifact(["--root".as_ref(), root.as_os_str()])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("artifact serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .rsplit_once(" on ")
            .map(|(_, url)| url.to_owned())
            .unwrap_or_else(|| panic!("serve printed {line:?}"));
        assert!(line.contains(&root.display().to_string()), "serve names its root: {line:?}");
        Server { child, url }
    }

    /// Sends SIGTERM and returns the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn cli(root: &Path, args: &[&str]) -> Output {
    run(artifact(["--root".as_ref(), root.as_os_str()]).args(args))
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The JSON lines of `out` (`verify --json`), as (id, status) pairs.
pub(crate) fn statuses(out: &Output) -> Vec<(String, String)> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_str().unwrap().to_owned(), v["status"].as_str().unwrap().to_owned()))
        .collect()
}

pub(crate) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|err| panic!("{err}: {:?}", stdout(out)))
}

/// A tree with a nested file, an executable, a symlink and an empty directory.
pub(crate) fn tree(dir: &Path, text: &str) -> std::path::PathBuf {
    let src = dir.join(format!("src-{text}"));
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("data.txt"), text.repeat(10_000)).unwrap();
    std::os::unix::fs::symlink("bin/tool", src.join("tool")).unwrap();
    src
}

pub(crate) fn ok(out: &Output) {
    assert_eq!(code(out), 0, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

#[test]
fn get_downloads_from_a_server_and_places_a_writable_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "a");
    let server = Server::start(&remote, &[]);
    // The server's cache is shared with other processes: `add` fills it while it runs.
    ok(&cli(&remote, &["add", "a1", src.to_str().unwrap()]));

    let out_dir = dir.path().join("out");
    let out = cli(
        &local,
        &["--json", "get", "a1", "--from", &server.url, "--out", out_dir.to_str().unwrap()],
    );
    ok(&out);
    let result = json(&out);
    assert_eq!(result["id"], "a1");
    assert_eq!(result["transferred"], true);
    assert_eq!(result["endpoint"], server.url.as_str());
    assert_eq!(result["files"], 2);
    assert_same_tree(&src, &out_dir);
    // Copies (or reflinks) of their own: writable by the owner, unlike the cache's files.
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out_dir.join("data.txt")), 0o644);
    assert_eq!(mode(&out_dir.join("bin/tool")), 0o755);
    ok(&cli(&local, &["verify", "a1"]));

    // Now it is local: no transfer.
    let out = cli(&local, &["--json", "get", "a1", "--from", &server.url]);
    ok(&out);
    assert_eq!(json(&out)["transferred"], false);

    // --out refuses a non-empty directory, and the cache keeps the artifact.
    let out =
        cli(&local, &["get", "a1", "--from", &server.url, "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn a_server_on_one_thread_serves_small_and_absent_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "t");
    let server = Server::start(&remote, &["--threads", "1"]);
    ok(&cli(&remote, &["add", "71", src.to_str().unwrap()]));
    // Twice from one cache each: the second answer comes from the streams kept in memory.
    for round in ["first", "second"] {
        let local = local.join(round);
        ok(&cli(&local, &["get", "71", "--from", &server.url]));
        ok(&cli(&local, &["verify", "71"]));
    }
    let out = cli(&local.join("absent"), &["get", "72", "--from", &server.url]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn get_fails_over_to_the_next_server_and_reports_absence_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "b");
    let server = Server::start(&remote, &[]);
    ok(&cli(&remote, &["add", "b1", src.to_str().unwrap()]));
    // A port nobody listens on: bind one, note it, close it.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };

    let out = cli(&local, &["--json", "get", "b1", "--from", &dead, "--from", &server.url]);
    ok(&out);
    assert_eq!(json(&out)["endpoint"], server.url.as_str());

    let out = cli(&local, &["get", "b2", "--from", &server.url]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = cli(&local, &["get", "b2", "--from", &dead, "--timeout", "20"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    // Nothing partial was left behind.
    let out = cli(&local, &["--json", "ls"]);
    ok(&out);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
}

#[test]
fn put_uploads_once_and_a_token_guards_it() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "c");
    let token = dir.path().join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let server = Server::start(&remote, &["--token-file", token.to_str().unwrap()]);
    ok(&cli(&local, &["add", "c1", src.to_str().unwrap()]));

    let out = cli(&local, &["put", "c1", "--to", &server.url]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let wrong = dir.path().join("wrong");
    fs::write(&wrong, "guess").unwrap();
    let out =
        cli(&local, &["put", "c1", "--to", &server.url, "--token-file", wrong.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    let with_token = ["--token-file", token.to_str().unwrap()];
    let out =
        cli(&local, &[&["--json", "put", "c1", "--to", &server.url][..], &with_token].concat());
    ok(&out);
    assert_eq!(json(&out)["created"], true);
    let out =
        cli(&local, &[&["--json", "put", "c1", "--to", &server.url][..], &with_token].concat());
    ok(&out);
    assert_eq!(json(&out)["created"], false);

    // Reads need no token; what arrived is the same tree.
    let other = dir.path().join("other");
    let out_dir = dir.path().join("out");
    ok(&cli(&other, &["get", "c1", "--from", &server.url, "--out", out_dir.to_str().unwrap()]));
    assert_same_tree(&src, &out_dir);

    // Absent locally: exit 3, nothing sent.
    let out = cli(&local, &[&["put", "c2", "--to", &server.url][..], &with_token].concat());
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("remote"), &[]);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for args in [
        &["get", "xyz", "--from", "http://127.0.0.1:1"][..],
        &["get", "ab", "--from", "ftp://127.0.0.1:1"],
        &["get", "ab", "--from", "http://127.0.0.1:1", "--timeout", "-1"],
        &["get", "ab", "--from", "http://127.0.0.1:1", "--speed-time", "0"],
        &["get", "ab", "--from", "http://127.0.0.1:1", "--speed-limit", "lots"],
        &["put", "ab", "--to", "not a url"],
        &["serve", "--max-size", "lots"],
        &["serve", "--max-streams", "0"],
        &["serve", "--max-streams-per-peer", "0"],
        &["serve", "--max-connections-per-peer", "0"],
        &["serve", "--small-cache", "plenty"],
        &["serve", "--threads", "many"],
        &["serve", "--listen", "nowhere"],
    ] {
        let out = cli(&root, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).lines().count() >= 1, "{args:?} says why");
    }
    // A token file that is missing or empty.
    let empty = dir.path().join("empty");
    fs::write(&empty, "  \n").unwrap();
    let out = cli(&root, &["serve", "--token-file", empty.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = cli(&root, &["serve", "--token-file", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn get_presents_the_token_to_a_server_that_guards_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "d");
    let token = dir.path().join("token");
    fs::write(&token, "s3cret\n").unwrap();
    let server =
        Server::start(&remote, &["--token-file", token.to_str().unwrap(), "--token-for-reads"]);
    ok(&cli(&remote, &["add", "d1", src.to_str().unwrap()]));

    let out = cli(&local, &["get", "d1", "--from", &server.url]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let out =
        cli(&local, &["get", "d1", "--from", &server.url, "--token-file", token.to_str().unwrap()]);
    ok(&out);
}

#[test]
fn get_against_hostile_peers_commits_nothing_late_and_prints_no_escapes() {
    use std::time::Duration;

    use artifact_testkit::peer::{Behavior, FakePeer, Served};

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let src = tree(dir.path(), "h");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The whole stream, then zeros that drip: the deadline passes with the tree complete.
    let every = Duration::from_millis(20);
    let drip = runtime
        .block_on(FakePeer::start(Behavior::CompleteThenDrip { served: Served::of(&src), every }));
    let out = cli(&local, &["get", "c1", "--from", drip.url(), "--timeout", "1"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("overall deadline"), "{}", stderr(&out));
    let out = cli(&local, &["--json", "ls"]);
    ok(&out);
    assert_eq!(stdout(&out), "", "a download that failed committed nothing");

    let escapes = runtime.block_on(FakePeer::start(Behavior::EscapeInjection));
    let out = cli(&local, &["get", "c1", "--from", escapes.url()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("500"), "{text}");
    assert!(!text.contains(['\u{1b}', '\0', '\u{7}']), "{text:?}");
}

#[test]
fn the_readme_sequence_shares_without_a_confusing_already_has() {
    let dir = tempfile::tempdir().unwrap();
    let (server_root, local, other) =
        (dir.path().join("server"), dir.path().join("local"), dir.path().join("other"));
    let src = tree(dir.path(), "r");
    // As in the README: the server has a cache of its own, so `put` has something to send.
    let server = Server::start(&server_root, &[]);
    ok(&cli(&local, &["add", "5eed", src.to_str().unwrap()]));
    let put = cli(&local, &["put", "5eed", "--to", &server.url]);
    ok(&put);
    assert!(stdout(&put).starts_with(&format!("put 5eed to {}", server.url)), "{}", stdout(&put));
    // Again: the server has it; that is success, said plainly.
    let again = cli(&local, &["put", "5eed", "--to", &server.url]);
    ok(&again);
    assert_eq!(stdout(&again), format!("{} already has 5eed: nothing to send\n", server.url));
    let out_dir = dir.path().join("out");
    ok(&cli(&other, &["get", "5eed", "--from", &server.url, "--out", out_dir.to_str().unwrap()]));
    assert_same_tree(&src, &out_dir);
}

#[test]
fn a_url_without_a_scheme_means_http() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "s");
    let server = Server::start(&remote, &[]);
    let bare = server.url.strip_prefix("http://").unwrap().to_owned();
    ok(&cli(&local, &["add", "a7", src.to_str().unwrap()]));
    ok(&cli(&local, &["put", "a7", "--to", &bare]));
    let other = dir.path().join("other");
    let got = cli(&other, &["--json", "get", "a7", "--from", &bare]);
    ok(&got);
    assert_eq!(json(&got)["endpoint"], server.url.as_str());
}

#[test]
fn retries_log_one_short_line_each_and_the_error_chain_once() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let out = cli(&dir.path().join("local"), &["get", "b2", "--from", &dead, "--timeout", "20"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stderr(&out);
    let lines: Vec<&str> = text.lines().collect();
    let warns: Vec<&&str> = lines.iter().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warns.len(), 3, "one line per attempt (3 rounds): {text}");
    for line in &warns {
        assert!(line.contains("cannot connect to") && line.contains("refused"), "{line}");
        assert!(!line.contains("error sending request"), "no whole chain per attempt: {line}");
    }
    let last = lines.last().unwrap();
    assert!(last.starts_with("artifact: cannot connect to"), "{text}");
    assert_eq!(text.matches("error sending request").count(), 1, "the chain once: {text}");
}

/// Runs `artifact --root <root> <args>` on a pseudo-terminal (python3's `pty`), returning what
/// it wrote there (stdout and stderr together).
fn on_a_terminal(root: &Path, args: &[&str]) -> String {
    let script = "import os, pty, sys\n\
                  out = []\n\
                  def read(fd):\n    data = os.read(fd, 65536)\n    out.append(data)\n    return data\n\
                  status = pty.spawn(sys.argv[1:], read)\n\
                  sys.stdout.buffer.write(b''.join(out))\n\
                  sys.exit(os.waitstatus_to_exitcode(status))\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(crate::support::artifact_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ARTIFACT_ROOT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}\n{}", stderr(&out));
    text
}

#[test]
fn put_and_get_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, other) =
        (dir.path().join("remote"), dir.path().join("local"), dir.path().join("other"));
    let src = tree(dir.path(), "p");
    let server = Server::start(&remote, &[]);
    ok(&cli(&local, &["add", "a9", src.to_str().unwrap()]));
    let shown = on_a_terminal(&local, &["put", "a9", "--to", &server.url]);
    assert!(
        shown.contains(&format!("a9 to {}", server.url)),
        "the bar names the upload: {shown:?}"
    );
    assert!(shown.contains("put a9 to"), "{shown:?}");
    let shown = on_a_terminal(&other, &["get", "a9", "--from", &server.url]);
    assert!(shown.contains("a9: connecting"), "{shown:?}");
    // Not on a pipe.
    let out = cli(&dir.path().join("third"), &["get", "a9", "--from", &server.url]);
    ok(&out);
    assert_eq!(stderr(&out), "");
}
