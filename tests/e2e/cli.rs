//! The command line itself: help, usage errors and exit statuses.

use crate::support::{artifact, code, run, stderr};

#[test]
fn help_lists_every_command_and_the_exit_statuses() {
    let out = run(&mut artifact(["--help"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["pack", "unpack", "add", "ls", "rm", "gc", "verify", "serve", "get", "put"] {
        assert!(help.contains(&format!("  {command} ")), "help lacks `{command}`:\n{help}");
    }
    assert!(help.contains("3  not found"), "help lacks the exit statuses:\n{help}");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = run(&mut artifact(["ls", "--no-such-flag"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
}

#[test]
fn every_subcommand_help_lists_the_exit_statuses() {
    for command in ["pack", "unpack", "add", "ls", "rm", "gc", "verify", "serve", "get", "put"] {
        let out = run(&mut artifact([command, "--help"]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Exit status:\n"), "`{command} --help` lacks them:\n{help}");
        assert!(help.contains("3  not found"), "`{command} --help`:\n{help}");
    }
    let out = run(&mut artifact(["jobs", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("3  not found (no such job)"), "{help}");
}

#[test]
fn the_default_root_follows_xdg_cache_home_and_the_help_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    let xdg = dir.path().join("xdg");
    let out = run(artifact(["add", "ab", src.to_str().unwrap()])
        .env("XDG_CACHE_HOME", &xdg)
        .env("HOME", dir.path().join("home")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(xdg.join("artifact").is_dir(), "the cache went to $XDG_CACHE_HOME/artifact");
    assert!(!dir.path().join("home").exists());

    let out = run(&mut artifact(["--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("$XDG_CACHE_HOME/artifact"), "{help}");
}

#[test]
fn put_help_and_put_agree_on_already_exists() {
    let out = run(&mut artifact(["put", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    // Exit 4 is add's; a put of what the server has succeeds (see net.rs for the behaviour).
    assert!(help.contains("4  already exists (add; put exits 0"), "{help}");
}
