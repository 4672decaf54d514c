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

/// Bytes per chunk into [`receive`].
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks queued between the two sides of [`receive`].
const DEPTH: usize = 4;

/// Bytes per chunk of a stream sent, and the size of tarstream's output buffer there.
///
/// Measured against the 256 KiB chunks behind a 1 MiB output buffer that came before: no
/// slower on a 1 GiB stream (the pread, the copy and the socket write of a chunk cost far
/// more than the hop between the threads), with a quarter of the memory per stream (see
/// [`SEND_BUFFERS_PER_STREAM`]).
pub(crate) const SEND_CHUNK: usize = 128 * 1024;

/// Chunks queued between a sender and its body.
///
/// Two rather than one: with one, the HTTP stack often finds the queue empty after writing a
/// chunk and waits for the blocking thread to wake and fill the next, and one 1 GiB stream
/// took 15% longer over loopback (median of 6 alternating runs, 1.54 s against 1.34 s);
/// three or four queued gained nothing more measurable.
const SEND_DEPTH: usize = 2;

/// The most [`SEND_CHUNK`] buffers one sent stream holds at once: tarstream's output buffer,
/// the chunk the sender holds back (the last one waits for the read lock's release), the
/// [`SEND_DEPTH`] queued, and what the HTTP stack holds while it writes (one chunk, and the
/// next as the tail of that one goes out: the server's `max_buf_size` is one chunk). Six
/// buffers, 768 KiB.
pub(crate) const SEND_BUFFERS_PER_STREAM: usize = 2 + SEND_DEPTH + 2;

const _: () = assert!(SEND_BUFFERS_PER_STREAM * SEND_CHUNK <= 1 << 20, "1 MiB per stream at most");

/// Free send buffers kept for the next streams (the rest go back to the allocator): enough for
/// a few streams to start without allocating, few enough that a burst of streams leaves
/// little behind.
const SEND_BUFFERS_KEPT: usize = 32;

/// Initialised buffers of [`SEND_CHUNK`] bytes, lent to the streams a process sends: each
/// stream's tarstream output buffer and the chunks on their way to the socket come from here
/// and go back when dropped, so a stream allocates (and zeroes) nothing in the steady state.
/// It counts the buffers lent, so tests can bound what a stream holds.
#[derive(Debug, Default)]
pub(crate) struct SendBuffers {
    free: Mutex<Vec<Vec<u8>>>,
    /// (lent now, most lent at once)
    lent: Mutex<(usize, usize)>,
}

impl SendBuffers {
    /// The pool every stream of this process sends through.
    pub(crate) fn shared() -> Arc<SendBuffers> {
        static SHARED: std::sync::OnceLock<Arc<SendBuffers>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Arc::default).clone()
    }

    fn take(&self) -> Vec<u8> {
        {
            let mut lent = self.lent.lock().unwrap_or_else(PoisonError::into_inner);
            lent.0 += 1;
            lent.1 = lent.1.max(lent.0);
        }
        let reused = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        reused.unwrap_or_else(|| vec![0; SEND_CHUNK])
    }

    fn give(&self, buf: Vec<u8>) {
        self.lent.lock().unwrap_or_else(PoisonError::into_inner).0 -= 1;
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len() == SEND_CHUNK && free.len() < SEND_BUFFERS_KEPT {
            free.push(buf);
        }
    }

    /// The most buffers lent at once so far.
    #[cfg(test)]
    fn peak(&self) -> usize {
        self.lent.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// The buffers lent now.
    #[cfg(test)]
    fn lent(&self) -> usize {
        self.lent.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

/// A buffer of a [`SendBuffers`] pool holding one chunk; back to the pool when dropped (as the
/// owner of a `Bytes`, when the HTTP stack is done with it).
struct Lent {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<SendBuffers>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

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
    send_part(dir, Part::Whole, hold, idle, SendBuffers::shared())
}

/// What [`send_part`] sends of a tree's stream.
pub(crate) enum Part {
    /// All of it.
    Whole,
    /// These bytes of it, by seeking with the tree's index.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Range(tarstream::Index, std::ops::Range<u64>),
}

/// [`send_stream`] of the whole stream or of one byte range of it, through buffers of `pool`
/// (at most [`SEND_BUFFERS_PER_STREAM`] at once).
pub(crate) fn send_part<H: Send + 'static>(
    dir: PathBuf,
    part: Part,
    hold: H,
    idle: Duration,
    pool: Arc<SendBuffers>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Bytes>(SEND_DEPTH);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let handle = Handle::current();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let mut buf = pool.take();
            let mut out = ChannelWriter { tx, handle, idle, pool, held: None };
            // Both callers send a committed artifact whose digest is in its metadata (and in
            // the `X-Artifact-Digest` header the receiver checks): no need to hash it again.
            let result = match part {
                Part::Whole => tarstream::send_without_digest_buffered(&dir, &mut out, &mut buf),
                Part::Range(index, range) => {
                    tarstream::send_range_buffered(&dir, &index, range, &mut out, &mut buf)
                }
            };
            out.pool.give(buf);
            match &result {
                Ok(bytes) => tracing::trace!(bytes, "tar stream sent"),
                Err(err) => tracing::debug!(error = %err, "tar stream aborted"),
            }
            drop(hold);
            // A body with a `Content-Length` is complete for the client as soon as its last
            // byte arrives, so only now, with `hold` gone, may the last chunk go.
            let result = match result {
                Ok(bytes) => out.release().map(|()| bytes),
                Err(err) => Err(io::Error::other(err)),
            };
            let _ = done_tx.send(result);
            // Closing the channel is what ends the stream.
            drop(out);
        })
    });
    let state = (rx, Some(done_rx));
    futures_util::stream::unfold(state, |(mut rx, mut done)| async move {
        if let Some(chunk) = rx.recv().await {
            return Some((Ok(chunk), (rx, done)));
        }
        let err = match done.take()?.await {
            Ok(Ok(_)) => return None,
            Ok(Err(err)) => err,
            Err(_) => io::Error::other("the tar sender panicked"),
        };
        Some((Err(err), (rx, None)))
    })
}

/// A `Write` that hands its bytes to the async side in chunks of at most [`SEND_CHUNK`]
/// bytes, copied into buffers of its pool. It holds the latest chunk back until the next
/// write or [`ChannelWriter::release`], so that the sender decides when the last one goes.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    handle: Handle,
    idle: Duration,
    pool: Arc<SendBuffers>,
    held: Option<Bytes>,
}

impl ChannelWriter {
    /// Sends the chunk held back, if any.
    fn release(&mut self) -> io::Result<()> {
        let Some(chunk) = self.held.take() else { return Ok(()) };
        let sent = self.handle.block_on(tokio::time::timeout(self.idle, self.tx.send(chunk)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the peer went away")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {:?}", self.idle),
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(SEND_CHUNK);
        if len == 0 {
            return Ok(0);
        }
        // The previous chunk goes first, so that no third buffer is taken while it waits.
        self.release()?;
        let mut chunk = self.pool.take();
        chunk[..len].copy_from_slice(&buf[..len]);
        let lent = Lent { buf: chunk, len, pool: self.pool.clone() };
        self.held = Some(Bytes::from_owner(lent));
        Ok(len)
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
        assert!(chunks.iter().all(|c| c.len() <= SEND_CHUNK));
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

    /// Drains `streams` round robin, one chunk of each at a time, keeping the last `keep` chunks
    /// of each while it takes the next (as the HTTP stack keeps the tail of the chunk it writes
    /// while it takes the next one): returns the bytes of each.
    async fn drain_keeping(
        streams: Vec<impl Stream<Item = io::Result<Bytes>> + Send>,
        keep: usize,
    ) -> Vec<u64> {
        let mut streams: Vec<_> = streams.into_iter().map(Box::pin).collect();
        let mut kept: Vec<std::collections::VecDeque<Bytes>> =
            vec![Default::default(); streams.len()];
        let mut bytes = vec![0; streams.len()];
        let mut open = streams.len();
        while open > 0 {
            open = 0;
            for (i, stream) in streams.iter_mut().enumerate() {
                let Some(chunk) = stream.next().await else { continue };
                let chunk = chunk.unwrap();
                assert!(chunk.len() <= SEND_CHUNK);
                bytes[i] += chunk.len() as u64;
                kept[i].push_back(chunk);
                if kept[i].len() > keep {
                    kept[i].pop_front();
                }
                open += 1;
            }
        }
        bytes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_holds_at_most_its_share_of_buffers() {
        let src = tree();
        let expected = tarstream::send_without_digest(src.path(), io::sink()).unwrap();
        let index = tarstream::index_dir(src.path()).unwrap();
        for streams in [1, 4] {
            let pool = Arc::new(SendBuffers::default());
            let started = (0..streams).map(|i| {
                let part = match i % 2 {
                    0 => Part::Whole,
                    _ => Part::Range(index.clone(), 0..index.stream_len()),
                };
                let idle = Duration::from_secs(10);
                send_part(src.path().to_owned(), part, (), idle, pool.clone())
            });
            let bytes = drain_keeping(started.collect(), 1).await;
            assert!(bytes.iter().all(|&b| b == expected));
            assert!(pool.peak() >= 2, "a stream takes buffers from the pool");
            assert!(
                pool.peak() <= streams * SEND_BUFFERS_PER_STREAM,
                "{} buffers lent at once to {streams} streams",
                pool.peak()
            );
            assert_eq!(pool.lent(), 0, "every buffer comes back");
        }
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
