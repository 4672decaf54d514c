//! Helpers for end-to-end tests: locating and running the `artifact` binary.

// Not every test module uses every helper.
#![allow(dead_code)]

use std::{
    ffi::OsStr,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

/// The path of the `artifact` binary built for this test run.
///
/// Test binaries live in `<target>/<profile>/deps/`; the workspace's binaries are one level up.
/// `cargo test --workspace` and `cargo nextest run --workspace` build them before running any
/// test; when only this package was built, the binary is built here once.
pub(crate) fn artifact_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>");
        let bin = profile_dir.join("artifact");
        if !bin.exists() {
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--quiet", "-p", "artifact", "--bin", "artifact"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the artifact binary failed");
        }
        assert!(bin.exists(), "no artifact binary at {}", bin.display());
        bin
    })
}

/// An `artifact` command with logging quiet and no inherited cache root.
pub(crate) fn artifact<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(artifact_bin());
    cmd.args(args).env_remove("ARTIFACT_ROOT").env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` with `stdin` as its standard input and returns what it did.
pub(crate) fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("artifact starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    // Feed stdin from a thread so a child that stops reading early cannot deadlock the test.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("artifact runs to the end");
    feeder.join().expect("the stdin feeder does not panic");
    output
}

/// Runs `cmd` with no standard input and returns what it did.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("artifact runs to the end")
}

/// The exit status of a finished command, or -1 when a signal ended it.
pub(crate) fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Standard error as text, for assertions and failure messages.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
