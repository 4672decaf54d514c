//! Async adapters (feature `tokio`): the sync core runs in `spawn_blocking`, connected to the
//! async side by small bounded channels of [`Bytes`].
//!
//! Channels rather than a blocking bridge over the caller's reader or writer, so that
//! dropping the future or the stream stops the blocking side promptly: its next write into a
//! closed channel fails ([`Error::Write`]), or its next read finds the channel closed before
//! the end of the input ([`Error::Read`]); no thread is left spinning or draining a body
//! nobody wants. Memory per transfer is the channel depth times the chunk size (about
//! 1 MiB) on top of the core's buffers.

use std::{
    any::Any,
    fmt, io,
    path::{Path, PathBuf},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::{
    StreamExt,
    future::{Either, select},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot},
};

use crate::{Error, ReceiveOptions, Summary};

/// The largest chunk the send side produces, and the read size of [`receive_async`].
const CHUNK: usize = 256 * 1024;

/// Chunks in flight between the blocking side and the async side.
const DEPTH: usize = 2;

/// Writes the tree at `dir` as one tar stream into `out` (see [`send`](crate::send)).
///
/// The walk and the file reads run on Tokio's blocking pool; dropping the future stops them.
/// `out` is flushed, not shut down.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"a")?;
/// let mut stream = Vec::new();
/// let sent = tarstream::send_async(dir.path(), &mut stream).await?;
/// assert_eq!(sent.stream_bytes, stream.len() as u64);
/// # Ok(())
/// # }
/// ```
pub async fn send_async<W>(dir: &Path, out: W) -> Result<Summary, Error>
where
    W: AsyncWrite,
{
    let mut out = std::pin::pin!(out);
    let (mut stream, summary) = send_stream(dir);
    let mut offset = 0u64;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The send failed; the handle has the typed error.
            break;
        };
        out.write_all(&chunk).await.map_err(|source| Error::Write { offset, source })?;
        offset += chunk.len() as u64;
    }
    let summary = summary.await?;
    out.flush().await.map_err(|source| Error::Write { offset, source })?;
    Ok(summary)
}

/// Sends the tree at `dir` as a [`Stream`] of chunks (e.g. an HTTP response body), and a
/// [`SummaryHandle`] that resolves when the stream is complete.
///
/// Nothing happens until the stream is first polled; then the walk runs on Tokio's blocking
/// pool (so polling needs a Tokio runtime). If the send fails, the stream's last item is an
/// `io::Error` (so that an HTTP body is cut off rather than ended cleanly) and the handle
/// gives the typed [`Error`]. Dropping the stream stops the walk.
///
/// [`SendStream::with_guard`] attaches a value (a cache read lock, say) that is dropped
/// exactly when the stream ends or is dropped.
///
/// ```
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"a")?;
/// let (stream, summary) = tarstream::send_stream(dir.path());
/// let lock = std::sync::Arc::new(());
/// let mut stream = stream.with_guard(lock.clone());
/// let mut bytes = 0;
/// while let Some(chunk) = stream.next().await {
///     bytes += chunk?.len();
/// }
/// assert_eq!(std::sync::Arc::strong_count(&lock), 1, "the guard went with the stream's end");
/// assert_eq!(summary.await?.stream_bytes, bytes as u64);
/// # Ok(())
/// # }
/// ```
pub fn send_stream(dir: impl Into<PathBuf>) -> (SendStream, SummaryHandle) {
    let (done_tx, done_rx) = oneshot::channel();
    let stream = SendStream {
        state: State::Idle { dir: dir.into(), done: done_tx, span: tracing::Span::current() },
        guard: None,
    };
    (stream, SummaryHandle(done_rx))
}

/// The stream of [`send_stream`]: `Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static`.
#[must_use = "streams do nothing unless polled"]
pub struct SendStream {
    state: State,
    guard: Option<Box<dyn Any + Send>>,
}

enum State {
    Idle { dir: PathBuf, done: oneshot::Sender<Result<Summary, Error>>, span: tracing::Span },
    Running(mpsc::Receiver<io::Result<Bytes>>),
    Done,
}

impl SendStream {
    /// Attaches `guard`, to be dropped as soon as the stream ends (its last item taken) or is
    /// dropped, whichever comes first. Replaces (and drops) a guard attached before.
    pub fn with_guard<G: Send + 'static>(mut self, guard: G) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }
}

impl fmt::Debug for SendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle { .. } => "idle",
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("SendStream")
            .field("state", &state)
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

impl Stream for SendStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if matches!(this.state, State::Idle { .. }) {
            let State::Idle { dir, done, span } = std::mem::replace(&mut this.state, State::Done)
            else {
                unreachable!("checked just above")
            };
            let (tx, rx) = mpsc::channel(DEPTH);
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| {
                    let writer = ChannelWriter { tx: tx.clone() };
                    let result =
                        crate::send::send_buffered(&dir, writer, CHUNK, crate::send::Hashing::On);
                    if let Err(err) = &result {
                        let _ = tx.blocking_send(Err(io::Error::other(err.to_string())));
                    }
                    let _ = done.send(result);
                });
            });
            this.state = State::Running(rx);
        }
        let State::Running(rx) = &mut this.state else {
            return Poll::Ready(None);
        };
        match ready!(rx.poll_recv(cx)) {
            Some(item) => Poll::Ready(Some(item)),
            None => {
                // The blocking side has finished and dropped its sender.
                this.state = State::Done;
                this.guard = None;
                Poll::Ready(None)
            }
        }
    }
}

/// The final [`Summary`] of a [`send_stream`]: a future that resolves once the stream has been
/// sent completely (or has failed).
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct SummaryHandle(oneshot::Receiver<Result<Summary, Error>>);

impl Future for SummaryHandle {
    type Output = Result<Summary, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.0).poll(cx)) {
            Ok(result) => result,
            Err(_) => Err(Error::Write {
                offset: 0,
                source: io::Error::other("the stream was dropped before it started or ended"),
            }),
        })
    }
}

/// The blocking side's `Write`: each write becomes one chunk in the channel.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.blocking_send(Ok(Bytes::copy_from_slice(buf))).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the receiving end of the stream was dropped")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one tar stream from `input` into `dir` (see [`receive_with`](crate::receive_with)).
///
/// The parsing and file writes run on Tokio's blocking pool; dropping the future stops them
/// at their next read (`dir` is then left partial, as after any error).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let src = tempfile::tempdir()?;
/// std::fs::write(src.path().join("a.txt"), b"a")?;
/// let mut stream = Vec::new();
/// tarstream::send_async(src.path(), &mut stream).await?;
///
/// let dst = tempfile::tempdir()?;
/// let options = tarstream::ReceiveOptions::default();
/// let got = tarstream::receive_async(&dst.path().join("a"), &stream[..], &options).await?;
/// assert_eq!(got.files, 1);
/// # Ok(())
/// # }
/// ```
pub async fn receive_async<R>(
    dir: &Path,
    input: R,
    options: &ReceiveOptions,
) -> Result<Summary, Error>
where
    R: AsyncRead,
{
    receive_stream(dir, tokio_util::io::ReaderStream::with_capacity(input, CHUNK), options).await
}

/// Reads one tar stream, given as a [`Stream`] of chunks (e.g. an HTTP request or response
/// body), into `dir` (see [`receive_with`](crate::receive_with)).
///
/// An error item from the stream fails the receive with [`Error::Read`]. Dropping the future
/// stops the blocking side at its next read.
pub async fn receive_stream<S>(
    dir: &Path,
    input: S,
    options: &ReceiveOptions,
) -> Result<Summary, Error>
where
    S: Stream<Item = io::Result<Bytes>>,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let dir = dir.to_path_buf();
    let options = options.clone();
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let reader = ChannelReader { rx, chunk: Bytes::new(), ended: false };
            crate::receive_with(&dir, reader, &options)
        })
    });
    let pump = async move {
        let mut input = std::pin::pin!(input);
        loop {
            let item = match input.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(item) => item,
                // The end of the input: an empty chunk tells the reader it was a real end.
                None => Ok(Bytes::new()),
            };
            let last = item.as_ref().map_or(true, Bytes::is_empty);
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    };
    let joined = match select(task, Box::pin(pump)).await {
        Either::Left((joined, _pump)) => joined,
        Either::Right(((), task)) => task.await,
    };
    match joined {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(Error::Read {
            offset: 0,
            source: io::Error::other("the blocking receive task was cancelled"),
        }),
    }
}

/// The blocking side's `Read`: chunks from the channel; an empty chunk marks the real end.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    ended: bool,
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) if chunk.is_empty() => self.ended = true,
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(err)) => return Err(err),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the input was dropped before its end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}
