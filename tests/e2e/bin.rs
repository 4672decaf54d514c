//! Locating the `artifact` binary for end-to-end tests.
//!
//! `CARGO_BIN_EXE_artifact` exists only for tests of the package that owns the binary, so this
//! package finds it itself: `$ARTIFACT_BIN` when set; otherwise it asks cargo to build it (a
//! no-op when it is fresh, well under a second) into the same target directory and profile as
//! this test executable (`<target>/<profile>/deps/e2e-*` -> `<target>/<profile>/artifact`),
//! with the same crate selection as `cargo test --workspace`, so that no dependency is rebuilt
//! with other features. That also guarantees the binary under test matches the sources.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The path of a fresh `artifact` binary.
pub(crate) fn artifact_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = env::var_os("ARTIFACT_BIN") {
            return PathBuf::from(bin);
        }
        let exe = env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executables live in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => "dev",
        };
        let cargo = env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let workspace =
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins", "--tests", "--profile", profile])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace)
            .status()
            .expect("running cargo build for the artifact binary");
        assert!(status.success(), "cargo build of the artifact binary failed");
        let bin = profile_dir.join("artifact");
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
}
