//! The end of a download: the [`Gate`] that decides between committing and abandoning, and
//! the blocking job that receives a stream into the writer's directory, checks it and
//! commits it (or empties the directory for the next attempt).

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use artifact_cache::{ArtifactId, Cache, ReadGuard, WriteGuard};
use tarstream::{Digest, ReceiveOptions};

use super::fetch::cache_error;
use crate::{Error, bridge};

/// Decides, once per download, between committing a received tree and abandoning the
/// download (its deadline passed, or its caller dropped it): the receive job may commit only
/// while the gate is open, and closing it fails once a commit has begun. So a download that
/// reports a timeout never leaves a committed artifact behind, and one whose commit won the
/// race reports success.
#[derive(Debug, Default)]
pub(super) struct Gate(AtomicU8);

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const CLOSED: u8 = 2;

impl Gate {
    /// Claims the right to commit; false once the gate is closed.
    pub(super) fn begin_commit(&self) -> bool {
        self.0.compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Closes the gate; false if a commit has already begun (it will complete).
    pub(super) fn close(&self) -> bool {
        match self.0.compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == CLOSED,
        }
    }
}

/// Closes its gate when dropped.
pub(super) struct CloseOnDrop(pub(super) Arc<Gate>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Why a receive job failed without losing the writer.
pub(super) enum Failure {
    Stream(tarstream::Error),
    /// (received, announced)
    Digest(Digest, Digest),
}

pub(super) enum Job {
    Failed(WriteGuard, Failure),
    Fatal(Error),
    /// The tree was whole, but the download was over (its deadline passed, or it was dropped)
    /// before the commit could begin: the writer was aborted.
    Cancelled,
}

/// The blocking job of an attempt: receive, verify, commit, and take a read lock; on failure
/// empty the writer's directory for the next attempt.
pub(super) fn receive_and_commit(
    cache: &Cache,
    id: ArtifactId,
    writer: WriteGuard,
    reader: &mut bridge::ChannelReader,
    options: &ReceiveOptions,
    expected: Option<Digest>,
    gate: &Gate,
) -> Result<ReadGuard, Job> {
    let failure = match tarstream::receive_with(writer.path(), reader, options) {
        // Without an announced digest, the one computed on receipt is the artifact's.
        Ok(summary) if expected.is_none_or(|expected| summary.digest == expected) => {
            if !gate.begin_commit() {
                writer.abort().map_err(|err| Job::Fatal(cache_error(id, err)))?;
                return Err(Job::Cancelled);
            }
            writer.commit_with(&summary).map_err(|err| Job::Fatal(cache_error(id, err)))?;
            return cache.get(&id).map_err(|err| Job::Fatal(cache_error(id, err)));
        }
        Ok(summary) => Failure::Digest(summary.digest, expected.unwrap_or(summary.digest)),
        Err(err) => Failure::Stream(err),
    };
    if let Err(err) = empty_dir(writer.path()) {
        let err = artifact_cache::Error::Io { path: writer.path().to_owned(), source: err };
        return Err(Job::Fatal(cache_error(id, err)));
    }
    Err(Job::Failed(writer, failure))
}

/// Deletes everything inside `dir` (not following symlinks).
pub(super) fn empty_dir(dir: &std::path::Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_side_win() {
        let gate = Gate::default();
        assert!(gate.begin_commit());
        assert!(!gate.close(), "a commit that began wins over the deadline");
        let gate = Gate::default();
        assert!(gate.close() && gate.close());
        assert!(!gate.begin_commit(), "no commit begins after the deadline");
    }
}
