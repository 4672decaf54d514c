//! The async adapters: round trips through a duplex pipe and through a `Stream`, errors on
//! either side, and dropping mid-way stops the blocking side.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use artifact_testkit::{Faults, TreeBuilder, assert_same_tree};
use bytes::Bytes;
use futures_util::StreamExt;
use tarstream::{Error, ReceiveOptions};
use tokio::time::timeout;

use crate::forge::scratch;

const LIMIT: Duration = Duration::from_secs(60);

fn tree(root: &std::path::Path) -> TreeBuilder {
    let tree = TreeBuilder::new(root);
    tree.file("a/small", "small")
        .file("big", artifact_testkit::strategy::content(1, 3 << 20))
        .exec("bin/x", "#!")
        .symlink("l", "a/small")
        .dir("empty");
    tree
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_a_duplex_pipe() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let dst = tmp.path().join("dst");
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    let send = async {
        let mut writer = writer;
        let summary = tarstream::send_async(src.path(), &mut writer).await;
        drop(writer);
        summary
    };
    let options = ReceiveOptions::default();
    let receive = tarstream::receive_async(&dst, reader, &options);
    let (sent, got) = timeout(LIMIT, async { tokio::join!(send, receive) }).await.unwrap();
    let (sent, got) = (sent.unwrap(), got.unwrap());
    assert_eq!(sent, got);
    assert_same_tree(src.path(), &dst);
    assert_eq!(tarstream::digest_dir(&dst).unwrap().digest, sent.digest);
}

#[tokio::test]
async fn round_trip_through_a_stream_with_a_slow_short_reading_source() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let (stream, summary) = tarstream::send_stream(src.path());
    let dst = tmp.path().join("dst");
    let got = timeout(LIMIT, tarstream::receive_stream(&dst, stream, &ReceiveOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let sent = summary.await.unwrap();
    assert_eq!(got, sent);
    assert_same_tree(src.path(), &dst);

    // The same bytes, through an AsyncRead that trickles and stalls.
    let mut bytes = Vec::new();
    tarstream::send(src.path(), &mut bytes).unwrap();
    let slow = Faults::new().short_reads(1000).pending_per_read(3).async_read(&bytes[..]);
    let dst2 = tmp.path().join("dst2");
    let got = tarstream::receive_async(&dst2, slow, &ReceiveOptions::default()).await.unwrap();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn send_stream_chunks_are_bounded_and_the_guard_lives_exactly_as_long() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let guard = Arc::new(());
    let (stream, summary) = tarstream::send_stream(src.path());
    let mut stream = stream.with_guard(Arc::clone(&guard));
    assert_eq!(format!("{stream:?}"), r#"SendStream { state: "idle", guard: true }"#);
    let (mut total, mut chunks) = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 256 * 1024);
        total += chunk.len();
        chunks += 1;
        assert_eq!(Arc::strong_count(&guard), 2, "the guard is held while the body streams");
    }
    // And large: the 3 MiB file does not trickle out in small pieces (a wake-up and a channel
    // slot each).
    assert!(chunks <= total.div_ceil(128 * 1024), "{chunks} chunks for {total} bytes");
    assert_eq!(Arc::strong_count(&guard), 1, "the guard is dropped when the stream ends");
    assert_eq!(summary.await.unwrap().stream_bytes, total as u64);
}

#[tokio::test]
async fn dropping_a_send_stream_stops_the_walk_and_releases_the_guard() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let guard = Arc::new(());
    let (stream, summary) = tarstream::send_stream(src.path());
    let mut stream = stream.with_guard(Arc::clone(&guard));
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    assert_eq!(Arc::strong_count(&guard), 1);
    // The blocking side notices at its next write and reports it.
    let err = timeout(LIMIT, summary).await.expect("the send did not stop").unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
}

#[tokio::test]
async fn a_failing_send_ends_the_stream_with_an_error() {
    let tmp = scratch();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a", "x").socket("b");
    let (mut stream, summary) = tarstream::send_stream(src.path());
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    assert!(last.expect("an item").is_err(), "the stream must not end cleanly");
    assert!(matches!(summary.await, Err(Error::UnsupportedFileType { .. })));
    // And through send_async, the typed error.
    let err = tarstream::send_async(src.path(), &mut Vec::new()).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedFileType { .. }), "{err:?}");
}

#[tokio::test]
async fn receive_stream_skips_empty_chunks_and_stops_polling_at_the_end() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let mut bytes = Vec::new();
    let sent = tarstream::send(src.path(), &mut bytes).unwrap();
    // Empty chunks between real ones (HTTP bodies have them) are not the end of the stream.
    let mut chunks: Vec<Bytes> = Vec::new();
    for piece in bytes.chunks(100_000) {
        chunks.push(Bytes::new());
        chunks.push(Bytes::copy_from_slice(piece));
    }
    // `unfold` panics when polled again after its end: the receive must not do that.
    let input = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
        rest.next().map(|chunk| (Ok::<_, io::Error>(chunk), rest))
    });
    let dst = tmp.path().join("dst");
    let got = tarstream::receive_stream(&dst, input, &ReceiveOptions::default()).await.unwrap();
    assert_eq!(got.digest, sent.digest);
    assert_same_tree(src.path(), &dst);
}

#[tokio::test]
async fn source_errors_and_truncation_fail_the_receive() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let mut bytes = Vec::new();
    tarstream::send(src.path(), &mut bytes).unwrap();
    let options = ReceiveOptions::default();

    let failing = Faults::new().error_after(100_000).async_read(&bytes[..]);
    let err =
        tarstream::receive_async(&tmp.path().join("d1"), failing, &options).await.unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");

    let chunks = vec![Ok(Bytes::copy_from_slice(&bytes[..5000])), Err(io::Error::other("reset"))];
    let err = tarstream::receive_stream(
        &tmp.path().join("d2"),
        futures_util::stream::iter(chunks),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");

    let cut = Faults::new().eof_after(bytes.len() as u64 - 1).async_read(&bytes[..]);
    let err = tarstream::receive_async(&tmp.path().join("d3"), cut, &options).await.unwrap_err();
    assert!(err.is_truncated(), "{err:?}");
}

#[tokio::test]
async fn send_async_reports_how_far_it_got_when_the_writer_fails() {
    let tmp = scratch();
    let src = tree(&tmp.path().join("src"));
    let accepted = 600 * 1024;
    let err = tarstream::send_async(src.path(), FailsAfter { left: accepted }).await.unwrap_err();
    let Error::Write { offset, source } = err else { panic!("{err:?}") };
    assert_eq!(source.kind(), io::ErrorKind::BrokenPipe);
    // The chunks written whole before the failing one: some, and no more than was accepted.
    assert!(offset > 0 && offset <= accepted as u64, "offset {offset}");
}

/// A writer that accepts `left` bytes, then fails every write.
struct FailsAfter {
    left: usize,
}

impl tokio::io::AsyncWrite for FailsAfter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A reader that hands out `data` and then never finishes.
struct Stalls {
    data: Vec<u8>,
    pos: usize,
    dropped: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Stalls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.pos == self.data.len() {
            return std::task::Poll::Pending;
        }
        let n = buf.remaining().min(self.data.len() - self.pos);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl Drop for Stalls {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_a_receive_future_stops_the_blocking_side() {
    // One blocking thread: if the receive's thread were stuck, nothing else could run on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tmp = scratch();
        let src = tree(&tmp.path().join("src"));
        let mut bytes = Vec::new();
        tarstream::send(src.path(), &mut bytes).unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let reader =
            Stalls { data: bytes[..bytes.len() / 2].to_vec(), pos: 0, dropped: dropped.clone() };
        let options = ReceiveOptions::default();
        let dst = tmp.path().join("dst");
        let receive = tarstream::receive_async(&dst, reader, &options);
        let outcome = timeout(Duration::from_millis(200), receive).await;
        assert!(outcome.is_err(), "the stalled receive cannot finish");
        assert!(dropped.load(Ordering::SeqCst), "the reader went with the future");
        let next = tokio::task::spawn_blocking(|| 42);
        assert_eq!(
            timeout(LIMIT, next).await.expect("the blocking thread is still busy").unwrap(),
            42
        );
    });
}

fn assert_send<T: Send>(_: &T) {}
fn assert_static<T: 'static>(_: &T) {}

#[test]
fn adapters_fit_axum_and_reqwest_bodies() {
    // `Body::from_stream` needs `Send + 'static`; handlers need `Send` futures.
    let dir = std::path::PathBuf::from("/nonexistent");
    let (stream, summary) = tarstream::send_stream(dir.clone());
    assert_send(&stream);
    assert_static(&stream);
    assert_send(&summary);
    let options = ReceiveOptions::default();
    let body = futures_util::stream::empty::<io::Result<Bytes>>();
    let receive = tarstream::receive_stream(&dir, body, &options);
    assert_send(&receive);
    let mut sink = Vec::new();
    let send = tarstream::send_async(&dir, &mut sink);
    assert_send(&send);
    let read = tarstream::receive_async(&dir, &b""[..], &options);
    assert_send(&read);
}
