//! Bridges between tarstream's blocking `send`/`receive` and async byte streams: the blocking
//! side runs on tokio's blocking pool and talks to the async side through a small bounded
//! channel of chunks (`Bytes` out of `send`; recycled buffers into `receive`), so memory stays
//! at a few chunks per transfer and a side that goes away stops the other promptly.
//!
//! Why not the `tokio_util::io::SyncIoBridge` route: we need an idle timeout on the blocking
//! writer (a client that stops reading must not hold a read lock forever), chunk sizes that
//! suit HTTP bodies, and to drop the owned lock guard *before* the body's end is signalled.

use std::{
    io::{self, Read, Write},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::{runtime::Handle, sync::mpsc};
use tracing::Instrument;

/// Bytes per body chunk.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks queued between the two sides.
const DEPTH: usize = 4;

/// Streams the tree at `dir` as a tar stream (without computing its digest), holding `hold` (a read guard, a permit) until the
/// blocking sender has finished: it is dropped before the stream yields its end, so whoever
/// sees the end of the body sees the lock released.
///
/// The stream ends with an error item when `send` failed, so that an HTTP body is aborted
/// rather than ended cleanly. `idle` bounds how long one chunk may wait for the consumer: the
/// HTTP stack takes a chunk as soon as the socket has room for it, and on connections that
/// [`serve`](crate::serve) accepts (`TCP_NOTSENT_LOWAT`) that room follows what the client
/// reads within a few tens of KiB, so `idle` measures the client's progress, not the depth of
/// the kernel's buffers.
#[cfg_attr(not(feature = "client"), allow(dead_code))] // the server sends through `send_part`
pub(crate) fn send_stream<H: Send + 'static>(
    dir: PathBuf,
    hold: H,
    idle: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    send_part(dir, Part::Whole, hold, idle)
}

/// What [`send_part`] sends of a tree's stream.
pub(crate) enum Part {
    /// All of it.
    Whole,
    /// These bytes of it, by seeking with the tree's index.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Range(tarstream::Index, std::ops::Range<u64>),
}

/// [`send_stream`] of the whole stream or of one byte range of it.
pub(crate) fn send_part<H: Send + 'static>(
    dir: PathBuf,
    part: Part,
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
            // Both callers send a committed artifact whose digest is in its metadata (and in
            // the `X-Artifact-Digest` header the receiver checks): no need to hash it again.
            let result = match part {
                Part::Whole => tarstream::send_without_digest(&dir, &mut out),
                Part::Range(index, range) => tarstream::send_range(&dir, &index, range, &mut out),
            };
            match &result {
                Ok(bytes) => tracing::trace!(bytes, "tar stream sent"),
                Err(err) => tracing::debug!(error = %err, "tar stream aborted"),
            }
            drop(hold);
            let _ = done_tx.send(result);
            // Closing the channel is what ends the stream: only after `hold` is gone.
            drop(out);
        })
    });
    // The last chunk is held back until the sender has finished (and dropped `hold`): a body
    // with a `Content-Length` is complete for the client as soon as its last byte arrives, so
    // only then may that byte go.
    let state = (rx, None::<Bytes>, Some(done_rx));
    futures_util::stream::unfold(state, |(mut rx, mut held, mut done)| async move {
        while let Some(chunk) = rx.recv().await {
            if let Some(previous) = held.replace(chunk) {
                return Some((Ok(previous), (rx, held, done)));
            }
        }
        let result = done.take()?.await;
        let err = match result {
            Ok(Ok(_)) => return held.take().map(|last| (Ok(last), (rx, None, None))),
            Ok(Err(err)) => io::Error::other(err),
            Err(_) => io::Error::other("the tar sender panicked"),
        };
        Some((Err(err), (rx, None, None)))
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
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    pool: Arc<Pool>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.pool.put(std::mem::replace(&mut self.current, chunk));
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let len = buf.len().min(self.current.len() - self.pos);
        buf[..len].copy_from_slice(&self.current[self.pos..self.pos + len]);
        self.pos += len;
        Ok(len)
    }
}

/// The buffers a [`receive`] pump copies the body into, recycled by its [`ChannelReader`].
///
/// Copying costs less than handing the body's own chunks over: those are slices of the HTTP
/// client's (or server's) read buffer, which cannot be reused while any of them is queued, so
/// every read would allocate fresh memory that the allocator gives back to the OS once the
/// chunks are consumed, and the kernel would fault in and zero again (on a 1 GiB download,
/// about 80,000 page faults and a fifth of the client's CPU time).
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn take(&self) -> Vec<u8> {
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        pool.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.capacity() > 0 && pool.len() <= DEPTH {
            pool.push(buf);
        }
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
    let (tx, rx) = mpsc::channel::<Vec<u8>>(DEPTH);
    let pool = Arc::new(Pool::default());
    let span = tracing::Span::current();
    let task = {
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| job(&mut ChannelReader { rx, current: Vec::new(), pos: 0, pool }))
        })
    };
    let end = async move {
        let mut body = std::pin::pin!(body);
        // Chunks are gathered into buffers of up to `CHUNK` bytes (or one larger chunk), each
        // handed over when full or when the body has nothing more at hand, so that nothing
        // waits here while the body is quiet.
        let mut gathered = pool.take();
        loop {
            let next = match body.next().now_or_never() {
                Some(next) => Ok(next),
                None => {
                    if !gathered.is_empty() {
                        let full = std::mem::replace(&mut gathered, pool.take());
                        if tx.send(full).await.is_err() {
                            return PumpEnd::JobGone;
                        }
                    }
                    tokio::select! {
                        next = tokio::time::timeout(idle, body.next()) => next,
                        () = tx.closed() => return PumpEnd::JobGone,
                    }
                }
            };
            let end = match next {
                Err(_) => PumpEnd::Idle,
                Ok(None) => PumpEnd::Done,
                Ok(Some(Err(err))) => PumpEnd::Body(err),
                Ok(Some(Ok(chunk))) => {
                    on_chunk(chunk.len());
                    // Hand over what is gathered before it would outgrow its buffer.
                    if !gathered.is_empty() && gathered.len() + chunk.len() > CHUNK {
                        let full = std::mem::replace(&mut gathered, pool.take());
                        if tx.send(full).await.is_err() {
                            return PumpEnd::JobGone;
                        }
                    }
                    gathered.extend_from_slice(&chunk);
                    continue;
                }
            };
            // What arrived before the end goes to the job, which then sees EOF.
            if !gathered.is_empty() && tx.send(gathered).await.is_err() {
                return PumpEnd::JobGone;
            }
            return end;
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
    async fn receive_hands_over_chunks_of_any_size_in_order() {
        let mut rng = fastrand::Rng::with_seed(7);
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|_| rng.u8(..)).collect();
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let len = match rng.u8(0..4) {
                0 => 0,
                1 => rng.usize(1..100),
                2 => rng.usize(1..CHUNK),
                _ => rng.usize(CHUNK..2 * CHUNK),
            }
            .min(data.len() - at);
            chunks.push(Bytes::copy_from_slice(&data[at..at + len]));
            at += len;
        }
        // Every other chunk keeps the body busy for a moment: gathered bytes must not wait.
        let body = futures_util::stream::iter(chunks.into_iter().enumerate()).then(
            |(i, chunk)| async move {
                if i % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                Ok::<_, io::Error>(chunk)
            },
        );
        let mut seen = 0;
        let (read, end) = receive(
            body,
            Duration::from_secs(10),
            |n| seen += n,
            |reader| {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).map(|_| out)
            },
        )
        .await;
        assert!(matches!(end, PumpEnd::Done));
        assert_eq!(seen, data.len());
        assert!(read.unwrap() == data, "the bytes arrive whole and in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_arrived_reaches_the_job_while_the_body_is_quiet() {
        let first = futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from_static(b"hello"))]);
        let body = first.chain(futures_util::stream::pending());
        let (read, end) = receive(
            body,
            Duration::from_secs(600),
            |_| {},
            |reader| {
                let mut hello = [0; 5];
                reader.read_exact(&mut hello).map(|()| hello)
            },
        )
        .await;
        assert_eq!(&read.unwrap(), b"hello");
        assert!(matches!(end, PumpEnd::JobGone));
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
