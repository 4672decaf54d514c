//! Transfer jobs for `artifact-cache`: pulls (fetch artifacts from other servers into the local
//! cache) and pushes (copy them from the local cache to other servers), kept in SQLite.
//!
//! # Example
//!
//! The store alone: queue a pull, move it through the state machine, read it back.
//!
//! ```
//! use std::time::SystemTime;
//! use artifact_jobs::{Action, Change, Event, NewJob, State, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = Store::open(dir.path())?;
//! let new = NewJob {
//!     action: Action::Pull,
//!     id: "5eed".parse()?,
//!     endpoints: vec!["http://peer:8417".into()],
//!     priority: 0,
//! };
//! let (job, created) = store.submit(&[new.clone()], 100, SystemTime::now())?.remove(0);
//! assert!(created);
//! // The same job again is not queued twice.
//! assert_eq!(store.submit(&[new], 100, SystemTime::now())?[0], (job.clone(), false));
//! let job = store.apply(job.job, Event::Start, Change::default(), SystemTime::now())?;
//! assert_eq!((job.state, job.attempts), (State::Running, 1));
//! // A transition the state machine does not have is an error, and changes nothing.
//! assert!(store.apply(job.job, Event::Due, Change::default(), SystemTime::now()).is_err());
//! assert_eq!(store.get(job.job)?.state, State::Running);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Main types
//!
//! - [`State`], [`Event`] and [`TRANSITIONS`]: the state machine, one table.
//! - [`Job`], [`JobId`], [`NewJob`]: the job model.
//! - [`Store`]: the jobs in SQLite, with [`Change`] for what a transition records.
//! - [`Jobs`]: the scheduler, configured by [`JobsConfig`]; [`RateLimit`], its token bucket.

// Transfer errors are artifact-http's, which name their artifact inline and are large; they
// are also cold (one per failed attempt), so boxing buys nothing.
#![allow(clippy::result_large_err)]

mod api;
mod config;
mod error;
mod job;
mod machine;
mod metrics;
mod rate;
mod sched;
mod status;
mod store;

pub use config::JobsConfig;
pub use error::Error;
pub use job::{Job, JobId, LOG_ENTRIES, LogEntry, NewJob};
pub use machine::{Action, Event, ParseError, State, TRANSITIONS, next};
pub use rate::RateLimit;
pub use sched::Jobs;
pub use store::{Change, FILE_NAME, Store};
