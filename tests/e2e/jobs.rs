//! Transfer jobs through the real binary: `artifact serve` runs them, `artifact jobs` drives
//! them, and a SIGKILL of the server loses none.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Output, Stdio},
    time::Duration,
};

use artifact_testkit::{
    cache::{TempCache, commit_known, test_id},
    server::{Fault, TestServer},
};

use crate::support::{artifact, code, run, stderr};

/// A running `artifact serve`, killed (SIGKILL) when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(root: &Path) -> Serve {
        let mut child = artifact(["--root".as_ref(), root.as_os_str()])
            .args(["serve", "--listen", "127.0.0.1:0", "--jobs-concurrency", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("artifact serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).unwrap();
        let url = line.trim().rsplit_once(" on ").map(|(_, url)| url.to_owned());
        Serve { child, url: url.unwrap_or_else(|| panic!("serve printed {line:?}")) }
    }
}

impl Serve {
    /// Sends SIGTERM and returns the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jobs(server: &str, args: &[&str]) -> Output {
    run(artifact(["jobs"]).args(args).args(["--server", server]))
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ok(out: &Output) {
    assert_eq!(code(out), 0, "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

#[test]
fn queued_pulls_survive_a_sigkill_of_the_server() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let remote = TempCache::new();
    let ids: Vec<String> = (0..50).map(|i| test_id(i).to_string()).collect();
    for i in 0..50 {
        commit_known(remote.cache(), &test_id(i), 2).unwrap();
    }
    let source = runtime.block_on(TestServer::start(remote.cache().clone()));
    // Slow enough that the server is killed with most jobs still to do.
    source.faults().always(Fault::Delay(Duration::from_millis(30)));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = Serve::start(&root);
    let mut args = vec!["pull", "--json", "--from", source.url()];
    args.extend(ids.iter().map(String::as_str));
    let submitted = jobs(&server.url, &args);
    ok(&submitted);
    let numbers: Vec<String> = stdout(&submitted)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["job"].to_string())
        .collect();
    assert_eq!(numbers.len(), 50);

    runtime.block_on(source.stats().wait_in_flight(1));
    drop(server); // SIGKILL, mid-way.
    assert!(source.stats().downloads() < 50, "killed before the end");

    let server = Serve::start(&root);
    let mut args = vec!["wait"];
    args.extend(numbers.iter().map(String::as_str));
    ok(&jobs(&server.url, &args));
    let listed = jobs(&server.url, &["ls", "--json", "--state", "succeeded"]);
    ok(&listed);
    assert_eq!(stdout(&listed).lines().count(), 50);
    ok(&run(artifact(["--root".as_ref(), root.as_os_str()]).arg("verify")));

    // A job that has ended cannot be cancelled; an unknown one is not found.
    assert_eq!(code(&jobs(&server.url, &["cancel", &numbers[0]])), 1);
    assert_eq!(code(&jobs(&server.url, &["show", "9999"])), 3);
    let shown = jobs(&server.url, &["show", &numbers[0]]);
    ok(&shown);
    assert!(stdout(&shown).contains("state: succeeded"), "{}", stdout(&shown));
}

#[test]
fn a_failed_job_makes_wait_exit_1_and_bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("root"));
    // Nothing has this id: the pull fails for good (404 is not retried).
    let source = Serve::start(&dir.path().join("source"));
    let submitted = jobs(&server.url, &["pull", "--from", &source.url, "00ff"]);
    ok(&submitted);
    let number = stdout(&submitted).split('\t').next().unwrap().to_owned();
    assert_eq!(code(&jobs(&server.url, &["wait", &number])), 1);

    assert_eq!(code(&jobs(&server.url, &["pull", "--from", "ftp://x", "00ff"])), 2);
    assert_eq!(code(&jobs(&server.url, &["pull", "--from", &source.url, "xyz"])), 2);
    let bad_rate = run(artifact(["--root".as_ref(), dir.path().join("r").as_os_str()]).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate",
        "nope",
    ]));
    assert_eq!(code(&bad_rate), 2, "{}", stderr(&bad_rate));
}

#[test]
fn sigterm_stops_a_running_transfer_and_leaves_it_queued() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let remote = TempCache::new();
    commit_known(remote.cache(), &test_id(7), 2).unwrap();
    let source = runtime.block_on(TestServer::start(remote.cache().clone()));
    source.faults().once(Fault::StallAfter(600));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = Serve::start(&root);
    let submitted = jobs(&server.url, &["pull", "--from", source.url(), &test_id(7).to_string()]);
    ok(&submitted);
    let number = stdout(&submitted).split('\t').next().unwrap().to_owned();
    runtime.block_on(source.stats().wait_in_flight(1));
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    // The stalled transfer was dropped, not left hanging.
    runtime.block_on(source.stats().wait_idle());

    let server = Serve::start(&root);
    ok(&jobs(&server.url, &["wait", &number]));
    let shown = jobs(&server.url, &["show", "--json", &number]);
    ok(&shown);
    let job: serde_json::Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    assert_eq!(job["attempts"], 2, "{job}");
    let notes: Vec<&str> =
        job["log"].as_array().unwrap().iter().filter_map(|e| e["note"].as_str()).collect();
    assert!(notes.contains(&"stopped by shutdown"), "{job}");
}
