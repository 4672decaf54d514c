//! Fault injection for readers and writers: an error or an early EOF after N bytes, short
//! reads and writes, bit flips at chosen offsets, and (async) slowness that needs no sleeping.
//!
//! Build a [`Faults`] description, then wrap a reader or writer with it:
//!
//! ```
//! use std::io::Read;
//! use artifact_testkit::Faults;
//!
//! let data = vec![0u8; 100];
//! let mut reader = Faults::new().short_reads(7).flip(3, 0x80).eof_after(50).read(&data[..]);
//! let mut got = Vec::new();
//! reader.read_to_end(&mut got).unwrap();
//! assert_eq!(got.len(), 50);
//! assert_eq!(got[3], 0x80);
//!
//! let mut reader = Faults::new().error_after(10).read(&data[..]);
//! assert!(reader.read_to_end(&mut Vec::new()).is_err());
//! ```

use std::{
    io::{self, Read, Write},
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::io::{AsyncRead, ReadBuf};

/// What to inject, at which stream offsets. `Clone` it to wrap several streams alike.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    error_after: Option<u64>,
    eof_after: Option<u64>,
    max_chunk: Option<usize>,
    flips: Vec<(u64, u8)>,
    pending: u32,
    delay: Option<Duration>,
    seed: u64,
}

impl Faults {
    /// No faults (a transparent wrapper until configured).
    pub fn new() -> Self {
        Faults::default()
    }

    /// Fail with an `io::Error` (kind `Other`) once `n` bytes have passed.
    pub fn error_after(mut self, n: u64) -> Self {
        self.error_after = Some(n);
        self
    }

    /// End the stream (reads return 0) once `n` bytes have passed.
    pub fn eof_after(mut self, n: u64) -> Self {
        self.eof_after = Some(n);
        self
    }

    /// Pass at most a pseudo-random 1..=`max` bytes per call.
    pub fn short_reads(mut self, max: usize) -> Self {
        self.max_chunk = Some(max.max(1));
        self
    }

    /// XOR the byte at stream offset `offset` with `mask`.
    pub fn flip(mut self, offset: u64, mask: u8) -> Self {
        self.flips.push((offset, mask));
        self
    }

    /// Async: answer `Pending` (waking at once) this many times before each read, as a slow
    /// peer would, without any timer.
    pub fn pending_per_read(mut self, times: u32) -> Self {
        self.pending = times;
        self
    }

    /// Async: wait this long before each read (use with Tokio's paused clock in tests).
    pub fn delay_per_read(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Seed of the pseudo-random short read sizes.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Wraps a blocking reader.
    pub fn read<R: Read>(&self, inner: R) -> FaultyRead<R> {
        FaultyRead { inner, state: State::new(self.clone()) }
    }

    /// Wraps an async reader.
    pub fn async_read<R: AsyncRead + Unpin>(&self, inner: R) -> FaultyAsyncRead<R> {
        FaultyAsyncRead {
            inner,
            pending_left: self.pending,
            sleep: None,
            state: State::new(self.clone()),
        }
    }

    /// Wraps a blocking writer (error and EOF offsets apply: at EOF, writes return 0 bytes,
    /// which `write_all` turns into an error).
    pub fn write<W: Write>(&self, inner: W) -> FaultyWrite<W> {
        FaultyWrite { inner, state: State::new(self.clone()) }
    }
}

/// The shared bookkeeping of the wrappers.
#[derive(Debug)]
struct State {
    faults: Faults,
    pos: u64,
    rng: u64,
}

enum Step {
    Error,
    Eof,
    Pass(usize),
}

impl State {
    fn new(faults: Faults) -> Self {
        let rng = faults.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        State { faults, pos: 0, rng }
    }

    /// What the next call of up to `want` bytes does.
    fn step(&mut self, want: usize) -> Step {
        if self.faults.error_after.is_some_and(|n| self.pos >= n) {
            return Step::Error;
        }
        if self.faults.eof_after.is_some_and(|n| self.pos >= n) {
            return Step::Eof;
        }
        let mut len = want as u64;
        for limit in [self.faults.error_after, self.faults.eof_after].into_iter().flatten() {
            len = len.min(limit - self.pos);
        }
        if let Some(max) = self.faults.max_chunk {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            len = len.min(1 + self.rng % max as u64);
        }
        Step::Pass(len as usize)
    }

    /// Records that `bytes` passed at the current offset, flipping bits on the way.
    fn passed(&mut self, bytes: &mut [u8]) {
        let end = self.pos + bytes.len() as u64;
        for &(offset, mask) in &self.faults.flips {
            if (self.pos..end).contains(&offset) {
                bytes[(offset - self.pos) as usize] ^= mask;
            }
        }
        self.pos = end;
    }

    fn error(&self) -> io::Error {
        io::Error::other(format!("injected fault at byte {}", self.pos))
    }
}

/// A [`Read`] with faults (see [`Faults::read`]).
#[derive(Debug)]
pub struct FaultyRead<R> {
    inner: R,
    state: State,
}

impl<R> FaultyRead<R> {
    /// Bytes passed so far.
    pub fn position(&self) -> u64 {
        self.state.pos
    }
}

impl<R: Read> Read for FaultyRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.state.step(buf.len()) {
            Step::Error => Err(self.state.error()),
            Step::Eof => Ok(0),
            Step::Pass(len) => {
                let n = self.inner.read(&mut buf[..len])?;
                self.state.passed(&mut buf[..n]);
                Ok(n)
            }
        }
    }
}

/// An [`AsyncRead`] with faults (see [`Faults::async_read`]).
#[derive(Debug)]
pub struct FaultyAsyncRead<R> {
    inner: R,
    pending_left: u32,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
}

impl<R: AsyncRead + Unpin> AsyncRead for FaultyAsyncRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pending_left > 0 {
            this.pending_left -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(delay) = this.state.faults.delay {
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let len = match this.state.step(buf.remaining()) {
            Step::Error => return Poll::Ready(Err(this.state.error())),
            Step::Eof => return Poll::Ready(Ok(())),
            Step::Pass(len) => len,
        };
        let window = buf.initialize_unfilled_to(len);
        let mut sub = ReadBuf::new(window);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sub))?;
        let n = sub.filled().len();
        this.state.passed(window_mut(buf, n));
        buf.advance(n);
        this.pending_left = this.state.faults.pending;
        Poll::Ready(Ok(()))
    }
}

/// The first `n` initialised but unfilled bytes of `buf`.
fn window_mut<'a>(buf: &'a mut ReadBuf<'_>, n: usize) -> &'a mut [u8] {
    &mut buf.initialize_unfilled_to(n)[..n]
}

/// A [`Write`] with faults (see [`Faults::write`]).
#[derive(Debug)]
pub struct FaultyWrite<W> {
    inner: W,
    state: State,
}

impl<W> FaultyWrite<W> {
    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for FaultyWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.state.step(buf.len()) {
            Step::Error => Err(self.state.error()),
            Step::Eof => Ok(0),
            Step::Pass(len) => {
                let mut chunk = buf[..len].to_vec();
                self.state.passed(&mut chunk);
                self.inner.write_all(&chunk)?;
                Ok(len)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn short_reads_pass_everything_in_small_pieces() {
        let data: Vec<u8> = (0..=255).collect();
        let mut reader = Faults::new().short_reads(5).seed(3).read(&data[..]);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 5);
            sizes.push(n);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        assert!(sizes.iter().any(|&n| n < 5));
    }

    #[test]
    fn errors_come_exactly_at_the_offset() {
        let data = [1u8; 100];
        let mut reader = Faults::new().error_after(42).read(&data[..]);
        let mut got = Vec::new();
        let err = reader.read_to_end(&mut got).unwrap_err();
        assert_eq!(got.len(), 42);
        assert!(err.to_string().contains("42"));
        let mut out = Faults::new().error_after(10).write(Vec::new());
        assert!(out.write_all(&data).is_err());
        assert_eq!(out.into_inner().len(), 10);
    }

    #[tokio::test]
    async fn async_reads_see_the_same_faults_and_slowness() {
        let data: Vec<u8> = (0..200u8).collect();
        let faults =
            Faults::new().short_reads(9).flip(150, 0xff).eof_after(160).pending_per_read(2);
        let mut got = Vec::new();
        faults.async_read(&data[..]).read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 160);
        assert_eq!(got[150], 150 ^ 0xff);
        assert_eq!(got[..150], data[..150]);
    }

    #[tokio::test(start_paused = true)]
    async fn delays_use_tokio_time() {
        let data = [0u8; 10];
        let start = tokio::time::Instant::now();
        let mut reader = Faults::new()
            .short_reads(5)
            .delay_per_read(Duration::from_secs(60))
            .async_read(&data[..]);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(120));
    }
}
