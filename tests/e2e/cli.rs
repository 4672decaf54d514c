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
