//! Child processes for the cross-process tests: this test binary, re-executed to run only the
//! test [`entry`] with a task named in the environment.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use artifact_cache::{Cache, Durability, Options};
use artifact_testkit::cache::{assert_known, fill_known, test_id};

use crate::stress::{Rng, files_for, random_op};

const TASK_ENV: &str = "ARTIFACT_CACHE_TEST_TASK";
const ROOT_ENV: &str = "ARTIFACT_CACHE_TEST_ROOT";
/// Lines of the protocol between a child and its parent start with this.
const MARK: &str = "@@ ";
/// How long a parent waits for a line before failing the test (a watchdog, not a timing).
const PATIENCE: Duration = Duration::from_secs(60);

/// A running child.
pub(crate) struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    task: String,
}

impl Child {
    /// Starts this test binary as a child running `task` on the cache at `root`.
    pub(crate) fn spawn(task: &str, root: &Path) -> Child {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        Child::start(Command::new(exe), task, root)
    }

    /// Like [`spawn`](Child::spawn), but the child may not grow any file (`ulimit -f 0`,
    /// `SIGXFSZ` ignored): every write that would allocate space fails, as on a full disk
    /// (with `EFBIG` rather than `ENOSPC`).
    pub(crate) fn spawn_without_space(task: &str, root: &Path) -> Child {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let mut sh = Command::new("sh");
        // An ignored signal stays ignored across `exec`.
        sh.args(["-c", "ulimit -f 0 && trap '' XFSZ && exec \"$0\" \"$@\""]).arg(exe);
        Child::start(sh, task, root)
    }

    fn start(mut command: Command, task: &str, root: &Path) -> Child {
        let mut child = command
            .args(["child::entry", "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(TASK_ENV, task)
            .env(ROOT_ENV, root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a child");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(line) = line.strip_prefix(MARK)
                    && tx.send(line.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        Child { child, lines, task: task.to_owned() }
    }

    /// Waits for the child's next line, which must start with `word`; returns the rest.
    pub(crate) fn expect(&mut self, word: &str) -> String {
        let line = self.lines.recv_timeout(PATIENCE).unwrap_or_else(|err| {
            let _ = self.child.kill();
            panic!("child `{}` said nothing more ({err}) while we waited for `{word}`", self.task)
        });
        match line.strip_prefix(word) {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("child `{}` said `{line}`, expected `{word}`", self.task),
        }
    }

    /// Sends the child one line on its standard input.
    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("the child reads its input");
    }

    /// Kills the child with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill the child");
        self.child.wait().expect("reap the child");
    }

    /// Closes the child's input and waits for it to exit (at most [`PATIENCE`]).
    pub(crate) fn finish(mut self) -> ExitStatus {
        drop(self.child.stdin.take());
        let (tx, rx) = mpsc::channel();
        let mut child = self.child;
        let pid = child.id();
        std::thread::spawn(move || tx.send(child.wait()));
        match rx.recv_timeout(PATIENCE) {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("child `{}` did not finish", self.task)
            }
        }
    }
}

fn say(line: &str) {
    println!("{MARK}{line}");
}

/// Waits for a line on standard input (the parent's command); `None` at end of input.
fn hear() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// Runs the child task named in the environment; without one, checks this harness itself by
/// running a child.
#[test]
fn entry() {
    let Ok(task) = std::env::var(TASK_ENV) else {
        let root = tempfile::tempdir().unwrap();
        let mut child = Child::spawn("echo hello there", root.path());
        assert_eq!(child.expect("echo"), "hello there");
        assert!(child.finish().success());
        return;
    };
    let root = std::env::var_os(ROOT_ENV).expect("the parent names the root");
    let words: Vec<&str> = task.split(' ').collect();
    let number = |i: usize| -> u64 { words[i].parse().expect("a number") };
    match words[0] {
        "echo" => say(&format!("echo {}", words[1..].join(" "))),
        "hold-read" => {
            let cache = Cache::open(&root).unwrap();
            let reader = cache.get(&test_id(number(1))).unwrap();
            say("holding");
            hear();
            drop(reader);
        }
        "hold-write" => {
            let cache = Cache::open(&root).unwrap();
            let id = test_id(number(1));
            let writer = cache.create(&id).unwrap();
            fill_known(writer.path(), &id, 3).unwrap();
            say("writing");
            match hear().as_deref() {
                Some("commit") => {
                    writer.commit().unwrap();
                    say("committed");
                }
                _ => writer.abort().unwrap(),
            }
        }
        "no-space" => {
            // Run under `spawn_without_space`: a fill and a commit that both fail for want of
            // space, then whatever their abort leaves behind is the parent's to inspect.
            let cache = Cache::open(&root).unwrap();
            let writer = cache.create(&test_id(1)).unwrap();
            let err = std::fs::write(writer.path().join("f"), b"data").unwrap_err();
            say(&format!("fill-failed {:?}", err.raw_os_error()));
            drop(writer);
            let writer = cache.create(&test_id(2)).unwrap();
            let err = writer.commit().unwrap_err();
            say(&format!("commit-failed {err}"));
        }
        "churn" => churn(&root, number(1), number(2) == 1),
        "stress" => {
            let done = crate::stress::run(&root, number(1), number(2) as usize, number(3));
            say(&format!("done {done}"));
        }
        other => panic!("unknown child task `{other}`"),
    }
}

/// Commits, reads and removes artifacts for ever (until killed), saying `step` after each.
fn churn(root: &std::ffi::OsStr, seed: u64, fsync: bool) {
    let durability = if fsync { Durability::Fsync } else { Durability::CrashConsistent };
    let cache = Cache::open_with(root, Options::default().durability(durability)).unwrap();
    let mut rng = Rng::new(seed);
    for step in 0.. {
        random_op(&cache, &mut rng, 6);
        // Keep the guard found: the other process may remove and recreate the id as soon as
        // it is dropped.
        let found = (0..6).map(test_id).find_map(|id| cache.get(&id).ok().map(|r| (id, r)));
        if let Some((id, reader)) = found {
            let n = u64::from_be_bytes(id.as_bytes().try_into().unwrap());
            assert_known(reader.path(), &id, files_for(n));
        }
        say(&format!("step {step}"));
    }
}
