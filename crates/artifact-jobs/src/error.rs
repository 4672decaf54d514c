//! [`Error`]: what can go wrong with jobs, their store and their scheduler.

use std::path::PathBuf;

use crate::{Event, JobId, State};

/// An error of the job store or the scheduler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be opened, or answered with an error.
    #[error("job database {path}: {what}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this crate.
    #[error(
        "job database {path} has schema version {found}, newer than this program's {supported}"
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this crate knows.
        supported: i64,
    },
    /// A row of the database could not be read back (a hand-edited file, say).
    #[error("job {job} in the database is malformed: {reason}")]
    Corrupt {
        /// The job.
        job: JobId,
        /// What is wrong with it.
        reason: String,
    },
    /// No job has this id (never queued, or pruned).
    #[error("no job {job}")]
    NotFound {
        /// The job.
        job: JobId,
    },
    /// The state machine has no transition for this event in this state: a cancel of an ended
    /// job, or a bug.
    #[error("job {job}: no transition from {from} on {event}")]
    IllegalTransition {
        /// The job.
        job: JobId,
        /// Its state.
        from: State,
        /// The event that does not apply.
        event: Event,
    },
    /// The queue holds as many active jobs as it may.
    #[error("the job queue is full ({max} active jobs)")]
    QueueFull {
        /// The bound.
        max: usize,
    },
    /// The scheduler has been shut down.
    #[error("the job scheduler is shut down")]
    ShutDown,
    /// A blocking task of the store panicked or was cancelled.
    #[error("a job database task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// The job does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The event does not apply to the job's state (for a cancel: the job has ended).
    pub fn is_illegal_transition(&self) -> bool {
        matches!(self, Error::IllegalTransition { .. })
    }
}
