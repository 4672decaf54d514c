//! The test vectors of `docs/protocol.md`: each tree is built, and its digest (from
//! `digest_dir`, `send`, `receive` and an independent computation of the listing written
//! here from the document's definition), the listing bytes and the stream `send` writes are
//! compared with the document.

use std::{fmt::Write as _, path::Path};

use artifact_testkit::TreeBuilder;

struct Vector {
    name: String,
    entries: Vec<(String, String, String)>,
    digest: String,
    stream: (u64, String),
    listing: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/protocol.md");
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```vector\n") {
        let body = &rest[start + 10..];
        let end = body.find("```").expect("a closed vector block");
        let mut vector = Vector {
            name: String::new(),
            entries: Vec::new(),
            digest: String::new(),
            stream: (0, String::new()),
            listing: None,
        };
        let mut in_listing = false;
        for line in body[..end].lines() {
            if in_listing {
                vector.listing.get_or_insert_with(String::new).push_str(line.trim());
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "name:" => vector.name = value.to_owned(),
                "digest:" => vector.digest = value.to_owned(),
                "stream:" => {
                    let (len, hash) = value.split_once(' ').expect("stream: LEN HASH");
                    vector.stream = (len.parse().unwrap(), hash.to_owned());
                }
                "listing:" => in_listing = true,
                "dir" | "file" | "exec" | "symlink" => {
                    let (path, arg) = value.split_once(' ').unwrap_or((value, ""));
                    vector.entries.push((key.to_owned(), path.to_owned(), arg.to_owned()));
                }
                other => panic!("unknown vector line {other:?}"),
            }
        }
        out.push(vector);
        rest = &body[end + 3..];
    }
    out
}

fn unhex(text: &str) -> Vec<u8> {
    if text == "-" {
        return Vec::new();
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The listing, computed from the document's definition (not from tarstream's code).
fn listing(vector: &Vector) -> Vec<u8> {
    let mut out = b"artifact-tree-v1\n".to_vec();
    let len = |n: usize| (n as u64).to_le_bytes();
    for (kind, path, arg) in &vector.entries {
        let path = path.as_bytes();
        match kind.as_str() {
            "dir" => {
                out.push(b'd');
                out.extend(len(path.len()));
                out.extend(path);
            }
            "file" | "exec" => {
                let content = unhex(arg);
                out.push(b'f');
                out.extend(len(path.len()));
                out.extend(path);
                out.push(u8::from(kind == "exec"));
                out.extend(len(content.len()));
                out.extend(blake3::hash(&content).as_bytes());
            }
            "symlink" => {
                out.push(b'l');
                out.extend(len(path.len()));
                out.extend(path);
                out.extend(len(arg.len()));
                out.extend(arg.as_bytes());
            }
            other => panic!("unknown kind {other}"),
        }
    }
    out
}

#[test]
fn the_documented_vectors_hold() {
    let vectors = vectors();
    assert!(vectors.len() >= 5, "the vectors were not found");
    let mut wrong = Vec::new();
    for vector in &vectors {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        let tree = TreeBuilder::new(&root);
        for (kind, path, arg) in &vector.entries {
            match kind.as_str() {
                "dir" => tree.dir(path),
                "file" => tree.file(path, unhex(arg)),
                "exec" => tree.exec(path, unhex(arg)),
                _ => tree.symlink(path, arg),
            };
        }
        let listing = listing(vector);
        let digest = blake3::hash(&listing).to_hex().to_string();
        let on_disk = tarstream::digest_dir(&root).unwrap();
        assert_eq!(
            on_disk.digest.to_string(),
            digest,
            "{}: tarstream disagrees with the definition",
            vector.name
        );
        let mut stream = Vec::new();
        let sent = tarstream::send(&root, &mut stream).unwrap();
        assert_eq!(sent.digest, on_disk.digest, "{}", vector.name);
        let got = tarstream::receive(&tmp.path().join("copy"), &stream[..]).unwrap();
        assert_eq!(got.digest, on_disk.digest, "{}", vector.name);
        let stream_hash = blake3::hash(&stream).to_hex().to_string();

        if digest != vector.digest {
            wrong.push(format!("{}: digest: {digest}", vector.name));
        }
        if (stream.len() as u64, stream_hash.clone()) != vector.stream {
            wrong.push(format!("{}: stream: {} {stream_hash}", vector.name, stream.len()));
        }
        if let Some(want) = &vector.listing {
            let got = hex(&listing);
            if &got != want {
                let lines: Vec<&str> =
                    (0..got.len()).step_by(64).map(|i| &got[i..(i + 64).min(got.len())]).collect();
                wrong.push(format!("{}: listing:\n{}", vector.name, lines.join("\n")));
            }
        }
    }
    assert!(wrong.is_empty(), "docs/protocol.md vectors differ; computed:\n{}", wrong.join("\n"));
}
