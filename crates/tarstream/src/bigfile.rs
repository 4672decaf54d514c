//! Large files on receive: the data is written by the receiving thread while a helper thread
//! hashes the chunk written before, so hashing does not add to the time of the write.
//!
//! Chunks are owned 1 MiB buffers (at most three), read straight from the input and recycled
//! through channels; the helper lives for one file, inside a thread scope.

use std::{
    fs::File,
    io::{Read, Write},
    path::PathBuf,
    sync::mpsc,
    thread,
};

use crate::{
    Error,
    error::IoResultExt,
    input::{Input, Short},
};

/// Files at least this large take this path.
pub(crate) const MIN_SIZE: u64 = 2 << 20;

const CHUNK: usize = 1 << 20;
const BUFFERS: usize = 3;

/// Writes the next `size` bytes of `input` to `file`, and returns their BLAKE3 hash, or how
/// many bytes came before the input ended.
pub(crate) fn write_hashed<R: Read>(
    input: &mut Input<R>,
    file: &mut File,
    size: u64,
    path: &dyn Fn() -> PathBuf,
) -> Result<Result<blake3::Hash, Short>, Error> {
    thread::scope(|scope| {
        let (work_tx, work_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let hasher = thread::Builder::new()
            .name("tarstream-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = blake3::Hasher::new();
                for buf in work_rx {
                    hasher.update(&buf);
                    // The receiving side may be gone (after an error): nothing to recycle.
                    let _ = free_tx.send(buf);
                }
                hasher.finalize()
            })
            .with_path(path())?;
        let mut allocated = 0;
        let mut left = size;
        let outcome = loop {
            if left == 0 {
                break Ok(Ok(()));
            }
            let mut buf = match free_rx.try_recv() {
                Ok(buf) => buf,
                Err(_) if allocated < BUFFERS => {
                    allocated += 1;
                    vec![0; CHUNK]
                }
                Err(_) => match free_rx.recv() {
                    Ok(buf) => buf,
                    Err(_) => unreachable!("the hasher holds the sender until its input ends"),
                },
            };
            let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
            buf.resize(want, 0);
            let n = match input.read_into(&mut buf) {
                Ok(n) => n,
                Err(err) => break Err(err),
            };
            if n == 0 {
                break Ok(Err(Short { got: size - left, zeros: false }));
            }
            buf.truncate(n);
            if let Err(err) = file.write_all(&buf).with_path(path()) {
                break Err(err);
            }
            left -= n as u64;
            if work_tx.send(buf).is_err() {
                unreachable!("the hasher runs until its input ends");
            }
        };
        drop(work_tx);
        let hash = match hasher.join() {
            Ok(hash) => hash,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        outcome.map(|read| read.map(|()| hash))
    })
}
