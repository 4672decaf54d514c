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
/// `CARGO_BIN_EXE_artifact` exists only for tests of the package that owns the binary, and
/// neither `cargo test --workspace` nor `cargo nextest run --workspace` builds
/// `<target>/<profile>/artifact` (no integration test of the `artifact` package asks for it).
/// So, unless `$ARTIFACT_BIN` names one, the binary is built here, once per test process:
/// `cargo build --workspace --bins --tests` for this test executable's own target directory
/// and profile (`<target>/<profile>/deps/<test>`). The same selection as a workspace test
/// build means no dependency is rebuilt with other features, it is a no-op (well under a
/// second) when the binary is fresh, and a stale binary is never the one tested.
pub(crate) fn artifact_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ARTIFACT_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ sits in the workspace root");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins", "--tests", "--profile", profile])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the artifact binary failed");
        let bin = profile_dir.join("artifact");
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
