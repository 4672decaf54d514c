//! The input side of `receive`: one big buffer in front of the reader, with the stream offset
//! tracked for error messages and limits.

use std::{
    fs::File,
    io::{self, Read, Write},
    path::PathBuf,
};

use crate::{
    Error,
    direct::{self, Direct, MoveError},
    error::IoResultExt,
    header::BLOCK,
};

/// The input buffer size.
const IN_BUF: usize = 1 << 20;

pub(crate) struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    eof: bool,
    /// Where file data can come past the buffer, straight from `inner`'s file descriptor.
    direct: Option<Direct>,
}

/// A read that hit the end of the stream after `got` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short {
    pub(crate) got: u64,
    /// Every byte of the partial block was zero (so it may have been the end marker).
    pub(crate) zeros: bool,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Self {
        Input { inner, buf: vec![0; IN_BUF], start: 0, end: 0, offset: 0, eof: false, direct: None }
    }

    /// Moves large file data with `direct` (the file descriptor `inner` reads from).
    pub(crate) fn direct(mut self, direct: Option<Direct>) -> Self {
        self.direct = direct;
        self
    }

    /// The stream offset of the next unconsumed byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads more into the buffer; false at the end of the stream.
    fn refill(&mut self) -> Result<bool, Error> {
        if self.eof {
            return Ok(false);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let offset = self.offset + (self.end - self.start) as u64;
                    return Err(Error::Read { offset, source });
                }
            }
        }
    }

    /// The next block, or how many bytes the stream had before it ended.
    pub(crate) fn block(&mut self) -> Result<Result<[u8; BLOCK], Short>, Error> {
        while self.end - self.start < BLOCK {
            if self.start + BLOCK > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if !self.refill()? {
                let partial = &self.buf[self.start..self.end];
                let short =
                    Short { got: partial.len() as u64, zeros: partial.iter().all(|&b| b == 0) };
                self.consume(self.end - self.start);
                return Ok(Err(short));
            }
        }
        let block: [u8; BLOCK] =
            self.buf[self.start..self.start + BLOCK].try_into().expect("a block is buffered");
        self.consume(BLOCK);
        Ok(Ok(block))
    }

    /// Passes the next `len` bytes to `sink` in chunks as they arrive.
    pub(crate) fn data(
        &mut self,
        len: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<Result<(), Short>, Error> {
        let mut left = len;
        while left > 0 {
            if self.start == self.end && !self.refill()? {
                return Ok(Err(Short { got: len - left, zeros: false }));
            }
            let n = (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
            sink(&self.buf[self.start..self.start + n])?;
            self.consume(n);
            left -= n as u64;
        }
        Ok(Ok(()))
    }

    /// Reads into `out` until it is full or the stream ends: buffered bytes first, then
    /// straight from the reader (no copy through the buffer). Returns how many bytes came.
    pub(crate) fn read_into(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let mut filled = 0;
        if self.start < self.end {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            filled = n;
        }
        while filled < out.len() && !self.eof {
            match self.inner.read(&mut out[filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::Read { offset: self.offset, source }),
            }
        }
        Ok(filled)
    }

    /// Writes the next `len` bytes to `file`: what is buffered, then, for a large rest and
    /// where there is a route, straight from the input's file descriptor through the kernel,
    /// else through the buffer. `Err(Short)` if the stream ended first.
    pub(crate) fn write_to(
        &mut self,
        file: &mut File,
        len: u64,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<Result<(), Short>, Error> {
        let mut left = len;
        let buffered = self.end - self.start;
        if self.direct.is_some() && len >= buffered as u64 + direct::MIN_DIRECT {
            file.write_all(&self.buf[self.start..self.end]).with_path(path())?;
            self.consume(buffered);
            left -= buffered as u64;
            while left > 0 && !self.eof {
                let Some(direct) = &self.direct else { break };
                match direct.read_to(file, left) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.offset += n as u64;
                        left -= n as u64;
                    }
                    Err(MoveError::Unsupported) => self.direct = None,
                    Err(MoveError::Failed(source)) => {
                        return Err(Error::Io { path: path(), source });
                    }
                }
            }
        }
        let moved = len - left;
        let rest = self.data(left, |chunk| file.write_all(chunk).with_path(path()))?;
        Ok(rest.map_err(|short| Short { got: moved + short.got, ..short }))
    }

    /// Skips `len` bytes (padding, whose content is not checked).
    pub(crate) fn skip(&mut self, len: u64) -> Result<Result<(), Short>, Error> {
        self.data(len, |_| Ok(()))
    }

    /// Reads to the end of the stream: `Ok(None)` if every byte is zero, else the offset of
    /// the first that is not. Stops early (returning `Err(offset)` of the byte past the limit)
    /// once the stream runs past `limit`.
    pub(crate) fn rest_is_zero(&mut self, limit: u64) -> Result<Result<Option<u64>, u64>, Error> {
        loop {
            let chunk = &self.buf[self.start..self.end];
            if let Some(i) = chunk.iter().position(|&b| b != 0) {
                return Ok(Ok(Some(self.offset + i as u64)));
            }
            let n = chunk.len();
            self.consume(n);
            if self.offset > limit {
                return Ok(Err(self.offset));
            }
            if !self.refill()? {
                return Ok(Ok(None));
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte at a time.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else { return Ok(0) };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn blocks_and_data_come_out_whole_from_one_byte_reads() {
        let mut stream = vec![7u8; BLOCK];
        stream.extend(0..=255u8);
        stream.extend([0u8; 100]);
        let mut input = Input::new(Trickle(&stream));
        assert_eq!(input.block().unwrap().unwrap(), [7u8; BLOCK]);
        let mut got = Vec::new();
        input
            .data(256, |chunk| {
                got.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, (0..=255u8).collect::<Vec<_>>());
        assert_eq!(input.offset(), BLOCK as u64 + 256);
        assert_eq!(input.block().unwrap(), Err(Short { got: 100, zeros: true }));
        assert_eq!(input.offset(), stream.len() as u64);
    }

    #[test]
    fn short_data_reports_how_much_came() {
        let stream = [1u8; 10];
        let mut input = Input::new(&stream[..]);
        assert_eq!(input.data(20, |_| Ok(())).unwrap(), Err(Short { got: 10, zeros: false }));
    }

    #[test]
    fn trailing_zeros_are_fine_and_the_first_non_zero_byte_is_found() {
        let mut input = Input::new(&[0u8; 3000][..]);
        assert_eq!(input.rest_is_zero(u64::MAX).unwrap(), Ok(None));
        let mut stream = vec![0u8; 3000];
        stream[2999] = 1;
        let mut input = Input::new(Trickle(&stream));
        assert_eq!(input.rest_is_zero(u64::MAX).unwrap(), Ok(Some(2999)));
        let mut input = Input::new(&[0u8; 3000][..]);
        assert!(input.rest_is_zero(100).unwrap().is_err());
    }
}
