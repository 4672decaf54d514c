//! Waiting variants for async callers (feature `tokio`): [`Cache::get_wait`],
//! [`Cache::create_or_get`], [`Fill`] and [`Cache::quarantine_wait`].
//!
//! Writers in this process wake waiters through the id's in-process entry (a
//! `tokio::sync::Notify`); writers in other processes cannot, so waiters also poll with a
//! backoff that doubles from 1 ms to 50 ms. Every file-system call runs in `spawn_blocking`.

use std::{
    pin::Pin,
    time::{Duration, Instant},
};

use tokio::sync::futures::Notified;

use crate::{ArtifactId, Cache, Error, Quarantined, ReadGuard, WriteGuard};

const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// What [`Cache::create_or_get`] got: the job of filling the artifact, or the artifact.
#[derive(Debug)]
pub enum Fill {
    /// Nobody had it: we are the writer, fill and commit (or drop to let a waiter try).
    Create(WriteGuard),
    /// It is committed (perhaps by the writer we waited for): read it.
    Ready(ReadGuard),
}

enum Attempt {
    Done(Fill),
    /// Locked by someone else: wait for a change.
    Wait,
    /// Changed under us (removed between `create` and `get`): try again at once.
    Again,
}

impl Cache {
    /// Like [`get`](Cache::get), but while a writer holds the artifact, waits for it to commit
    /// (or abort) instead of failing with [`Error::WriteLocked`].
    ///
    /// Returns [`Error::NotFound`] if the artifact is absent (or the writer aborted), and
    /// [`Error::Timeout`] if still locked after `timeout`. Cancel-safe: dropping the future
    /// leaves nothing locked. Needs a tokio runtime with the time driver.
    ///
    /// ```
    /// use std::time::Duration;
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "beef".parse()?;
    /// let writer = cache.create(&id)?;
    /// let waiter = tokio::spawn({
    ///     let cache = cache.clone();
    ///     async move { cache.get_wait(&id, Duration::from_secs(10)).await }
    /// });
    /// std::fs::write(writer.path().join("f"), "x")?;
    /// writer.commit()?;
    /// assert_eq!(waiter.await??.metadata().size, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The future owns what it needs (it borrows neither the cache nor `id`), so it can be
    /// spawned as it is.
    pub fn get_wait(
        &self,
        id: &ArtifactId,
        timeout: Duration,
    ) -> impl Future<Output = Result<ReadGuard, Error>> + Send + 'static {
        self.clone().get_wait_owned(*id, timeout)
    }

    #[tracing::instrument(name = "get_wait", skip_all, fields(id = %id), err(level = "debug"))]
    async fn get_wait_owned(self, id: ArtifactId, timeout: Duration) -> Result<ReadGuard, Error> {
        let write_locked = |err: &Error| matches!(err, Error::WriteLocked { .. });
        self.retry_while(id, timeout, write_locked, move |cache| cache.get(&id)).await
    }

    /// Runs `attempt` on a blocking thread until it ends other than `busy`, waiting between
    /// tries for a wake-up of `id`'s entry or the backoff; [`Error::Timeout`] after `timeout`.
    async fn retry_while<T: Send + 'static>(
        &self,
        id: ArtifactId,
        timeout: Duration,
        busy: impl Fn(&Error) -> bool,
        attempt: impl Fn(&Cache) -> Result<T, Error> + Clone + Send + 'static,
    ) -> Result<T, Error> {
        let started = Instant::now();
        // Holding the entry keeps its `Notify` the one writers of this process wake.
        let entry = self.inner.table.entry(&id);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut notified = std::pin::pin!(entry.changed.notified());
            notified.as_mut().enable();
            match self.blocking(attempt.clone()).await {
                Err(err) if busy(&err) => {}
                result => return result,
            }
            if !pause(notified, &mut backoff, started, timeout).await {
                return Err(Error::Timeout { id, waited: started.elapsed() });
            }
        }
    }

    /// The single-flight primitive: become the writer of `id`, or wait for the current one and
    /// read what it committed.
    ///
    /// Returns [`Fill::Create`] if nobody has the artifact (fill and commit it), or
    /// [`Fill::Ready`] once it is committed, by an earlier writer or the one waited for. If
    /// that writer aborts, one of the waiters becomes the writer. [`Error::Timeout`] after
    /// `timeout`. Cancel-safe: dropping the future leaves nothing locked or half-made.
    ///
    /// ```
    /// use std::time::Duration;
    /// use artifact_cache::{ArtifactId, Cache, Fill};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "f00d".parse()?;
    /// let Fill::Create(writer) = cache.create_or_get(&id, Duration::from_secs(10)).await? else {
    ///     unreachable!("the cache is empty");
    /// };
    /// std::fs::write(writer.path().join("f"), "x")?;
    /// writer.commit()?;
    /// let Fill::Ready(reader) = cache.create_or_get(&id, Duration::from_secs(10)).await? else {
    ///     unreachable!("committed above");
    /// };
    /// assert_eq!(reader.metadata().files, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Like [`get_wait`](Cache::get_wait), the future owns what it needs.
    pub fn create_or_get(
        &self,
        id: &ArtifactId,
        timeout: Duration,
    ) -> impl Future<Output = Result<Fill, Error>> + Send + 'static {
        self.clone().create_or_get_owned(*id, timeout)
    }

    #[tracing::instrument(name = "create_or_get", skip_all, fields(id = %id), err(level = "debug"))]
    async fn create_or_get_owned(self, id: ArtifactId, timeout: Duration) -> Result<Fill, Error> {
        let started = Instant::now();
        let entry = self.inner.table.entry(&id);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut notified = std::pin::pin!(entry.changed.notified());
            notified.as_mut().enable();
            let attempt = self
                .blocking(move |cache| match cache.create(&id) {
                    Ok(writer) => Ok(Attempt::Done(Fill::Create(writer))),
                    Err(Error::Exists { .. }) => match cache.get(&id) {
                        Ok(reader) => Ok(Attempt::Done(Fill::Ready(reader))),
                        Err(err) if err.is_not_found() => Ok(Attempt::Again),
                        Err(err) if err.is_locked() => Ok(Attempt::Wait),
                        Err(err) => Err(err),
                    },
                    Err(err) if err.is_locked() => Ok(Attempt::Wait),
                    Err(err) => Err(err),
                })
                .await?;
            match attempt {
                Attempt::Done(fill) => return Ok(fill),
                Attempt::Again if started.elapsed() < timeout => continue,
                Attempt::Again | Attempt::Wait => {}
            }
            if !pause(notified, &mut backoff, started, timeout).await {
                return Err(Error::Timeout { id, waited: started.elapsed() });
            }
        }
    }

    /// [`quarantine`](Cache::quarantine), waiting while readers (or a remover) hold the
    /// artifact instead of failing: from the first try on, this process opens it for no new
    /// reader, so only the readers already there are waited for (woken when this process's
    /// last one lets go, polling for other processes').
    ///
    /// [`Error::Timeout`] if it is still held after `timeout` (it stays condemned in this
    /// process: a later call finishes the job). Cancel-safe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "0bad".parse()?;
    /// cache.create(&id)?.commit()?;
    /// let reader = cache.get(&id)?;
    /// let quarantine = tokio::spawn(cache.quarantine_wait(&id, "corrupt", Duration::from_secs(10)));
    /// // The reader keeps its files; no new reader gets the artifact.
    /// tokio::task::yield_now().await;
    /// drop(reader);
    /// assert_eq!(quarantine.await??.reason, "corrupt");
    /// assert!(cache.get(&id).unwrap_err().is_not_found());
    /// # Ok(())
    /// # }
    /// ```
    pub fn quarantine_wait(
        &self,
        id: &ArtifactId,
        reason: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Quarantined, Error>> + Send + 'static {
        self.clone().quarantine_wait_owned(*id, reason.to_owned(), timeout)
    }

    #[tracing::instrument(name = "quarantine_wait", skip_all, fields(id = %id), err(level = "debug"))]
    async fn quarantine_wait_owned(
        self,
        id: ArtifactId,
        reason: String,
        timeout: Duration,
    ) -> Result<Quarantined, Error> {
        let reason: std::sync::Arc<str> = reason.into();
        let attempt = move |cache: &Cache| cache.quarantine(&id, &reason);
        self.retry_while(id, timeout, Error::is_locked, attempt).await
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cache) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let cache = self.clone();
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(&cache))).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(Error::Io {
                path: self.root().to_owned(),
                source: std::io::Error::other("the tokio runtime is shutting down"),
            }),
        }
    }
}

/// Waits for a wake-up or the backoff, whichever comes first; `false` once `timeout` has
/// passed since `started`.
async fn pause(
    notified: Pin<&mut Notified<'_>>,
    backoff: &mut Duration,
    started: Instant,
    timeout: Duration,
) -> bool {
    let Some(left) = timeout.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
        return false;
    };
    // Woken or timed out: either way, try again.
    let _ = tokio::time::timeout((*backoff).min(left), notified).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}
