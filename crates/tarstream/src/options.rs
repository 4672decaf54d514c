//! [`ReceiveOptions`]: the limits and modes of [`receive_with`](crate::receive_with).

/// Limits and modes for [`receive_with`](crate::receive_with).
///
/// Every limit is checked before anything beyond it is written or allocated: a header that
/// declares a 1 PiB file fails with [`Error::LimitExceeded`](crate::Error::LimitExceeded)
/// before its first data byte is read.
///
/// ```
/// use tarstream::ReceiveOptions;
///
/// let options = ReceiveOptions::default().max_bytes(1 << 30).read_only(true);
/// assert_eq!(options.max_bytes, 1 << 30);
/// assert_eq!(options.max_entries, 10_000_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveOptions {
    /// The most bytes of tar stream to read, headers, padding and end marker included
    /// (default 1 TiB).
    pub max_bytes: u64,
    /// The most entries to create: files, directories (also those created implicitly as
    /// parents), symlinks and hard links (default 10,000,000).
    pub max_entries: u64,
    /// The longest path or symlink target, in bytes, after normalisation (default 4096).
    pub max_path_len: usize,
    /// Create regular files read-only: mode 0444, or 0555 when executable, instead of 0644 and
    /// 0755 (default `false`). Directories stay 0755, so the tree can still be deleted
    /// without a chmod walk.
    pub read_only: bool,
    /// The most zero bytes accepted after the end-of-archive marker (default 64 KiB).
    ///
    /// Archivers pad a stream to a whole record (GNU tar: 10 KiB), so a few records of zeros
    /// are normal; a stream with more is refused with
    /// [`Limit::TrailingZeros`](crate::Limit::TrailingZeros), so that a compressed body cannot
    /// make the receiver read gigabytes of zeros after the tree is complete.
    pub max_trailing_zeros: u64,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            max_bytes: 1 << 40,
            max_entries: 10_000_000,
            max_path_len: 4096,
            read_only: false,
            max_trailing_zeros: 64 << 10,
        }
    }
}

impl ReceiveOptions {
    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// Sets [`max_path_len`](Self::max_path_len).
    pub fn max_path_len(mut self, bytes: usize) -> Self {
        self.max_path_len = bytes;
        self
    }

    /// Sets [`max_trailing_zeros`](Self::max_trailing_zeros).
    pub fn max_trailing_zeros(mut self, bytes: u64) -> Self {
        self.max_trailing_zeros = bytes;
        self
    }

    /// Sets [`read_only`](Self::read_only).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}
