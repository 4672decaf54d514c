//! Hostile and malformed streams, built by hand: each is refused with the right error, and
//! nothing outside the destination changes.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use tarstream::{Error, Limit, ReceiveOptions, Section, Summary};

use crate::forge::{Forge, GNU, Hdr, Sandbox, pax_record, through_pipe};

fn reject_with(stream: &[u8], options: &ReceiveOptions) -> (Sandbox, Error) {
    let sandbox = Sandbox::new();
    let err = tarstream::receive_with(&sandbox.dest, stream, options)
        .expect_err("a hostile stream was accepted");
    sandbox.assert_outside_untouched();
    assert!(!err.to_string().is_empty());
    // The same refusal without the digest, from a pipe (where large files' data is spliced).
    let piped = Sandbox::new();
    let piped_err = through_pipe(stream, 1 << 16, |pipe| {
        tarstream::receive_from_fd(&piped.dest, pipe, options)
            .expect_err("a hostile stream was accepted from a pipe")
    });
    piped.assert_outside_untouched();
    assert_eq!(format!("{piped_err:?}"), format!("{err:?}"), "from a pipe");
    (sandbox, err)
}

fn reject(stream: &[u8]) -> Error {
    reject_with(stream, &ReceiveOptions::default()).1
}

fn accept(stream: &[u8]) -> (Sandbox, Summary) {
    let sandbox = Sandbox::new();
    let summary = tarstream::receive(&sandbox.dest, stream).expect("a valid stream was refused");
    sandbox.assert_outside_untouched();
    assert_eq!(summary.digest, tarstream::digest_dir(&sandbox.dest).unwrap().digest);
    (sandbox, summary)
}

#[track_caller]
fn assert_unsafe_path(err: Error, want_reason: &str) {
    match err {
        Error::UnsafePath { reason, .. } => assert!(reason.contains(want_reason), "{reason}"),
        other => panic!("expected UnsafePath ({want_reason}), got {other:?}"),
    }
}

#[test]
fn absolute_names_are_refused() {
    let sandbox = Sandbox::new();
    let target = format!("{}/pwned", sandbox.root().display());
    assert_unsafe_path(reject(&Forge::new().file(&target, b"x").end()), "absolute");
    assert_unsafe_path(reject(&Forge::new().dir("/").end()), "absolute");
    let err = reject(&Forge::new().pax(&[("path", target.as_bytes())]).file("ok", b"x").end());
    assert_unsafe_path(err, "absolute");
}

#[test]
fn dot_dot_components_are_refused() {
    for name in ["../pwned", "a/../../pwned", "./..", "a/b/../../..", "sentinel/../../x"] {
        assert_unsafe_path(reject(&Forge::new().file(name, b"x").end()), "..");
    }
    let err = reject(&Forge::new().gnu_long(b'L', b"../../pwned\0").file("ok", b"x").end());
    assert_unsafe_path(err, "..");
}

#[test]
fn empty_names_and_nul_are_refused() {
    assert_unsafe_path(reject(&Forge::new().file("", b"x").end()), "empty");
    assert_unsafe_path(reject(&Forge::new().file("./", b"").end()), "empty");
    let err = reject(&Forge::new().pax(&[("path", b"a\0b")]).file("ok", b"").end());
    assert!(matches!(err, Error::BadExtendedHeader { .. }), "{err:?}");
    let err = reject(&Forge::new().gnu_long(b'L', b"a\0b\0").file("ok", b"").end());
    assert!(matches!(err, Error::BadExtendedHeader { .. }), "{err:?}");
}

#[test]
fn the_root_entry_and_dot_slash_prefixes_are_accepted() {
    let stream = Forge::new().dir("./").dir("./a/").file("./a/f", b"hi").file("b//c", b"").end();
    let (sandbox, summary) = accept(&stream);
    assert_eq!(fs::read(sandbox.dest.join("a/f")).unwrap(), b"hi");
    assert!(sandbox.dest.join("b/c").is_file());
    assert_eq!((summary.dirs, summary.files), (2, 2));
}

#[test]
fn symlinks_leaving_the_tree_are_refused() {
    for (name, target) in [
        ("l", "/etc/passwd"),
        ("l", ".."),
        ("l", "../sentinel/keep"),
        ("a/l", "../.."),
        ("a/l", "b/../../../secret"),
    ] {
        let err = reject(&Forge::new().symlink(name, target).end());
        assert!(matches!(err, Error::SymlinkEscape { .. }), "{name} -> {target}: {err:?}");
    }
    let long_target = pax_record("linkpath", b"../../secret");
    let stream = Forge::new().pax_raw(&long_target, false).symlink("l", "fine").end();
    assert!(matches!(reject(&stream), Error::SymlinkEscape { .. }));
}

#[test]
fn symlink_chains_that_escape_are_refused_at_the_end() {
    // Each target stays inside lexically; together `d/e` resolves to the root's parent.
    let stream = Forge::new().dir("d").symlink("d/up", "..").symlink("d/e", "up/..").end();
    let (sandbox, err) = reject_with(&stream, &ReceiveOptions::default());
    assert!(
        matches!(err, Error::SymlinkEscape { ref entry, .. } if entry == Path::new("d/e")),
        "{err:?}"
    );
    // Refused, but nothing was followed: the link is there and the outside is untouched.
    assert!(fs::symlink_metadata(sandbox.dest.join("d/e")).unwrap().is_symlink());
}

#[test]
fn nothing_is_written_through_a_symlink() {
    // The symlink is inside and harmless, but a later entry may not use it as a directory.
    for later in [
        Forge::new().file("l/f", b"x"),
        Forge::new().dir("l/d"),
        Forge::new().symlink("l/s", "x"),
        Forge::new().entry(&Hdr::hard_link(b"l/h", b"sub/f"), b""),
    ] {
        let stream =
            Forge::new().dir("sub").file("sub/f", b"").symlink("l", "sub").raw(&later.bytes).end();
        let (sandbox, err) = reject_with(&stream, &ReceiveOptions::default());
        assert!(
            matches!(err, Error::ThroughSymlink { ref symlink, .. } if symlink == Path::new("l")),
            "{err:?}"
        );
        assert_eq!(fs::read_dir(sandbox.dest.join("sub")).unwrap().count(), 1);
    }
    // A target named like something outside resolves inside the destination, and is not used.
    let stream = Forge::new().symlink("l", "sentinel").file("l/keep", b"overwritten").end();
    assert!(matches!(reject(&stream), Error::ThroughSymlink { .. }));
}

#[test]
fn duplicates_and_conflicts_are_refused() {
    let conflict = |stream: &[u8]| {
        let err = reject(stream);
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    };
    conflict(&Forge::new().file("f", b"1").file("f", b"2").end());
    conflict(&Forge::new().symlink("f", "x").file("f", b"2").end());
    conflict(&Forge::new().file("f", b"1").symlink("f", "x").end());
    conflict(&Forge::new().file("f", b"1").dir("f").end());
    conflict(&Forge::new().file("f", b"1").file("f/g", b"2").end());
    // A directory named twice is fine (GNU tar lists `./` and parents in odd orders).
    let (_, summary) = accept(&Forge::new().dir("d").file("d/f", b"").dir("d").end());
    assert_eq!((summary.dirs, summary.files), (1, 1));
}

#[test]
fn hard_links_must_point_to_an_earlier_regular_file_inside() {
    let bad = |stream: Vec<u8>, reason: &str| {
        let err = reject(&stream);
        match err {
            Error::BadHardLink { reason: got, .. } => assert!(got.contains(reason), "{got}"),
            other => panic!("expected BadHardLink ({reason}), got {other:?}"),
        }
    };
    let link = |name: &str, target: &str| Hdr::hard_link(name.as_bytes(), target.as_bytes());
    bad(Forge::new().entry(&link("h", "../secret"), b"").end(), "..");
    bad(Forge::new().entry(&link("h", "/etc/passwd"), b"").end(), "absolute");
    bad(Forge::new().entry(&link("h", "later"), b"").file("later", b"").end(), "does not exist");
    bad(Forge::new().dir("d").entry(&link("h", "d"), b"").end(), "not a regular file");
    bad(Forge::new().symlink("s", "x").entry(&link("h", "s"), b"").end(), "not a regular file");
    bad(Forge::new().entry(&link("h", "h"), b"").end(), "itself");
    let through =
        Forge::new().dir("d").file("d/f", b"").symlink("s", "d").entry(&link("h", "s/f"), b"");
    bad(through.end(), "symlink");

    let (sandbox, summary) =
        accept(&Forge::new().file("f", b"data").entry(&link("d/h", "f"), b"").end());
    assert_eq!(fs::read(sandbox.dest.join("d/h")).unwrap(), b"data");
    assert_eq!(summary.files, 2);
}

#[test]
fn devices_fifos_and_exotic_types_are_refused() {
    for flag in [b'3', b'4', b'6', b'S', b'M', b'V', b'D', b'N', b'Q', b'9'] {
        let mut hdr = Hdr::typed(b"thing", flag, 0);
        if flag.is_ascii_uppercase() {
            hdr.magic = GNU;
        }
        let err = reject(&Forge::new().entry(&hdr, b"").end());
        assert!(
            matches!(err, Error::UnsupportedEntryType { flag: f, .. } if f == char::from(flag)),
            "{}: {err:?}",
            char::from(flag)
        );
    }
    let sparse = Forge::new()
        .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
        .file("f", b"")
        .end();
    assert!(matches!(reject(&sparse), Error::BadExtendedHeader { .. }));
}

#[test]
fn malformed_headers_are_refused() {
    let mut bad_sum = Hdr::file(b"f", 0);
    bad_sum.checksum = Some(b"0000000\0".to_vec());
    assert!(matches!(
        reject(&Forge::new().entry(&bad_sum, b"").end()),
        Error::BadChecksum { offset: 0 }
    ));

    let mut stream = Forge::new().file("f", b"x").end();
    stream[0] ^= 1;
    assert!(matches!(reject(&stream), Error::BadChecksum { .. }));

    let bad_header = |hdr: Hdr| {
        let err = reject(&Forge::new().entry(&hdr, b"").end());
        assert!(matches!(err, Error::BadHeader { .. }), "{hdr:?}: {err:?}");
    };
    bad_header(Hdr { size: b"0000000008\0\0".to_vec(), ..Hdr::file(b"f", 0) });
    bad_header(Hdr { size: b"12abc\0\0\0\0\0\0\0".to_vec(), ..Hdr::file(b"f", 0) });
    bad_header(Hdr {
        size: b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ..Hdr::file(b"f", 0)
    });
    bad_header(Hdr { mode: b"0x00644\0".to_vec(), ..Hdr::file(b"f", 0) });
    bad_header(Hdr { magic: b"ustaR\x0000", ..Hdr::file(b"f", 0) });
    bad_header(Hdr { magic: b"\0\0\0\0\0\0\0\0", ..Hdr::file(b"f", 0) });
    bad_header(Hdr::file(b"d/", 0));
    let mut dir_with_data = Hdr::dir(b"d");
    dir_with_data.size = b"00000000001\0".to_vec();
    let err = reject(&Forge::new().entry(&dir_with_data, b"x").end());
    assert!(matches!(err, Error::BadHeader { .. }), "{err:?}");
}

#[test]
fn base256_sizes_are_read() {
    let mut hdr = Hdr::file(b"f", 0);
    hdr.size = [&[0x80u8][..], &[0; 10], &[3]].concat();
    let (sandbox, _) = accept(&Forge::new().entry(&hdr, b"abc").end());
    assert_eq!(fs::read(sandbox.dest.join("f")).unwrap(), b"abc");
}

#[test]
fn malformed_pax_records_are_refused() {
    for records in [
        &b"5 path=x\n"[..],
        b"100 path=x\n",
        b"9 path=x\n7 a=",
        b"xx path=x\n",
        b"10 path x\n",
        b"0 \n",
    ] {
        let err = reject(&Forge::new().pax_raw(records, false).file("f", b"").end());
        assert!(matches!(err, Error::BadExtendedHeader { .. }), "{records:?}: {err:?}");
    }
    for size in [&b"abc"[..], b"-1", b"", b"1e3", b"99999999999999999999999"] {
        let err = reject(&Forge::new().pax(&[("size", size)]).file("f", b"").end());
        assert!(matches!(err, Error::BadExtendedHeader { .. }), "{size:?}: {err:?}");
    }
    let twice = Forge::new().pax(&[("path", b"a")]).pax(&[("path", b"b")]).file("f", b"").end();
    assert!(matches!(reject(&twice), Error::BadExtendedHeader { .. }));
    let dangling = Forge::new().pax(&[("path", b"a")]).end();
    assert!(matches!(reject(&dangling), Error::BadExtendedHeader { .. }));
}

#[test]
fn pax_records_override_the_next_entry_only() {
    let stream = Forge::new()
        .pax(&[
            ("path", format!("{}f", "long/".repeat(30)).as_bytes()),
            ("size", b"5"),
            ("mtime", b"1.5"),
        ])
        .entry(&Hdr::file(b"short", 0), b"12345")
        .file("second", b"22")
        .end();
    let (sandbox, summary) = accept(&stream);
    let long = sandbox.dest.join(format!("{}f", "long/".repeat(30)));
    assert_eq!(fs::read(long).unwrap(), b"12345");
    assert_eq!(fs::read(sandbox.dest.join("second")).unwrap(), b"22");
    assert!(!sandbox.dest.join("short").exists());
    assert_eq!(summary.files, 2);
}

#[test]
fn pax_size_larger_than_the_data_is_a_truncation() {
    let stream = Forge::new().pax(&[("size", b"1000000")]).entry(&Hdr::file(b"f", 3), b"abc").end();
    let err = reject(&stream);
    assert!(
        matches!(err, Error::Truncated { within: Section::Data | Section::Padding, .. }),
        "{err:?}"
    );
}

#[test]
fn global_pax_headers_are_ignored_unless_they_change_entries() {
    let comment: Vec<u8> =
        [pax_record("comment", b"commit abc"), pax_record("mtime", b"0")].concat();
    let (sandbox, _) = accept(&Forge::new().pax_raw(&comment, true).file("f", b"x").end());
    assert!(sandbox.dest.join("f").is_file());
    for key in ["path", "linkpath", "size"] {
        let records = pax_record(key, b"1");
        let err = reject(&Forge::new().pax_raw(&records, true).file("f", b"x").end());
        assert!(matches!(err, Error::BadExtendedHeader { .. }), "{key}: {err:?}");
    }
}

#[test]
fn gnu_long_names_and_links_are_read() {
    let name = format!("{}/{}", "n".repeat(200), "m".repeat(100));
    let target = "t".repeat(200);
    let stream = Forge::new()
        .gnu_long(b'L', format!("{name}\0").as_bytes())
        .file("truncated", b"long")
        .gnu_long(b'K', format!("{target}\0").as_bytes())
        .gnu_long(b'L', b"link\0")
        .symlink("x", "y")
        .end();
    let (sandbox, _) = accept(&stream);
    assert_eq!(fs::read(sandbox.dest.join(&name)).unwrap(), b"long");
    assert_eq!(fs::read_link(sandbox.dest.join("link")).unwrap(), Path::new(&target));
    let twice = Forge::new().gnu_long(b'L', b"a\0").gnu_long(b'L', b"b\0").file("f", b"").end();
    assert!(matches!(reject(&twice), Error::BadExtendedHeader { .. }));
}

#[test]
fn setuid_setgid_and_sticky_bits_are_dropped() {
    let stream = Forge::new()
        .entry(&Hdr::dir(b"d").mode(0o1777), b"")
        .entry(&Hdr::file(b"d/suid", 1).mode(0o6755), b"x")
        .entry(&Hdr::file(b"d/plain", 1).mode(0o2666), b"x")
        .end();
    let (sandbox, _) = accept(&stream);
    let mode =
        |p: &str| fs::symlink_metadata(sandbox.dest.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("d"), 0o755);
    assert_eq!(mode("d/suid"), 0o755);
    assert_eq!(mode("d/plain"), 0o644);
}

#[test]
fn truncation_anywhere_is_an_error() {
    let full = Forge::new().file("f", b"0123456789").end();
    let cases = [
        (100, Section::Header),
        (512, Section::Data),
        (515, Section::Data),
        (600, Section::Padding),
        (1024, Section::EndMarker),
        (1500, Section::EndMarker),
        (2047, Section::EndMarker),
    ];
    for (len, within) in cases {
        let err = reject(&full[..len]);
        match err {
            Error::Truncated { within: got, offset, .. } => {
                assert_eq!((got, offset), (within, len as u64), "cut at {len}");
            }
            other => panic!("cut at {len}: {other:?}"),
        }
    }
    // An empty stream, and one that stops cleanly at an entry boundary, lack the marker.
    assert!(matches!(reject(b""), Error::Truncated { within: Section::EndMarker, .. }));
    let pax_then_nothing = Forge::new().pax(&[("path", b"a")]).bytes;
    assert!(matches!(reject(&pax_then_nothing), Error::Truncated { within: Section::Header, .. }));
}

#[test]
fn truncation_inside_a_large_file_reports_where() {
    // Files of 2 MiB and more are written and hashed on two threads: the same report.
    let data = vec![7u8; 3 << 20];
    let full = Forge::new().file("big", &data).end();
    for len in [512 + 1000, 512 + (5 << 19) + 17] {
        match reject(&full[..len]) {
            Error::Truncated { within, offset, .. } => {
                assert_eq!((within, offset), (Section::Data, len as u64), "cut at {len}");
            }
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[test]
fn only_zeros_may_follow_the_end_marker() {
    let mut stream = Forge::new().file("f", b"x").end();
    stream.resize(10240, 0);
    accept(&stream);
    stream.extend_from_slice(&[0; 3]);
    accept(&stream);
    let at = stream.len() as u64;
    stream.push(1);
    assert!(matches!(reject(&stream), Error::TrailingData { offset } if offset == at));
    let mut lone = Forge::new().raw(&[0; 512]).file("f", b"x").end();
    assert!(matches!(reject(&lone), Error::BadHeader { .. }));
    lone.truncate(512);
    assert!(matches!(reject(&lone), Error::Truncated { within: Section::EndMarker, .. }));
}

#[test]
fn zeros_after_the_end_marker_are_bounded() {
    let stream = Forge::new().file("f", b"x").end();
    let marker_end = stream.len();
    // The default accepts GNU tar's padding to 10 KiB records, and a few records more.
    let allowed = ReceiveOptions::default().max_trailing_zeros;
    assert!(allowed >= 3 * 10240, "{allowed}");
    let mut padded = stream.clone();
    padded.resize(marker_end + allowed as usize, 0);
    accept(&padded);
    // One byte more is refused, before the rest of a zero bomb is read.
    padded.push(0);
    let err = reject(&padded);
    assert!(err.is_limit() && err.is_hostile(), "{err:?}");
    assert!(
        matches!(err, Error::LimitExceeded { limit: Limit::TrailingZeros(n), .. } if n == allowed),
        "{err:?}"
    );
    // The bound is an option, and 0 allows none.
    let options = ReceiveOptions::default().max_trailing_zeros(0);
    let (_, err) = reject_with(&[&stream[..], &[0]].concat(), &options);
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::TrailingZeros(0), .. }), "{err:?}");
    let sandbox = Sandbox::new();
    tarstream::receive_with(&sandbox.dest, &stream[..], &options).expect("no zeros at all");
    // A zero bomb of 64 MiB is refused after reading a bounded prefix of it.
    let mut reader = CountingZeros { head: &stream, read: 0, zeros: 64 << 20 };
    let sandbox = Sandbox::new();
    let err = tarstream::receive(&sandbox.dest, &mut reader).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::TrailingZeros(_), .. }), "{err:?}");
    assert!(reader.read < 4 << 20, "read {} bytes of zeros", reader.read);
}

/// A stream: `head`, then `zeros` zero bytes, counting what was read.
struct CountingZeros<'a> {
    head: &'a [u8],
    read: u64,
    zeros: u64,
}

impl std::io::Read for CountingZeros<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if !self.head.is_empty() {
            let n = buf.len().min(self.head.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head = &self.head[n..];
            n
        } else {
            let n = buf.len().min(usize::try_from(self.zeros).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.zeros -= n as u64;
            n
        };
        self.read += n as u64;
        Ok(n)
    }
}

#[test]
fn limits_apply_before_anything_is_written_or_allocated() {
    // A bomb: 1 PiB declared, no data sent. The limit error comes before any read of data.
    let mut bomb = Hdr::file(b"bomb", 0);
    bomb.size = [&[0x80u8][..], &[0; 3], &(1u64 << 50).to_be_bytes()[..]].concat();
    let options = ReceiveOptions::default().max_bytes(1 << 30);
    let (sandbox, err) = reject_with(&Hdr::block(&bomb), &options);
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::Bytes(_), .. }), "{err:?}");
    assert!(!sandbox.dest.join("bomb").exists());
    let pax_bomb = Forge::new().pax(&[("size", (1u64 << 50).to_string().as_bytes())]).bytes;
    let (_, err) = reject_with(&[&pax_bomb[..], &Hdr::file(b"bomb", 0).block()].concat(), &options);
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::Bytes(_), .. }), "{err:?}");

    let three = Forge::new().file("a", b"").file("b", b"").file("c", b"").end();
    let (_, err) = reject_with(&three, &ReceiveOptions::default().max_entries(2));
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::Entries(2), .. }), "{err:?}");
    let nested = Forge::new().file("a/b/c", b"").end();
    let (_, err) = reject_with(&nested, &ReceiveOptions::default().max_entries(2));
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::Entries(2), .. }), "{err:?}");

    let long = Forge::new().pax(&[("path", "p/".repeat(100).as_bytes())]).file("f", b"").end();
    let (_, err) = reject_with(&long, &ReceiveOptions::default().max_path_len(100));
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::PathLength(100), .. }), "{err:?}");
    let gnu = Forge::new().gnu_long(b'L', &[b'n'; 300]).file("f", b"").end();
    let (_, err) = reject_with(&gnu, &ReceiveOptions::default().max_path_len(100));
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::PathLength(100), .. }), "{err:?}");

    let huge_pax = Hdr::typed(b"././@PaxHeader", b'x', 1 << 30).block();
    let err = reject(&huge_pax);
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::ExtendedHeader(_), .. }), "{err:?}");

    let mut zeros = Forge::new().file("f", b"").end();
    zeros.resize(1 << 16, 0);
    let (_, err) = reject_with(&zeros, &ReceiveOptions::default().max_bytes(1 << 15));
    assert!(err.is_limit(), "{err:?}");
}

#[test]
fn the_destination_must_be_empty() {
    let sandbox = Sandbox::new();
    let err =
        tarstream::receive(&sandbox.root().join("sentinel"), &Forge::new().end()[..]).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");
    let err =
        tarstream::receive(&sandbox.root().join("secret"), &Forge::new().end()[..]).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");
    sandbox.assert_outside_untouched();
    fs::create_dir(&sandbox.dest).unwrap();
    tarstream::receive(&sandbox.dest, &Forge::new().end()[..]).unwrap();
}

#[test]
fn errors_classify_themselves() {
    let err = reject(&Forge::new().file("../x", b"").end());
    assert!(err.is_hostile() && !err.is_io() && !err.is_truncated());
    let err = reject(b"");
    assert!(err.is_hostile() && err.is_truncated());
}
