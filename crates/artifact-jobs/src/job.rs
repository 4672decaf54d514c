//! [`Job`]: one transfer of one artifact, as the store keeps it, with its [`JobId`] and its
//! short [`LogEntry`] history; [`NewJob`] is what a request asks for.

use std::{
    fmt,
    num::ParseIntError,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use artifact_cache::ArtifactId;
use serde::{Deserialize, Serialize};

use crate::{Action, State};

/// A job's number: assigned by the store in submission order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ParseIntError;

    fn from_str(text: &str) -> Result<JobId, ParseIntError> {
        text.parse().map(JobId)
    }
}

/// A job to submit: one artifact, one action, its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Pull or push.
    pub action: Action,
    /// The artifact.
    pub id: ArtifactId,
    /// For a pull, the sources, tried in order; for a push, the one target.
    pub endpoints: Vec<String>,
    /// Higher runs first; jobs of equal priority run in submission order.
    pub priority: i64,
}

/// One entry of a job's short history: a state change, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The state entered.
    pub state: State,
    /// Why, or with what (the error of a failed attempt, the endpoint of a start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The most entries a job's log keeps: the first (its creation) and the latest others.
pub const LOG_ENTRIES: usize = 16;

/// A transfer job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its number.
    pub job: JobId,
    /// Pull or push.
    pub action: Action,
    /// The artifact.
    pub id: ArtifactId,
    /// For a pull, the sources in order; for a push, the target.
    pub endpoints: Vec<String>,
    /// Higher runs first.
    pub priority: i64,
    /// Where it stands.
    pub state: State,
    /// Transfers started so far.
    pub attempts: u32,
    /// Body bytes moved by the last attempt.
    pub bytes: u64,
    /// The endpoint of the running or last attempt.
    pub endpoint: Option<String>,
    /// The error of the last failed attempt.
    pub error: Option<String>,
    /// When it was submitted.
    pub created: SystemTime,
    /// When it last changed.
    pub updated: SystemTime,
    /// While `retrying`: when it is queued again.
    pub due: Option<SystemTime>,
    /// State changes, oldest first (at most [`LOG_ENTRIES`]).
    pub log: Vec<LogEntry>,
}

impl Job {
    /// The endpoint whose pool runs it: the first source of a pull, the target of a push.
    pub fn pool(&self) -> &str {
        self.endpoints.first().map_or("", String::as_str)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time `millis` after the Unix epoch.
pub(crate) fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
}
