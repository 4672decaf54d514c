//! zstd transfer encoding of byte streams (feature `zstd`), with async-compression.

use std::io;

use async_compression::{
    Level,
    tokio::bufread::{ZstdDecoder, ZstdEncoder},
};
use bytes::Bytes;
use futures_util::Stream;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::bridge::CHUNK;

/// Compresses a byte stream at `level`.
pub(crate) fn zstd_encode(
    stream: impl Stream<Item = io::Result<Bytes>> + Send,
    level: i32,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let encoder = ZstdEncoder::with_quality(StreamReader::new(stream), Level::Precise(level));
    ReaderStream::with_capacity(encoder, CHUNK)
}

/// The largest window a decoder accepts unless told otherwise, as a power of two: 8 MiB, what
/// every standard level up to 19 uses at most (zstd's own default allows 128 MiB).
pub(crate) const MAX_WINDOW_LOG: u32 = 23;

/// Decompresses a zstd byte stream, with a window of at most 2^[`MAX_WINDOW_LOG`] bytes.
pub(crate) fn zstd_decode(
    stream: impl Stream<Item = io::Result<Bytes>> + Send,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    zstd_decode_with(stream, MAX_WINDOW_LOG)
}

/// Decompresses a zstd byte stream whose frames need a window of at most `2^max_window_log`
/// bytes (the decoder's memory); a frame that asks for more is refused before anything is
/// allocated for it. A corrupt or refused stream yields an error (the errors of `stream`
/// itself pass through as they are).
pub(crate) fn zstd_decode_with(
    stream: impl Stream<Item = io::Result<Bytes>> + Send,
    max_window_log: u32,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let params = [async_compression::zstd::DParameter::window_log_max(max_window_log)];
    let mut decoder = ZstdDecoder::with_params(StreamReader::new(stream), &params);
    decoder.multiple_members(false);
    ReaderStream::with_capacity(decoder, CHUNK)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn round_trips_and_rejects_garbage() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let input = futures_util::stream::iter(
            data.chunks(10_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
        );
        let compressed: Vec<Bytes> =
            zstd_encode(input, 1).map(|c| c.unwrap()).collect::<Vec<_>>().await;
        let size: usize = compressed.iter().map(Bytes::len).sum();
        assert!(size < data.len() / 10, "{size}");
        let decoded = zstd_decode(futures_util::stream::iter(compressed.into_iter().map(Ok)))
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(decoded, data);

        let garbage = futures_util::stream::iter([Ok(Bytes::from_static(b"not zstd at all"))]);
        let results = zstd_decode(garbage).collect::<Vec<_>>().await;
        assert!(results.iter().any(Result::is_err));
    }
}
