//! File data moved by the kernel, without passing through this process's memory: `splice(2)`
//! between a file and a pipe, `copy_file_range(2)` between two regular files.
//!
//! Used by [`send_to_fd`](crate::send_to_fd) and [`receive_from_fd`](crate::receive_from_fd)
//! when nobody asks for the tree digest (hashing needs the bytes in memory). The stream side is
//! a file descriptor whose type decides the route; a socket, a terminal or anything else keeps
//! the buffered copy. Every call moves at most what the caller asks for (the rest of one file's
//! data), so the stream's headers and padding still pass through the normal buffers, in order.

use std::{fs::File, io, os::fd::OwnedFd};

use rustix::{
    fd::AsFd,
    fs::FileType,
    io::Errno,
    pipe::{SpliceFlags, splice},
};

/// Files (or what is left of one after the input buffer) smaller than this keep the buffered
/// copy: below it, the extra system calls of a separate move cost more than the copy saves.
pub(crate) const MIN_DIRECT: u64 = 64 << 10;

/// The most one call is asked to move (the kernel moves less at a time anyway).
const MAX_CALL: usize = 1 << 30;

/// How data moves between the stream's file descriptor and a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The stream is a pipe: `splice`.
    Splice,
    /// The stream is a regular file: `copy_file_range`.
    CopyRange,
}

/// The stream's file descriptor (a duplicate), and how data moves to or from it.
#[derive(Debug)]
pub(crate) struct Direct {
    fd: OwnedFd,
    route: Route,
}

/// A failed move: `Unsupported` means that this pair of files cannot take the route (the caller
/// goes on with the buffered copy from where it stopped); `Failed` is a real error.
#[derive(Debug)]
pub(crate) enum MoveError {
    Unsupported,
    Failed(io::Error),
}

impl Direct {
    /// The route for `stream`, or `None` when it is neither a pipe nor a regular file (a
    /// socket, a terminal) or cannot be inspected.
    pub(crate) fn new(stream: &File) -> Option<Direct> {
        let stat = rustix::fs::fstat(stream).ok()?;
        let route = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Fifo => Route::Splice,
            FileType::RegularFile => Route::CopyRange,
            _ => return None,
        };
        let fd = stream.as_fd().try_clone_to_owned().ok()?;
        Some(Direct { fd, route })
    }

    /// Moves up to `len` bytes from the stream to `file`, at both files' current offsets;
    /// 0 at the end of the stream.
    pub(crate) fn read_to(&self, file: &File, len: u64) -> Result<usize, MoveError> {
        self.call(&self.fd, file, len)
    }

    /// Moves up to `len` bytes from `file` into the stream, at both files' current offsets;
    /// 0 at the end of `file`.
    pub(crate) fn write_from(&self, file: &File, len: u64) -> Result<usize, MoveError> {
        self.call(file, &self.fd, len)
    }

    fn call(&self, from: impl AsFd, to: impl AsFd, len: u64) -> Result<usize, MoveError> {
        let len = usize::try_from(len).unwrap_or(MAX_CALL).min(MAX_CALL);
        loop {
            let moved = match self.route {
                Route::Splice => splice(&from, None, &to, None, len, SpliceFlags::MORE),
                Route::CopyRange => rustix::fs::copy_file_range(&from, None, &to, None, len),
            };
            return match moved {
                Ok(n) => Ok(n),
                Err(Errno::INTR) => continue,
                Err(errno) if unsupported(errno) => Err(MoveError::Unsupported),
                Err(errno) => Err(MoveError::Failed(errno.into())),
            };
        }
    }
}

/// Errors by which the kernel refuses the route itself rather than the data: a file system
/// without splice or copy support, a seccomp filter, an append-only or differently mounted
/// file.
fn unsupported(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::INVAL | Errno::NOSYS | Errno::XDEV | Errno::OPNOTSUPP | Errno::BADF | Errno::PERM
    )
}

/// Whether an error of a move into the stream was the stream's (the reader went away, no room
/// left), as opposed to reading the file.
pub(crate) fn is_stream_write_error(err: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(err),
        Some(Errno::PIPE | Errno::AGAIN | Errno::NOSPC | Errno::DQUOT | Errno::FBIG)
    )
}
