//! The tools that xtask commands need beyond the Rust toolchain: checked before a command
//! starts, installed where that can be done unattended (Debian packages with `apt-get` as root
//! or with password-less `sudo`, cargo subcommands with `cargo install --locked`), otherwise
//! named in one line that says what to install.

use std::{
    env,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::bail;

use crate::cargo;

/// How to tell that a tool is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// An executable of this name on the search path.
    Exec(&'static str),
    /// An executable of this name whose `--version` output contains the marker.
    Version(&'static str, &'static str),
    /// An executable at this absolute path (a daemon in `/usr/sbin`, off a user's `PATH`).
    File(&'static str),
}

/// How to install a missing tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Install {
    /// A Debian package.
    Apt(&'static str),
    /// A crate with a binary: `cargo install --locked <crate>`.
    Cargo(&'static str),
}

/// One prerequisite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tool {
    /// The name used in messages.
    pub(crate) name: &'static str,
    pub(crate) probe: Probe,
    pub(crate) install: Install,
}

pub(crate) const BSDTAR: Tool = Tool {
    name: "bsdtar",
    probe: Probe::Exec("bsdtar"),
    install: Install::Apt("libarchive-tools"),
};
pub(crate) const GNU_TAR: Tool =
    Tool { name: "GNU tar", probe: Probe::Version("tar", "GNU tar"), install: Install::Apt("tar") };
pub(crate) const PYTHON3: Tool =
    Tool { name: "python3", probe: Probe::Exec("python3"), install: Install::Apt("python3") };
pub(crate) const CURL: Tool =
    Tool { name: "curl", probe: Probe::Exec("curl"), install: Install::Apt("curl") };
/// The `kill` program (not the shell builtin): tests send signals to child processes with it.
pub(crate) const KILL: Tool =
    Tool { name: "kill", probe: Probe::Exec("kill"), install: Install::Apt("procps") };
/// The zstd command-line tool, which encodes the seeds of the `zstd_upload` fuzz target.
pub(crate) const ZSTD: Tool =
    Tool { name: "zstd", probe: Probe::Exec("zstd"), install: Install::Apt("zstd") };
/// Headless Chromium: the status page's test renders it in a real browser (`--dump-dom`).
pub(crate) const CHROMIUM: Tool =
    Tool { name: "chromium", probe: Probe::Exec("chromium"), install: Install::Apt("chromium") };
pub(crate) const NEXTEST: Tool = Tool {
    name: "cargo-nextest",
    probe: Probe::Exec("cargo-nextest"),
    install: Install::Cargo("cargo-nextest"),
};
pub(crate) const CARGO_FUZZ: Tool = Tool {
    name: "cargo-fuzz",
    probe: Probe::Exec("cargo-fuzz"),
    install: Install::Cargo("cargo-fuzz"),
};
pub(crate) const CARGO_MUTANTS: Tool = Tool {
    name: "cargo-mutants",
    probe: Probe::Exec("cargo-mutants"),
    install: Install::Cargo("cargo-mutants"),
};

/// The load generator of `cargo xtask bench http`'s request-rate section.
pub(crate) const WRK: Tool =
    Tool { name: "wrk", probe: Probe::Exec("wrk"), install: Install::Apt("wrk") };
/// The static file server that `cargo xtask bench http` measures against.
pub(crate) const NGINX: Tool = Tool {
    name: "nginx",
    probe: Probe::File("/usr/sbin/nginx"),
    install: Install::Apt("nginx-light"),
};

/// The profiler behind the benchmarks' flame graphs.
pub(crate) const PERF: Tool =
    Tool { name: "perf", probe: Probe::Exec("perf"), install: Install::Apt("linux-perf") };
/// Folds perf's stacks and draws flame graphs (`inferno-collapse-perf`, `inferno-flamegraph`).
pub(crate) const INFERNO: Tool = Tool {
    name: "inferno",
    probe: Probe::Exec("inferno-flamegraph"),
    install: Install::Cargo("inferno"),
};

/// What the request-rate section of `cargo xtask bench http` needs (not the tests).
pub(crate) const BENCH_REQUESTS: &[Tool] = &[WRK, NGINX, CURL];

/// What `cargo xtask test` needs: the interop tests run bsdtar, GNU tar, Python's `tarfile`
/// and curl, the crash tests `kill`, the status page's test headless Chromium, and the test
/// runner is nextest.
pub(crate) const TEST: &[Tool] = &[BSDTAR, GNU_TAR, PYTHON3, CURL, KILL, CHROMIUM, NEXTEST];

/// Makes sure every tool in `tools` is present, installing what is missing where it can;
/// fails with one line naming what is still missing and how to install it.
pub(crate) fn ensure(tools: &[Tool]) -> anyhow::Result<()> {
    let dirs = search_dirs();
    let missing = missing(tools, &dirs);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
    println!("==> prerequisites: installing {}", names.join(", "));

    let apt: Vec<&str> = missing
        .iter()
        .filter_map(|t| match t.install {
            Install::Apt(package) => Some(package),
            Install::Cargo(_) => None,
        })
        .collect();
    if !apt.is_empty()
        && let Some(sudo) = apt_runner()
    {
        let apt_get = |args: &[&str]| {
            let mut cmd = Command::new(sudo.first().copied().unwrap_or("apt-get"));
            cmd.args(sudo.iter().skip(1)).args(args).env("DEBIAN_FRONTEND", "noninteractive");
            println!("    {cmd:?}");
            cmd.status().is_ok_and(|s| s.success())
        };
        // A failure shows in the check below, with the line that names the package.
        let _ = apt_get(&["update", "-qq"])
            && apt_get(
                &[&["install", "-y", "-qq", "--no-install-recommends"][..], &apt[..]].concat(),
            );
    }
    for tool in &missing {
        if let Install::Cargo(krate) = tool.install {
            let mut cmd = cargo();
            cmd.args(["install", "--locked", krate]);
            println!("    {cmd:?}");
            let _ = cmd.status();
        }
    }

    let still = self::missing(tools, &search_dirs());
    if still.is_empty() {
        return Ok(());
    }
    let hints: Vec<String> = still.iter().map(hint).collect();
    bail!("missing prerequisites: {}", hints.join("; "))
}

/// The tools of `tools` that are not present in `dirs`.
pub(crate) fn missing(tools: &[Tool], dirs: &[PathBuf]) -> Vec<Tool> {
    tools.iter().copied().filter(|tool| !present(tool.probe, dirs)).collect()
}

/// How to install `tool` by hand, in a few words.
pub(crate) fn hint(tool: &Tool) -> String {
    match tool.install {
        Install::Apt(package) => format!("{} (Debian: apt-get install {package})", tool.name),
        Install::Cargo(krate) => format!("{} (cargo install --locked {krate})", tool.name),
    }
}

fn present(probe: Probe, dirs: &[PathBuf]) -> bool {
    match probe {
        Probe::Exec(name) => find(name, dirs).is_some(),
        Probe::File(path) => Path::new(path)
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0),
        Probe::Version(name, marker) => find(name, dirs).is_some_and(|path| {
            Command::new(path)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(marker))
        }),
    }
}

/// The first executable file called `name` in `dirs`.
pub(crate) fn find(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|dir| dir.join(name)).find(|path| {
        path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// `PATH`, then cargo's own `bin` directory, where `cargo install` puts binaries and where cargo
/// looks for subcommands even when it is not on `PATH`.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    if let Some(home) = cargo_home {
        dirs.push(home.join("bin"));
    }
    dirs
}

/// The command prefix that runs `apt-get` with root rights (`apt-get` itself when we are root,
/// `sudo -n apt-get` when sudo needs no password), or `None` when neither can.
fn apt_runner() -> Option<Vec<&'static str>> {
    let dirs = search_dirs();
    find("apt-get", &dirs)?;
    if is_root() {
        return Some(vec!["apt-get"]);
    }
    let sudo_ok = find("sudo", &dirs).is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    sudo_ok.then(|| vec!["sudo", "-n", "apt-get"])
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A `rustup` toolchain is installed (e.g. `nightly`, which cargo-fuzz needs).
pub(crate) fn has_toolchain(name: &str) -> bool {
    Command::new("rustup")
        .args(["run", name, "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Writes an executable shell script `name` into `dir` that prints `output`.
    fn fake(dir: &Path, name: &str, output: &str) {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\necho '{output}'\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_empty_path_misses_every_tool_and_names_how_to_install_it() {
        let empty = tempfile_dir("empty");
        let missing = missing(TEST, std::slice::from_ref(&empty));
        assert_eq!(missing, TEST);
        let hints: Vec<String> = missing.iter().map(hint).collect();
        assert_eq!(hints[0], "bsdtar (Debian: apt-get install libarchive-tools)");
        assert_eq!(hints[4], "kill (Debian: apt-get install procps)");
        assert_eq!(hints[5], "chromium (Debian: apt-get install chromium)");
        assert_eq!(hints[6], "cargo-nextest (cargo install --locked cargo-nextest)");
        fs::remove_dir_all(empty).unwrap();
    }

    #[test]
    fn present_tools_are_not_missing_and_tar_must_be_gnu_tar() {
        let a = tempfile_dir("a");
        let b = tempfile_dir("b");
        fake(&a, "bsdtar", "bsdtar 3.7.2");
        fake(&b, "python3", "Python 3.13");
        fake(&b, "kill", "kill from procps-ng 4.0.4");
        fake(&a, "tar", "bsdtar 3.7.2 - libarchive 3.7.2");
        // Not executable: does not count.
        fs::write(b.join("curl"), "").unwrap();
        let dirs = [a.clone(), b.clone()];
        assert_eq!(missing(TEST, &dirs), [GNU_TAR, CURL, CHROMIUM, NEXTEST]);

        fake(&a, "tar", "tar (GNU tar) 1.35");
        fake(&a, "chromium", "Chromium 148.0");
        fake(&b, "curl", "curl 8.14");
        fake(&b, "cargo-nextest", "cargo-nextest 0.9");
        assert_eq!(missing(TEST, &dirs), []);
        // The first match on the path wins, as for the shell.
        assert_eq!(find("tar", &dirs), Some(a.join("tar")));
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    /// A fresh directory under the target directory (xtask has no tempfile dependency).
    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("xtask-prereq-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
