//! Hand-built tar streams for the adversarial tests, written field by field here (not with
//! tarstream's own encoder), and a sandbox that proves nothing outside the destination changed.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    thread,
};

use artifact_testkit::{Snapshot, TreeBuilder, snapshot};

/// One header block, with every field settable.
#[derive(Clone, Debug)]
pub(crate) struct Hdr {
    pub(crate) name: Vec<u8>,
    pub(crate) mode: Vec<u8>,
    pub(crate) size: Vec<u8>,
    pub(crate) flag: u8,
    pub(crate) link: Vec<u8>,
    pub(crate) magic: &'static [u8; 8],
    pub(crate) prefix: Vec<u8>,
    /// Replaces the computed checksum field.
    pub(crate) checksum: Option<Vec<u8>>,
}

pub(crate) const USTAR: &[u8; 8] = b"ustar\x0000";
pub(crate) const GNU: &[u8; 8] = b"ustar  \0";

impl Hdr {
    fn new(name: &[u8], flag: u8, size: u64, mode: u32) -> Hdr {
        Hdr {
            name: name.to_vec(),
            mode: format!("{mode:07o}\0").into_bytes(),
            size: format!("{size:011o}\0").into_bytes(),
            flag,
            link: Vec::new(),
            magic: USTAR,
            prefix: Vec::new(),
            checksum: None,
        }
    }

    pub(crate) fn file(name: &[u8], size: u64) -> Hdr {
        Hdr::new(name, b'0', size, 0o644)
    }

    pub(crate) fn dir(name: &[u8]) -> Hdr {
        Hdr::new(name, b'5', 0, 0o755)
    }

    pub(crate) fn symlink(name: &[u8], target: &[u8]) -> Hdr {
        Hdr { link: target.to_vec(), ..Hdr::new(name, b'2', 0, 0o777) }
    }

    pub(crate) fn hard_link(name: &[u8], target: &[u8]) -> Hdr {
        Hdr { link: target.to_vec(), ..Hdr::new(name, b'1', 0, 0o644) }
    }

    pub(crate) fn typed(name: &[u8], flag: u8, size: u64) -> Hdr {
        Hdr::new(name, flag, size, 0o644)
    }

    pub(crate) fn mode(mut self, mode: u32) -> Hdr {
        self.mode = format!("{mode:07o}\0").into_bytes();
        self
    }

    pub(crate) fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b[0..100], &self.name);
        put(&mut b[100..108], &self.mode);
        put(&mut b[108..116], b"0000000\0");
        put(&mut b[116..124], b"0000000\0");
        put(&mut b[124..136], &self.size);
        put(&mut b[136..148], b"00000000000\0");
        b[156] = self.flag;
        put(&mut b[157..257], &self.link);
        b[257..265].copy_from_slice(self.magic);
        put(&mut b[345..500], &self.prefix);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let checksum =
            self.checksum.clone().unwrap_or_else(|| format!("{sum:06o}\0 ").into_bytes());
        b[148..156].copy_from_slice(&checksum[..8]);
        b
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    assert!(value.len() <= field.len(), "test value too long for its field");
    field[..value.len()].copy_from_slice(value);
}

/// A PAX record with its self-counting length.
pub(crate) fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A tar stream under construction.
#[derive(Default, Clone)]
pub(crate) struct Forge {
    pub(crate) bytes: Vec<u8>,
}

impl Forge {
    pub(crate) fn new() -> Forge {
        Forge::default()
    }

    /// A header and its data, padded to a block.
    pub(crate) fn entry(mut self, hdr: &Hdr, data: &[u8]) -> Forge {
        self.bytes.extend_from_slice(&hdr.block());
        self.bytes.extend_from_slice(data);
        self.pad()
    }

    pub(crate) fn file(self, name: &str, data: &[u8]) -> Forge {
        self.entry(&Hdr::file(name.as_bytes(), data.len() as u64), data)
    }

    pub(crate) fn dir(self, name: &str) -> Forge {
        self.entry(&Hdr::dir(name.as_bytes()), b"")
    }

    pub(crate) fn symlink(self, name: &str, target: &str) -> Forge {
        self.entry(&Hdr::symlink(name.as_bytes(), target.as_bytes()), b"")
    }

    /// A PAX extended header (`x`, or `g` when `global`) with the given raw record bytes.
    pub(crate) fn pax_raw(self, records: &[u8], global: bool) -> Forge {
        let flag = if global { b'g' } else { b'x' };
        let hdr = Hdr::typed(b"././@PaxHeader", flag, records.len() as u64);
        self.entry(&hdr, records)
    }

    pub(crate) fn pax(self, records: &[(&str, &[u8])]) -> Forge {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.pax_raw(&data, false)
    }

    /// A GNU long name (`L`) or long link (`K`) entry.
    pub(crate) fn gnu_long(self, flag: u8, value: &[u8]) -> Forge {
        let mut hdr = Hdr::typed(b"././@LongLink", flag, value.len() as u64);
        hdr.magic = GNU;
        self.entry(&hdr, value)
    }

    pub(crate) fn raw(mut self, bytes: &[u8]) -> Forge {
        self.bytes.extend_from_slice(bytes);
        self
    }

    fn pad(mut self) -> Forge {
        let n = self.bytes.len().next_multiple_of(512);
        self.bytes.resize(n, 0);
        self
    }

    /// The end-of-archive marker.
    pub(crate) fn end(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0; 1024]);
        self.bytes
    }
}

/// A temporary directory, on tmpfs (`/dev/shm`) where there is one: tests that create
/// thousands of small trees run several times faster there.
pub(crate) fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// A temporary directory holding a destination (`dest`, not created) next to sentinels that
/// must never change: `sentinel/keep` and `secret`.
pub(crate) struct Sandbox {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) dest: PathBuf,
    before: Snapshot,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let tmp = scratch();
        let tree = TreeBuilder::new(tmp.path());
        tree.file("sentinel/keep", "keep").file("secret", "secret");
        let before = snapshot(tmp.path());
        Sandbox { dest: tmp.path().join("dest"), tmp, before }
    }

    pub(crate) fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Panics if anything outside `dest` differs from when the sandbox was made.
    pub(crate) fn assert_outside_untouched(&self) {
        let mut now = snapshot(self.tmp.path());
        now.retain(|path, _| !path.starts_with("dest"));
        assert_eq!(now, self.before, "something outside the destination changed");
    }
}

/// Runs `read` on the reading end of a pipe while another thread writes `stream` into it in
/// pieces of at most `piece` bytes (so that splices come back short). The writer stops
/// quietly when the reader goes away early.
pub(crate) fn through_pipe<T>(
    stream: &[u8],
    piece: usize,
    read: impl FnOnce(&io::PipeReader) -> T,
) -> T {
    let (reader, mut writer) = io::pipe().unwrap();
    thread::scope(|scope| {
        scope.spawn(move || {
            for chunk in stream.chunks(piece) {
                if writer.write_all(chunk).is_err() {
                    return;
                }
            }
        });
        let got = read(&reader);
        drop(reader);
        got
    })
}
