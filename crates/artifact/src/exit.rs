//! Exit statuses: how a failed command tells scripts what kind of failure it was.

use std::fmt;

/// The exit status of a failed command (see `EXIT_CODES` in `cli.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    Exists = 4,
    Corrupt = 5,
    Busy = 6,
}

/// An error that carries the exit status it should end the program with.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) source: anyhow::Error,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` prints the whole chain on one line: "what failed: because: because".
        write!(f, "{:#}", self.source)
    }
}

impl std::error::Error for CliError {}

/// Wraps `err` so that the program exits with `exit`.
pub(crate) fn fail(exit: Exit, err: impl Into<anyhow::Error>) -> anyhow::Error {
    CliError { exit, source: err.into() }.into()
}

/// The exit status for an error returned by a command.
pub(crate) fn status(err: &anyhow::Error) -> Exit {
    err.chain().find_map(|e| e.downcast_ref::<CliError>()).map_or(Exit::Failure, |e| e.exit)
}
