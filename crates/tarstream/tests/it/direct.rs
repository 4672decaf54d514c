//! `send_to_fd` and `receive_from_fd` through real pipes, regular files and sockets: the same
//! stream and the same tree as the buffered path, with short splices, refused kernel copies,
//! and streams cut inside a file's data giving the same errors.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, Write},
    os::unix::net::UnixStream,
    path::Path,
    thread,
    time::Duration,
};

use artifact_testkit::{TreeBuilder, assert_same_tree, watchdog};
use tarstream::{Error, ReceiveOptions};

use crate::forge::{Forge, Sandbox, through_pipe};

/// A tree with files on both sides of the size from which data moves through the kernel
/// (64 KiB), one larger than the input buffer (1 MiB), and small entries between them.
fn mixed_tree(root: &Path) -> Vec<u8> {
    let pattern = |len: usize| (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    TreeBuilder::new(root)
        .file("a/small.txt", "hello")
        .file("a/just-below", pattern((64 << 10) - 1))
        .file("a/just-at", pattern(64 << 10))
        .exec("b/large.bin", pattern((3 << 20) + 17))
        .file("b/mid", pattern(200_000))
        .symlink("c/link", "../b/large.bin")
        .file("c/empty", "")
        .file("d/".repeat(30) + "deep", pattern(70_001));
    let mut stream = Vec::new();
    tarstream::send(root, &mut stream).unwrap();
    stream
}

/// Runs `send` into the writing end of a pipe and returns what came out of the other end,
/// read in pieces of at most `piece` bytes (so that the pipe fills up).
fn from_pipe(piece: usize, send: impl FnOnce(&io::PipeWriter) -> u64) -> (u64, Vec<u8>) {
    let (mut reader, writer) = io::pipe().unwrap();
    thread::scope(|scope| {
        let drain = scope.spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0; piece];
            loop {
                match reader.read(&mut buf).unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let written = send(&writer);
        drop(writer);
        (written, drain.join().unwrap())
    })
}

fn tempfile_with(bytes: &[u8]) -> File {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    file.rewind().unwrap();
    file
}

fn read_back(mut file: File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn send_to_fd_writes_the_same_stream_into_pipes_files_and_sockets() {
    watchdog(Duration::from_secs(120), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let want = mixed_tree(&src);

        for piece in [4096, 1 << 20] {
            let (written, got) =
                from_pipe(piece, |pipe| tarstream::send_to_fd(&src, pipe).unwrap());
            assert_eq!(written, want.len() as u64);
            assert!(got == want, "through a pipe read in pieces of {piece}");
        }

        let file = tempfile::tempfile().unwrap();
        assert_eq!(tarstream::send_to_fd(&src, &file).unwrap(), want.len() as u64);
        assert!(read_back(file) == want, "into a regular file");

        // An append-only file refuses copy_file_range: buffered writes take over.
        let path = tmp.path().join("appended.tar");
        let file = OpenOptions::new().create_new(true).append(true).open(&path).unwrap();
        tarstream::send_to_fd(&src, &file).unwrap();
        assert!(std::fs::read(&path).unwrap() == want, "into an append-only file");

        // A socket has no kernel route: buffered writes only.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let got = thread::scope(|scope| {
            let drain = scope.spawn(move || {
                let mut got = Vec::new();
                theirs.read_to_end(&mut got).unwrap();
                got
            });
            tarstream::send_to_fd(&src, &ours).unwrap();
            drop(ours);
            drain.join().unwrap()
        });
        assert!(got == want, "into a socket");
    });
}

#[test]
fn receive_from_fd_builds_the_same_tree_from_pipes_files_and_sockets() {
    watchdog(Duration::from_secs(120), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let stream = mixed_tree(&src);
        let options = ReceiveOptions::default();
        let check = |name: &str, received: Result<u64, Error>| {
            assert_eq!(received.unwrap(), stream.len() as u64, "{name}");
            assert_same_tree(&src, &tmp.path().join(name));
        };

        // Pieces of one byte up to whole buffers: splices come back short, or long.
        for piece in [1000, 4096, 65_537, 1 << 20] {
            let name = format!("pipe-{piece}");
            let dest = tmp.path().join(&name);
            let received = through_pipe(&stream, piece, |pipe| {
                tarstream::receive_from_fd(&dest, pipe, &options)
            });
            check(&name, received);
        }

        let file = tempfile_with(&stream);
        check("file", tarstream::receive_from_fd(&tmp.path().join("file"), &file, &options));

        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let received = thread::scope(|scope| {
            let stream = &stream;
            scope.spawn(move || theirs.write_all(stream).unwrap());
            tarstream::receive_from_fd(&tmp.path().join("socket"), &ours, &options)
        });
        check("socket", received);
    });
}

#[test]
fn pack_into_a_pipe_and_unpack_from_it_round_trips() {
    watchdog(Duration::from_secs(120), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let stream = mixed_tree(&src);
        let dest = tmp.path().join("dest");
        let (reader, writer) = io::pipe().unwrap();
        let (sent, received) = thread::scope(|scope| {
            let sender = scope.spawn(|| {
                let sent = tarstream::send_to_fd(&src, &writer);
                drop(writer);
                sent
            });
            let received = tarstream::receive_from_fd(&dest, &reader, &ReceiveOptions::default());
            (sender.join().unwrap(), received)
        });
        assert_eq!(sent.unwrap(), stream.len() as u64);
        assert_eq!(received.unwrap(), stream.len() as u64);
        assert_same_tree(&src, &dest);
    });
}

/// The error that `receive_with` gives for `stream` from memory, and those of
/// `receive_from_fd` from a pipe and from a regular file, as text (the variants and fields
/// must agree).
fn errors_three_ways(stream: &[u8]) -> [String; 3] {
    let options = ReceiveOptions::default();
    let buffered = Sandbox::new();
    let a = tarstream::receive_with(&buffered.dest, stream, &options).unwrap_err();
    let piped = Sandbox::new();
    let b = through_pipe(stream, 1 << 16, |pipe| {
        tarstream::receive_from_fd(&piped.dest, pipe, &options).unwrap_err()
    });
    let filed = Sandbox::new();
    let c = tarstream::receive_from_fd(&filed.dest, tempfile_with(stream), &options).unwrap_err();
    for sandbox in [&buffered, &piped, &filed] {
        sandbox.assert_outside_untouched();
    }
    [a, b, c].map(|err| format!("{err:?}"))
}

#[test]
fn a_stream_cut_inside_a_large_file_fails_alike_whichever_way_the_data_came() {
    watchdog(Duration::from_secs(120), || {
        let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let full = Forge::new().file("small", b"x").file("big", &data).end();
        let big_data = 3 * 512;
        for cut in [
            big_data - 1,
            big_data + 1,
            big_data + (64 << 10),
            big_data + (1 << 20) + 3,
            big_data + data.len() - 1,
            big_data + data.len(),
            big_data + data.len() + 100,
        ] {
            let [a, b, c] = errors_three_ways(&full[..cut]);
            assert!(a.contains("Truncated"), "cut at {cut}: {a}");
            assert_eq!(a, b, "cut at {cut}: buffered and piped");
            assert_eq!(a, c, "cut at {cut}: buffered and from a file");
        }
    });
}

#[test]
fn hostile_entries_after_a_large_file_are_refused_alike() {
    watchdog(Duration::from_secs(120), || {
        let data = vec![1u8; 1 << 20];
        let streams = [
            Forge::new().file("big", &data).file("../escape", b"x").end(),
            Forge::new().file("big", &data).symlink("s", "/etc").end(),
            Forge::new().file("big", &data).file("big", b"again").end(),
            [Forge::new().file("big", &data).end(), b"junk".to_vec()].concat(),
        ];
        for stream in streams {
            let [a, b, c] = errors_three_ways(&stream);
            assert_eq!(a, b, "buffered and piped");
            assert_eq!(a, c, "buffered and from a file");
        }
    });
}
