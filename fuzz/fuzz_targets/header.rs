//! The header and PAX decoders, reached past the checksum: the first 512 bytes are a header
//! block whose checksum is made right, the rest PAX extended header data. Both are decoded
//! directly, then sent through `receive` as a PAX header followed by that block.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const BLOCK: usize = 512;

/// Writes a correct checksum into a header block.
fn fix_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A ustar PAX extended header block (`x`) for `len` bytes of records.
fn pax_block(len: usize) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..9].copy_from_slice(b"PaxHeader");
    block[100..108].copy_from_slice(b"0000644\0");
    block[124..136].copy_from_slice(format!("{len:011o}\0").as_bytes());
    block[156] = b'x';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    fix_checksum(&mut block);
    block
}

fuzz_target!(|data: &[u8]| {
    let mut block = [0u8; BLOCK];
    let head = data.len().min(BLOCK);
    block[..head].copy_from_slice(&data[..head]);
    let pax = &data[head..];
    fix_checksum(&mut block);

    let decoded = tarstream::fuzzing::decode_header(&block);
    let (records, _malformed) = tarstream::fuzzing::pax_records(pax);
    let covered: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(covered <= pax.len());

    let mut stream = Vec::with_capacity(3 * BLOCK + pax.len() + 4096);
    if !pax.is_empty() {
        stream.extend_from_slice(&pax_block(pax.len()));
        stream.extend_from_slice(pax);
        stream.resize(stream.len().next_multiple_of(BLOCK), 0);
    }
    stream.extend_from_slice(&block);
    if let Some((_, size, _)) = decoded {
        // Data for the entry, when it is small, so regular files get written.
        if size <= 4096 {
            let len = usize::try_from(size).unwrap_or(0).next_multiple_of(BLOCK);
            stream.resize(stream.len() + len, b'a');
        }
    }
    stream.resize(stream.len() + 2 * BLOCK, 0);
    common::receive_contained(&stream);
});
