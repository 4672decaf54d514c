//! The 512-byte tar header block: encoding the deterministic headers `send` writes, and strict
//! decoding of ustar, GNU and PAX headers for `receive`.
//!
//! Layout (POSIX ustar; offsets in bytes): name 0..100, mode 100..108, uid 108..116,
//! gid 116..124, size 124..136, mtime 136..148, checksum 148..156, typeflag 156,
//! linkname 157..257, magic 257..263, version 263..265, uname 265..297, gname 297..329,
//! devmajor 329..337, devminor 337..345, prefix 345..500 (ustar only; GNU tar keeps other
//! fields there), padding 500..512.

/// The size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// The largest size a 12-byte octal field can hold (11 digits): 8 GiB - 1.
pub(crate) const MAX_OCTAL_SIZE: u64 = 0o777_7777_7777;

/// The name of the PAX extended header entries `send` writes (as Python's `tarfile` does).
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHECKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

/// The kind of entry a header starts, from its typeflag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `0`, NUL (old tars) or `7` (contiguous file, a regular file everywhere today).
    File,
    /// `1`: a hard link to an earlier entry.
    HardLink,
    /// `2`.
    Symlink,
    /// `5`.
    Dir,
    /// `x`: PAX records for the next entry.
    PaxLocal,
    /// `g`: PAX records for the rest of the archive.
    PaxGlobal,
    /// `L`: GNU long name for the next entry.
    GnuLongName,
    /// `K`: GNU long link target for the next entry.
    GnuLongLink,
    /// Anything else (devices, fifos, GNU sparse/volume/multi-volume/dump-dir, vendor types).
    Other(u8),
}

impl Kind {
    fn from_flag(flag: u8) -> Kind {
        match flag {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'5' => Kind::Dir,
            b'x' => Kind::PaxLocal,
            b'g' => Kind::PaxGlobal,
            b'L' => Kind::GnuLongName,
            b'K' => Kind::GnuLongLink,
            other => Kind::Other(other),
        }
    }
}

/// Why a header block is malformed (a static reason for [`crate::Error::BadHeader`]).
pub(crate) type Malformed = &'static str;

/// A decoded header block, borrowing its name fields from the block.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) kind: Kind,
    /// The name, with the ustar prefix joined in front where there is one.
    pub(crate) name: NameField<'a>,
    pub(crate) link: &'a [u8],
    pub(crate) size: u64,
    pub(crate) mode: u32,
}

/// A ustar name is up to two pieces: `prefix/name`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameField<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) name: &'a [u8],
}

impl NameField<'_> {
    /// The whole name as one byte string.
    #[cfg(test)]
    pub(crate) fn to_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 1 + self.name.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the whole name to `out`.
    pub(crate) fn write_to(self, out: &mut Vec<u8>) {
        if !self.prefix.is_empty() {
            out.extend_from_slice(self.prefix);
            out.push(b'/');
        }
        out.extend_from_slice(self.name);
    }
}

/// True for a block of 512 zero bytes (half of the end-of-archive marker).
pub(crate) fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Decodes and checks one header block: checksum, magic, numeric fields.
pub(crate) fn decode(block: &[u8; BLOCK]) -> Result<Header<'_>, DecodeError> {
    let stored = parse_octal(&block[CHECKSUM]).map_err(|_| DecodeError::Checksum)?;
    let (unsigned, signed) = checksums(block);
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(DecodeError::Checksum);
    }
    let magic = &block[MAGIC];
    let version = &block[VERSION];
    let gnu = if magic == b"ustar\0" && version == b"00" {
        false
    } else if magic == b"ustar " && version == b" \0" {
        true
    } else {
        return Err(DecodeError::Malformed("unknown header format (not ustar, pax or gnu)"));
    };
    let flag = block[TYPEFLAG];
    let size = parse_number(&block[SIZE]).map_err(|()| DecodeError::Malformed("bad size field"))?;
    let mode = parse_number(&block[MODE]).map_err(|()| DecodeError::Malformed("bad mode field"))?;
    // Fields we normalise away must still be well-formed numbers (negative times are fine).
    for (range, what) in [
        (UID, "bad uid field"),
        (GID, "bad gid field"),
        (DEVMAJOR, "bad devmajor field"),
        (DEVMINOR, "bad devminor field"),
    ] {
        parse_number(&block[range]).map_err(|()| DecodeError::Malformed(what))?;
    }
    parse_signed_number(&block[MTIME]).map_err(|()| DecodeError::Malformed("bad mtime field"))?;
    let prefix = if gnu { &[][..] } else { field_str(&block[PREFIX]) };
    Ok(Header {
        kind: Kind::from_flag(flag),
        name: NameField { prefix, name: field_str(&block[NAME]) },
        link: field_str(&block[LINKNAME]),
        size,
        mode: u32::try_from(mode & 0o7777).unwrap_or(0),
    })
}

/// A header block that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Checksum,
    Malformed(Malformed),
}

/// The unsigned and signed byte sums of a header with its checksum field read as spaces.
///
/// Sums the whole block and the bytes at or above 128 (which the signed sum counts 256 lower)
/// in one branch-free pass, then swaps the checksum field for spaces: a header is decoded per
/// entry, so this is on the hot path of small files.
fn checksums(block: &[u8; BLOCK]) -> (u64, i64) {
    let sums = |bytes: &[u8]| {
        bytes
            .iter()
            .fold((0u32, 0u32), |(all, high), &b| (all + u32::from(b), high + u32::from(b >> 7)))
    };
    let (all, high) = sums(block);
    let (field, field_high) = sums(&block[CHECKSUM]);
    let unsigned = all - field + 8 * u32::from(b' ');
    let high = high - field_high;
    (u64::from(unsigned), i64::from(unsigned) - 256 * i64::from(high))
}

/// A NUL-terminated string field: the bytes before the first NUL.
fn field_str(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Parses a numeric field: strict octal, or GNU base-256 (positive only).
///
/// Octal: optional leading spaces, octal digits, then only NULs and spaces to the end of the
/// field. A field of only NULs and spaces reads as zero.
pub(crate) fn parse_number(field: &[u8]) -> Result<u64, ()> {
    match field.first() {
        Some(0x80) => parse_base256(&field[1..]),
        Some(&b) if b & 0x80 != 0 => Err(()),
        _ => parse_octal(field),
    }
}

/// Like [`parse_number`], also accepting negative base-256 values (times before 1970).
fn parse_signed_number(field: &[u8]) -> Result<(), ()> {
    if field.first() == Some(&0xff) { Ok(()) } else { parse_number(field).map(drop) }
}

fn parse_base256(rest: &[u8]) -> Result<u64, ()> {
    let mut value = 0u64;
    for &b in rest {
        if value >> 56 != 0 {
            return Err(());
        }
        value = value << 8 | u64::from(b);
    }
    Ok(value)
}

fn parse_octal(field: &[u8]) -> Result<u64, ()> {
    let mut i = 0;
    while i < field.len() && field[i] == b' ' {
        i += 1;
    }
    let mut value = 0u64;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        value = value.checked_mul(8).ok_or(())? + u64::from(field[i] - b'0');
        i += 1;
    }
    if field[i..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(());
    }
    Ok(value)
}

/// What `send` puts in one header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHeader<'a> {
    pub(crate) flag: u8,
    pub(crate) path: &'a [u8],
    pub(crate) link: &'a [u8],
    pub(crate) size: u64,
    pub(crate) mode: u32,
}

/// Appends the header block(s) of one entry to `out`: a PAX header with its records first
/// when the path, the link target or the size do not fit the ustar fields, then the ustar
/// header. Returns the number of bytes appended (a multiple of [`BLOCK`]).
pub(crate) fn encode(entry: &EntryHeader<'_>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let long_path = entry.path.len() > NAME.len();
    let long_link = entry.link.len() > LINKNAME.len();
    let big = entry.size > MAX_OCTAL_SIZE;
    if long_path || long_link || big {
        let mut records = Vec::new();
        let binary = (long_path && std::str::from_utf8(entry.path).is_err())
            || (long_link && std::str::from_utf8(entry.link).is_err());
        // Keys in byte order, so the bytes are a function of the entry alone.
        if binary {
            pax_record(&mut records, b"hdrcharset", b"BINARY");
        }
        if long_link {
            pax_record(&mut records, b"linkpath", entry.link);
        }
        if long_path {
            pax_record(&mut records, b"path", entry.path);
        }
        if big {
            pax_record(&mut records, b"size", entry.size.to_string().as_bytes());
        }
        let pax = EntryHeader {
            flag: b'x',
            path: PAX_HEADER_NAME,
            link: b"",
            size: records.len() as u64,
            mode: 0o644,
        };
        ustar_block(&pax, out);
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    ustar_block(entry, out);
    out.len() - start
}

/// Appends one ustar header block; fields that do not fit are truncated (a PAX record
/// written before carries the full value).
fn ustar_block(entry: &EntryHeader<'_>, out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + BLOCK, 0);
    let block: &mut [u8] = &mut out[at..];
    copy_truncated(&mut block[NAME], entry.path);
    write_octal(&mut block[MODE], u64::from(entry.mode));
    write_octal(&mut block[UID], 0);
    write_octal(&mut block[GID], 0);
    write_octal(&mut block[SIZE], if entry.size > MAX_OCTAL_SIZE { 0 } else { entry.size });
    write_octal(&mut block[MTIME], 0);
    block[TYPEFLAG] = entry.flag;
    copy_truncated(&mut block[LINKNAME], entry.link);
    block[MAGIC].copy_from_slice(b"ustar\0");
    block[VERSION].copy_from_slice(b"00");
    write_octal(&mut block[DEVMAJOR], 0);
    write_octal(&mut block[DEVMINOR], 0);
    block[CHECKSUM].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    // Six digits, NUL, space: the form GNU tar and Python write.
    write_octal(&mut block[CHECKSUM.start..CHECKSUM.start + 7], sum);
    block[CHECKSUM.end - 1] = b' ';
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Writes `value` as zero-padded octal digits followed by one NUL, filling the field.
fn write_octal(field: &mut [u8], mut value: u64) {
    let (digits, nul) = field.split_at_mut(field.len() - 1);
    nul[0] = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (value & 7) as u8;
        value >>= 3;
    }
    debug_assert_eq!(value, 0, "octal field overflow");
}

/// Appends one PAX record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record
/// including its own digits.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + decimal_digits(len) {
        len = rest + decimal_digits(len);
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Zero bytes that follow `size` bytes of data to fill the last block.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// One record of a PAX extended header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PaxRecord<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// Iterates the records of PAX extended header data, strictly: each record is
/// `"<len> <key>=<value>\n"` with a decimal length (no sign, no leading zeros) that covers
/// exactly the record and stays inside the data.
pub(crate) fn pax_records(data: &[u8]) -> impl Iterator<Item = Result<PaxRecord<'_>, Malformed>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let record = (|| {
            let space = rest.iter().take(21).position(|&b| b == b' ').ok_or("no length")?;
            let digits = &rest[..space];
            if digits.is_empty()
                || !digits.iter().all(u8::is_ascii_digit)
                || (digits[0] == b'0' && digits.len() > 1)
            {
                return Err("bad record length");
            }
            let len: usize = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad record length")?;
            if len > rest.len() {
                return Err("record runs past the end of the header");
            }
            if len < space + 4 || rest[len - 1] != b'\n' {
                return Err("record does not end where its length says");
            }
            let body = &rest[space + 1..len - 1];
            let eq = body.iter().position(|&b| b == b'=').ok_or("record without '='")?;
            if eq == 0 {
                return Err("record with an empty keyword");
            }
            let record = PaxRecord { key: &body[..eq], value: &body[eq + 1..] };
            rest = &rest[len..];
            Ok(record)
        })();
        if record.is_err() {
            rest = &[];
        }
        Some(record)
    })
}

/// Parses the value of a PAX `size` record: decimal digits only.
pub(crate) fn pax_size(value: &[u8]) -> Result<u64, Malformed> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err("non-numeric size record");
    }
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or("size record out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(entry: EntryHeader<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encode(&entry, &mut out);
        assert_eq!(n, out.len());
        assert_eq!(n % BLOCK, 0);
        out
    }

    fn file(path: &[u8], size: u64) -> EntryHeader<'_> {
        EntryHeader { flag: b'0', path, link: b"", size, mode: 0o644 }
    }

    #[test]
    fn short_entries_are_one_ustar_block_that_decodes_back() {
        let out = encoded(EntryHeader {
            flag: b'2',
            path: b"a/link",
            link: b"../b",
            size: 0,
            mode: 0o777,
        });
        assert_eq!(out.len(), BLOCK);
        let header = decode(out[..].try_into().unwrap()).unwrap();
        assert_eq!(header.kind, Kind::Symlink);
        assert_eq!(header.name.to_vec(), b"a/link");
        assert_eq!(header.link, b"../b");
        assert_eq!(header.mode, 0o777);
        assert_eq!(
            &out[148..156],
            format!("{:06o}\0 ", checksums(out[..].try_into().unwrap()).0).as_bytes()
        );
    }

    #[test]
    fn long_paths_and_big_sizes_get_pax_records() {
        let long = vec![b'n'; 101];
        let out = encoded(file(&long, 1));
        let pax = decode(out[..BLOCK].try_into().unwrap()).unwrap();
        assert_eq!(pax.kind, Kind::PaxLocal);
        let data = &out[BLOCK..BLOCK + pax.size as usize];
        let records: Vec<_> = pax_records(data).collect::<Result<_, _>>().unwrap();
        assert_eq!(records, vec![PaxRecord { key: b"path", value: &long }]);
        let main = decode(out[out.len() - BLOCK..].try_into().unwrap()).unwrap();
        assert_eq!(main.name.to_vec(), &long[..100]);

        let out = encoded(file(b"big", MAX_OCTAL_SIZE + 1));
        let pax = decode(out[..BLOCK].try_into().unwrap()).unwrap();
        let data = &out[BLOCK..BLOCK + pax.size as usize];
        let records: Vec<_> = pax_records(data).collect::<Result<_, _>>().unwrap();
        assert_eq!(records, vec![PaxRecord { key: b"size", value: b"8589934592" }]);
        let main = decode(out[out.len() - BLOCK..].try_into().unwrap()).unwrap();
        assert_eq!(main.size, 0);
        assert_eq!(encoded(file(b"fits", MAX_OCTAL_SIZE)).len(), BLOCK);
    }

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        for value_len in [0, 1, 5, 6, 7, 89, 90, 91, 92, 993, 994, 995, 996, 9990, 9995] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'x'; value_len]);
            let records: Vec<_> = pax_records(&out).collect::<Result<_, _>>().unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].value.len(), value_len);
        }
    }

    #[test]
    fn malformed_pax_records_are_errors() {
        for bad in [
            &b"x"[..],
            b"12 path=abc",
            b"11 path=abc",
            b"13 path=abc\n",
            b"012 path=ab\n",
            b"+12 path=ab\n",
            b"12 pathxabc\n",
            b"9 =value\n",
            b"3 \n",
            b"99999999999999999999999 a=b\n",
            b"12 path=ab\n5 a=\n",
        ] {
            assert!(
                pax_records(bad).any(|r| r.is_err()),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(pax_size(b"12"), Ok(12));
        for bad in [&b""[..], b"-1", b"1.5", b" 1", b"99999999999999999999999"] {
            assert!(pax_size(bad).is_err());
        }
    }

    #[test]
    fn numbers_are_strict() {
        let ok: &[(&[u8], u64)] = &[
            (b"0000644\0", 0o644),
            (b"   644 \0", 0o644),
            (b"\0\0\0\0\0\0\0\0", 0),
            (b"        ", 0),
            (b"00000000017\0", 0o17),
            (b"\x80\0\0\0\0\0\0\0\0\0\x01\x00", 256),
        ];
        for (field, value) in ok {
            assert_eq!(parse_number(field), Ok(*value), "{field:?}");
        }
        let bad: &[&[u8]] = &[
            b"0000648\0",
            b"00006 4\0",
            b"-0000644",
            b"0x00644\0",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x80\x01\0\0\0\0\0\0\0\0\0\0",
        ];
        for field in bad {
            assert_eq!(parse_number(field), Err(()), "{field:?}");
        }
        assert_eq!(parse_octal(b"77777777777777777777777777"), Err(()));
    }

    #[test]
    fn decode_checks_checksum_and_magic() {
        let good = encoded(file(b"f", 3));
        let block: [u8; BLOCK] = good[..].try_into().unwrap();
        assert!(decode(&block).is_ok());
        let mut flipped = block;
        flipped[0] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), DecodeError::Checksum);
        let mut gnu = block;
        gnu[257..265].copy_from_slice(b"ustar  \0");
        rechecksum(&mut gnu);
        assert!(decode(&gnu).is_ok());
        let mut v7 = block;
        v7[257..265].fill(0);
        rechecksum(&mut v7);
        assert!(matches!(decode(&v7), Err(DecodeError::Malformed(_))));
        let mut bad_size = block;
        bad_size[124] = b'9';
        rechecksum(&mut bad_size);
        assert_eq!(decode(&bad_size).unwrap_err(), DecodeError::Malformed("bad size field"));
    }

    fn rechecksum(block: &mut [u8; BLOCK]) {
        block[148..156].fill(b' ');
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn checksums_match_the_byte_by_byte_definition() {
        let naive = |block: &[u8; BLOCK]| {
            let spaced = |(i, &b): (usize, &u8)| if CHECKSUM.contains(&i) { b' ' } else { b };
            let unsigned: u64 = block.iter().enumerate().map(spaced).map(u64::from).sum();
            let signed: i64 =
                block.iter().enumerate().map(spaced).map(|b| i64::from(b as i8)).sum();
            (unsigned, signed)
        };
        let mut block = [0u8; BLOCK];
        for seed in 0..64u32 {
            for (i, b) in block.iter_mut().enumerate() {
                *b =
                    (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed * 97).to_le_bytes()[1];
            }
            if seed % 2 == 0 {
                block[CHECKSUM].fill(0xff);
            }
            assert_eq!(checksums(&block), naive(&block), "seed {seed}");
        }
        assert_eq!(checksums(&[0xff; BLOCK]), naive(&[0xff; BLOCK]));
        assert_eq!(checksums(&[0; BLOCK]), (8 * 32, 8 * 32));
    }

    #[test]
    fn signed_checksums_are_accepted() {
        let mut block: [u8; BLOCK] = encoded(file(b"\xe9t\xe9", 0))[..].try_into().unwrap();
        block[148..156].fill(b' ');
        let (_, signed) = checksums(&block);
        block[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(decode(&block).is_ok());
    }
}
