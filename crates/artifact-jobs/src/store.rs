//! [`Store`]: the jobs in SQLite (`jobs.sqlite3` in the cache root), one transaction per
//! transition, the schema versioned with `PRAGMA user_version`, in WAL mode.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::{
    Action, Error, Event, Job, JobId, LogEntry, NewJob, State,
    job::{LOG_ENTRIES, from_millis, to_millis},
    machine,
};

/// The database's file name in the cache root.
pub const FILE_NAME: &str = "jobs.sqlite3";

/// The schema version this crate writes.
const SCHEMA_VERSION: i64 = 1;

/// The schema, version 1.
const SCHEMA: &str = "
CREATE TABLE jobs (
    job INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    artifact TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    endpoint TEXT,
    error TEXT,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    due INTEGER,
    log TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, job);
CREATE INDEX jobs_by_artifact ON jobs (artifact, action);
";

/// The columns every query reads, in [`read_job`]'s order.
const COLUMNS: &str = "job, action, artifact, endpoints, priority, state, attempts, bytes, \
                       endpoint, error, created, updated, due, log";

/// What a transition records besides the new state.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// The endpoint in use.
    pub endpoint: Option<String>,
    /// Body bytes moved by the attempt.
    pub bytes: Option<u64>,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// For [`Event::Retry`]: when the job is due again.
    pub due: Option<SystemTime>,
    /// A note for the log entry.
    pub note: Option<String>,
}

/// The job database. Every method is blocking: call it off the async runtime's workers.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in the cache root `root`.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if it cannot be opened or set up (the root is not writable, the
    /// file is not a database); [`Error::Schema`] if a newer program wrote it.
    pub fn open(root: &Path) -> Result<Store, Error> {
        Store::open_file(&root.join(FILE_NAME))
    }

    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    ///
    /// As for [`open`](Store::open).
    pub fn open_file(path: &Path) -> Result<Store, Error> {
        let path = path.to_owned();
        let db = |what| {
            let path = path.clone();
            move |source| Error::Database { path, what, source }
        };
        let mut conn = Connection::open(&path).map_err(db("opening"))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db("setting synchronous"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("checking the schema"))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db("reading the schema version"))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA).map_err(db("creating the schema"))?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(db("writing the schema version"))?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(Error::Schema { path, found, supported: SCHEMA_VERSION });
            }
        }
        tx.commit().map_err(db("checking the schema"))?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        let path = self.path.clone();
        move |source| Error::Database { path, what, source }
    }

    /// Queues `jobs` in one transaction, each unless an equal job (same action, artifact and
    /// endpoints) is active, in which case that one is returned. Returns one job per entry,
    /// and whether it is new.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] if the new jobs would make more than `max_active` active jobs
    /// (nothing is queued then); [`Error::Database`].
    pub fn submit(
        &mut self,
        jobs: &[NewJob],
        max_active: usize,
        now: SystemTime,
    ) -> Result<Vec<(Job, bool)>, Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&path, "queueing jobs", e))?;
        let active: i64 = tx
            .query_row(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'retrying')",
                [],
                |row| row.get(0),
            )
            .map_err(|e| db_err(&path, "counting jobs", e))?;
        let mut active = usize::try_from(active).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(jobs.len());
        let at = to_millis(now);
        for new in jobs {
            let endpoints = serde_json::to_string(&new.endpoints).expect("strings serialize");
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE artifact = ?1 AND action = ?2 \
                         AND endpoints = ?3 AND state IN ('queued', 'running', 'retrying') \
                         ORDER BY job LIMIT 1"
                    ),
                    params![new.id.to_string(), new.action.as_str(), endpoints],
                    read_row,
                )
                .optional()
                .map_err(|e| db_err(&path, "looking for an equal job", e))?;
            if let Some(row) = existing {
                out.push((row.into_job()?, false));
                continue;
            }
            if active >= max_active {
                return Err(Error::QueueFull { max: max_active });
            }
            active += 1;
            let log = serde_json::to_string(&[LogEntry { at, state: State::Queued, note: None }])
                .expect("entries serialize");
            let row = tx
                .query_row(
                    &format!(
                        "INSERT INTO jobs (action, artifact, endpoints, priority, state, \
                         created, updated, log) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?6) \
                         RETURNING {COLUMNS}"
                    ),
                    params![
                        new.action.as_str(),
                        new.id.to_string(),
                        endpoints,
                        new.priority,
                        at,
                        log
                    ],
                    read_row,
                )
                .map_err(|e| db_err(&path, "inserting a job", e))?;
            out.push((row.into_job()?, true));
        }
        tx.commit().map_err(|e| db_err(&path, "queueing jobs", e))?;
        Ok(out)
    }

    /// The job `job`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::Database`].
    pub fn get(&self, job: JobId) -> Result<Job, Error> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE job = ?1"), [job.0], read_row)
            .optional()
            .map_err(self.db("reading a job"))?
            .ok_or(Error::NotFound { job })?
            .into_job()
    }

    /// Up to `limit` jobs after `after`, in job order, only those in `state` if given.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn list(
        &self,
        state: Option<State>,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, Error> {
        let mut query = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE job > ?1 AND (?2 IS NULL OR state = ?2) \
                 ORDER BY job LIMIT ?3"
            ))
            .map_err(self.db("listing jobs"))?;
        let rows = query
            .query_map(
                params![
                    after.map_or(0, |j| j.0),
                    state.map(State::as_str),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                read_row,
            )
            .map_err(self.db("listing jobs"))?;
        let mut jobs = Vec::new();
        for row in rows {
            jobs.push(row.map_err(self.db("listing jobs"))?.into_job()?);
        }
        Ok(jobs)
    }

    /// How many jobs are in each state (every state listed, zeros included).
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn counts(&self) -> Result<Vec<(State, u64)>, Error> {
        let mut counts: Vec<(State, u64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        let mut query = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")
            .map_err(self.db("counting jobs"))?;
        let rows = query
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .map_err(self.db("counting jobs"))?;
        for row in rows {
            let (state, n) = row.map_err(self.db("counting jobs"))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    /// Applies `event` to `job` in one transaction: the state the table allows, `change`'s
    /// fields, a log entry. [`Event::Start`] also counts an attempt.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalTransition`] if the table has no transition for `event` in the job's
    /// state (nothing changes then); [`Error::NotFound`]; [`Error::Database`].
    pub fn apply(
        &mut self,
        job: JobId,
        event: Event,
        change: Change,
        now: SystemTime,
    ) -> Result<Job, Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&path, "starting a transition", e))?;
        let current = tx
            .query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE job = ?1"), [job.0], read_row)
            .optional()
            .map_err(|e| db_err(&path, "reading a job", e))?
            .ok_or(Error::NotFound { job })?
            .into_job()?;
        let from = current.state;
        let to = machine::next(from, event).ok_or(Error::IllegalTransition { job, from, event })?;
        let at = to_millis(now);
        let mut log = current.log;
        log.push(LogEntry { at, state: to, note: change.note.clone().or(change.error.clone()) });
        if log.len() > LOG_ENTRIES {
            log.drain(1..=log.len() - LOG_ENTRIES);
        }
        let attempts = current.attempts + u32::from(event == Event::Start);
        let due = if to == State::Retrying { change.due.map(to_millis) } else { None };
        let row = tx
            .query_row(
                &format!(
                    "UPDATE jobs SET state = ?2, attempts = ?3, bytes = coalesce(?4, bytes), \
                     endpoint = coalesce(?5, endpoint), error = coalesce(?6, error), \
                     updated = ?7, due = ?8, log = ?9 WHERE job = ?1 RETURNING {COLUMNS}"
                ),
                params![
                    job.0,
                    to.as_str(),
                    attempts,
                    change.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    change.endpoint,
                    change.error,
                    at,
                    due,
                    serde_json::to_string(&log).expect("entries serialize"),
                ],
                read_row,
            )
            .map_err(|e| db_err(&path, "updating a job", e))?;
        tx.commit().map_err(|e| db_err(&path, "committing a transition", e))?;
        row.into_job()
    }

    /// After a restart: every job left `running` (the process died, or stopped, mid-transfer)
    /// is queued again, each in its own transition. Returns them.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn recover(&mut self, now: SystemTime) -> Result<Vec<Job>, Error> {
        let running: Vec<JobId> =
            self.list_ids("SELECT job FROM jobs WHERE state = 'running' ORDER BY job")?;
        let note = Change { note: Some("requeued at start".into()), ..Change::default() };
        running.into_iter().map(|job| self.apply(job, Event::Requeue, note.clone(), now)).collect()
    }

    /// The jobs that are `queued` or `retrying`, in priority order (higher first), then job
    /// order: what a scheduler starting up takes on.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn waiting(&self) -> Result<Vec<Job>, Error> {
        let mut query = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state IN ('queued', 'retrying') \
                 ORDER BY priority DESC, job"
            ))
            .map_err(self.db("listing waiting jobs"))?;
        let rows = query.query_map([], read_row).map_err(self.db("listing waiting jobs"))?;
        let mut jobs = Vec::new();
        for row in rows {
            jobs.push(row.map_err(self.db("listing waiting jobs"))?.into_job()?);
        }
        Ok(jobs)
    }

    /// Deletes the ended jobs last changed before `before`. Returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn prune(&mut self, before: SystemTime) -> Result<usize, Error> {
        self.conn
            .execute(
                "DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') \
                 AND updated < ?1",
                [to_millis(before)],
            )
            .map_err(self.db("pruning jobs"))
    }

    fn list_ids(&self, sql: &str) -> Result<Vec<JobId>, Error> {
        let mut query = self.conn.prepare_cached(sql).map_err(self.db("listing jobs"))?;
        let rows = query.query_map([], |row| row.get(0)).map_err(self.db("listing jobs"))?;
        rows.map(|r| r.map(JobId).map_err(self.db("listing jobs"))).collect()
    }
}

fn db_err(path: &Path, what: &'static str, source: rusqlite::Error) -> Error {
    Error::Database { path: path.to_owned(), what, source }
}

/// A row as SQLite gives it, before checking.
struct RawJob {
    job: i64,
    action: String,
    artifact: String,
    endpoints: String,
    priority: i64,
    state: String,
    attempts: i64,
    bytes: i64,
    endpoint: Option<String>,
    error: Option<String>,
    created: i64,
    updated: i64,
    due: Option<i64>,
    log: String,
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        job: row.get(0)?,
        action: row.get(1)?,
        artifact: row.get(2)?,
        endpoints: row.get(3)?,
        priority: row.get(4)?,
        state: row.get(5)?,
        attempts: row.get(6)?,
        bytes: row.get(7)?,
        endpoint: row.get(8)?,
        error: row.get(9)?,
        created: row.get(10)?,
        updated: row.get(11)?,
        due: row.get(12)?,
        log: row.get(13)?,
    })
}

impl RawJob {
    fn into_job(self) -> Result<Job, Error> {
        let job = JobId(self.job);
        let bad = |reason: String| Error::Corrupt { job, reason };
        Ok(Job {
            job,
            action: self.action.parse::<Action>().map_err(|e| bad(e.to_string()))?,
            id: self.artifact.parse().map_err(|e| bad(format!("artifact id: {e}")))?,
            endpoints: serde_json::from_str(&self.endpoints)
                .map_err(|e| bad(format!("endpoints: {e}")))?,
            priority: self.priority,
            state: self.state.parse::<State>().map_err(|e| bad(e.to_string()))?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            bytes: u64::try_from(self.bytes).unwrap_or(0),
            endpoint: self.endpoint,
            error: self.error,
            created: from_millis(self.created),
            updated: from_millis(self.updated),
            due: self.due.map(from_millis),
            log: serde_json::from_str(&self.log).map_err(|e| bad(format!("log: {e}")))?,
        })
    }
}
