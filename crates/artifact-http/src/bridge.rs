//! Bridges between tarstream's blocking `send`/`receive` and async byte streams: the blocking
//! side runs on tokio's blocking pool and talks to the async side through a small bounded
//! channel of `Bytes`, so memory stays at a few chunks per transfer and a side that goes away
//! stops the other promptly.
//!
//! Why not the `tokio_util::io::SyncIoBridge` route: we need an idle timeout on the blocking
//! writer (a client that stops reading must not hold a read lock forever), chunk sizes that
//! suit HTTP bodies, and to drop the owned lock guard *before* the body's end is signalled.

use std::{
    io::{self, Read, Write},
    path::PathBuf,
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::{runtime::Handle, sync::mpsc};
use tracing::Instrument;

/// Bytes per body chunk.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks queued between the two sides.
const DEPTH: usize = 4;

/// Streams the tree at `dir` as a tar stream, holding `hold` (a read guard, a permit) until the
/// blocking sender has finished: it is dropped before the stream yields its end, so whoever
/// sees the end of the body sees the lock released.
///
/// The stream ends with an error item when `send` failed, so that an HTTP body is aborted
/// rather than ended cleanly. `idle` bounds how long one chunk may wait for the consumer.
pub(crate) fn send_stream<H: Send + 'static>(
    dir: PathBuf,
    hold: H,
    idle: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let handle = Handle::current();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let mut out = ChannelWriter { tx, handle, idle };
            let result = tarstream::send(&dir, &mut out);
            match &result {
                Ok(summary) => tracing::trace!(bytes = summary.stream_bytes, "tar stream sent"),
                Err(err) => tracing::debug!(error = %err, "tar stream aborted"),
            }
            drop(hold);
            let _ = done_tx.send(result);
            // Closing the channel is what ends the stream: only after `hold` is gone.
            drop(out);
        })
    });
    let state = (rx, Some(done_rx));
    futures_util::stream::unfold(state, |(mut rx, mut done)| async move {
        if let Some(chunk) = rx.recv().await {
            return Some((Ok(chunk), (rx, done)));
        }
        let result = done.take()?.await;
        let err = match result {
            Ok(Ok(_)) => return None,
            Ok(Err(err)) => io::Error::other(err),
            Err(_) => io::Error::other("the tar sender panicked"),
        };
        Some((Err(err), (rx, None)))
    })
}

/// A `Write` that hands its bytes to the async side in chunks of at most [`CHUNK`] bytes.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    handle: Handle,
    idle: Duration,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(CHUNK);
        if len == 0 {
            return Ok(0);
        }
        let chunk = Bytes::copy_from_slice(&buf[..len]);
        let sent = self.handle.block_on(tokio::time::timeout(self.idle, self.tx.send(chunk)));
        match sent {
            Ok(Ok(())) => Ok(len),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the peer went away")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {:?}", self.idle),
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over the chunks the async side pumps in; EOF when the pump stops.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let len = buf.len().min(self.current.len());
        buf[..len].copy_from_slice(&self.current[..len]);
        bytes::Buf::advance(&mut self.current, len);
        Ok(len)
    }
}

/// Why the pump feeding a [`receive`] job stopped.
#[derive(Debug)]
pub(crate) enum PumpEnd<E> {
    /// The body ended.
    Done,
    /// The body failed.
    Body(E),
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The job stopped reading (it failed, or finished early).
    JobGone,
}

/// Feeds `body` to `job`, which runs on a blocking thread and reads it through a
/// [`ChannelReader`]. `on_chunk` sees the size of each chunk as it arrives (for progress and
/// byte counts).
///
/// Returns the job's result and why the body stopped. The job sees EOF whenever the pump stops,
/// so a body error or idle timeout shows up in the job as a truncated stream; the caller
/// should prefer the [`PumpEnd`] as the cause. If this future is dropped, the pump stops, the
/// job sees EOF and finishes on its own, dropping what it owns on the blocking thread.
pub(crate) async fn receive<S, E, T, F>(
    body: S,
    idle: Duration,
    mut on_chunk: impl FnMut(usize) + Send,
    job: F,
) -> (T, PumpEnd<E>)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    F: FnOnce(&mut ChannelReader) -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        span.in_scope(|| job(&mut ChannelReader { rx, current: Bytes::new() }))
    });
    let end = async move {
        let mut body = std::pin::pin!(body);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle, body.next()) => next,
                () = tx.closed() => return PumpEnd::JobGone,
            };
            match next {
                Err(_) => return PumpEnd::Idle,
                Ok(None) => return PumpEnd::Done,
                Ok(Some(Err(err))) => return PumpEnd::Body(err),
                Ok(Some(Ok(chunk))) => {
                    on_chunk(chunk.len());
                    if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                        return PumpEnd::JobGone;
                    }
                }
            }
        }
    }
    .in_current_span()
    .await;
    match task.await {
        Ok(out) => (out, end),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("the blocking receive task was cancelled: {err}"),
    }
}

/// Runs `f` on the blocking pool, in the current span.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(out) => out,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("a blocking task was cancelled: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    /// Signals when it is dropped.
    struct Flag(Option<oneshot::Sender<()>>);

    impl Drop for Flag {
        fn drop(&mut self) {
            let _ = self.0.take().map(|tx| tx.send(()));
        }
    }

    fn flag() -> (Flag, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Flag(Some(tx)), rx)
    }

    /// Waits for a flag's drop, with a watchdog.
    async fn dropped(rx: oneshot::Receiver<()>) {
        tokio::time::timeout(Duration::from_secs(20), rx).await.expect("watchdog").unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 16 * CHUNK + 5]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), b"b").unwrap();
        dir
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_then_receive_round_trips_and_releases_before_the_end() {
        let src = tree();
        let (hold, mut released) = flag();
        let stream = send_stream(src.path().to_owned(), hold, Duration::from_secs(10));
        let mut stream = std::pin::pin!(stream);
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk.unwrap());
        }
        assert!(released.try_recv().is_ok(), "the guard is dropped before the end");
        assert!(chunks.iter().all(|c| c.len() <= CHUNK));
        let dst = tempfile::tempdir().unwrap();
        let out = dst.path().join("out");
        let mut seen = 0;
        let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, io::Error>));
        let (result, end) = receive(body, Duration::from_secs(10), |n| seen += n, {
            let out = out.clone();
            move |reader| tarstream::receive(&out, reader)
        })
        .await;
        let summary = result.unwrap();
        assert!(matches!(end, PumpEnd::Done));
        assert_eq!(seen as u64, summary.stream_bytes);
        assert_eq!(summary.digest, tarstream::digest_dir(src.path()).unwrap().digest);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_that_stops_reading_times_the_sender_out() {
        let src = tree();
        let (hold, released) = flag();
        let stream = send_stream(src.path().to_owned(), hold, Duration::from_millis(50));
        let mut stream = Box::pin(stream);
        // Take one chunk, then stall: the sender times out and releases what it holds.
        stream.next().await.unwrap().unwrap();
        dropped(released).await;
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        assert!(last.unwrap().is_err(), "an aborted send ends the stream with an error");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_stream_stops_the_sender() {
        let src = tree();
        let (hold, released) = flag();
        let stream = send_stream(src.path().to_owned(), hold, Duration::from_secs(600));
        let mut stream = Box::pin(stream);
        stream.next().await.unwrap().unwrap();
        drop(stream);
        dropped(released).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn body_errors_and_stalls_are_reported_as_the_cause() {
        let dst = tempfile::tempdir().unwrap();
        let body = futures_util::stream::iter([Ok(Bytes::from_static(&[0; 100])), Err("cut")]);
        let out = dst.path().join("a");
        let (result, end) = receive(
            body,
            Duration::from_secs(10),
            |_| {},
            move |reader| tarstream::receive(&out, reader),
        )
        .await;
        assert!(result.unwrap_err().is_truncated());
        assert!(matches!(end, PumpEnd::Body("cut")));

        let body = futures_util::stream::pending::<Result<Bytes, ()>>();
        let out = dst.path().join("b");
        let (result, end) = receive(
            body,
            Duration::from_millis(20),
            |_| {},
            move |reader| tarstream::receive(&out, reader),
        )
        .await;
        assert!(result.is_err());
        assert!(matches!(end, PumpEnd::Idle));
    }
}
