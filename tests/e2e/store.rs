//! The shared tier end to end: `serve --store` reading and writing through one bucket of a
//! real S3 server (in this process), and `get --from`, `put --to`, `ls --from` with store URLs.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
};

use artifact_testkit::{assert_same_tree, s3::S3Server};

use crate::support::{artifact, code, run, stderr};

/// A running `artifact serve --store`, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `artifact` on `root` with the S3 server's environment.
fn with_store(s3: &S3Server, root: &Path) -> Command {
    let mut cmd = artifact(["--root".as_ref(), root.as_os_str()]);
    for (key, value) in s3.env() {
        cmd.env(key, value);
    }
    cmd
}

fn serve(s3: &S3Server, root: &Path, store: &str) -> Served {
    let mut child = with_store(s3, root)
        // The tests make up to 64 requests at once, all from 127.0.0.1.
        .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
        .args(["--max-streams-per-peer", "64"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("artifact serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .rsplit_once(" on ")
        .map(|(_, url)| url.to_owned())
        .unwrap_or_else(|| panic!("serve printed {line:?}"));
    Served { child, url }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed ({}): {}", code(out), stderr(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn tree(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/data"), "shared tier ".repeat(50_000)).unwrap();
    fs::write(src.join("top.txt"), "top").unwrap();
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_bucket() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let store = format!("{}/fleet", s3.url());
    let a = serve(&s3, &dir.path().join("a"), &store);
    let b = serve(&s3, &dir.path().join("b"), &store);

    // A worker puts to A: A answers once the artifact is in the bucket too.
    let worker = dir.path().join("worker");
    ok(&run(with_store(&s3, &worker).args(["add", "d00d", src.to_str().unwrap()])));
    let put = ok(&run(with_store(&s3, &worker).args(["put", "d00d", "--to", &a.url])));
    assert!(put.starts_with("put d00d to"), "{put}");
    assert!(s3.object_file("fleet/d00d.tar").is_file(), "written through before 201");

    // Another worker asks B, which never heard of A: B reads through from the bucket.
    let other = dir.path().join("other");
    let out_dir = dir.path().join("out");
    let get = ok(&run(with_store(&s3, &other).args([
        "get",
        "d00d",
        "--from",
        &b.url,
        "--out",
        out_dir.to_str().unwrap(),
    ])));
    assert!(get.contains(&b.url), "{get}");
    assert_same_tree(&src, &out_dir);
    // B keeps it: its own cache has it now.
    let listed = ok(&run(with_store(&s3, &dir.path().join("b")).args(["ls"])));
    assert!(listed.contains("d00d"), "{listed}");

    // An id in neither: 404 through B, exit 3 for the client.
    let missing = run(with_store(&s3, &other).args(["get", "beef", "--from", &b.url]));
    assert_eq!(code(&missing), 3, "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_put_and_ls_take_store_urls() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let store = format!("{}/ci", s3.url());
    let here = dir.path().join("here");
    ok(&run(with_store(&s3, &here).args(["add", "c0de", src.to_str().unwrap()])));
    let put = ok(&run(with_store(&s3, &here).args(["put", "c0de", "--to", &store])));
    assert!(put.starts_with("put c0de to s3://artifacts/ci"), "{put}");
    let again = ok(&run(with_store(&s3, &here).args(["put", "c0de", "--to", &store])));
    assert_eq!(again.trim(), "s3://artifacts/ci already has c0de");
    assert_eq!(ok(&run(with_store(&s3, &here).args(["ls", "--from", &store]))), "c0de\n");

    // A peer that refuses connections, then the store: the store serves it.
    let refused = artifact_testkit::peer::refused_url().await;
    let there = dir.path().join("there");
    let out_dir = dir.path().join("out");
    let get = ok(&run(with_store(&s3, &there).args([
        "get",
        "c0de",
        "--from",
        &refused,
        "--from",
        &store,
        "--out",
        out_dir.to_str().unwrap(),
    ])));
    assert!(get.contains("from s3://artifacts/ci"), "{get}");
    assert_same_tree(&src, &out_dir);

    let missing = run(with_store(&s3, &there).args(["get", "beef", "--from", &store]));
    assert_eq!(code(&missing), 3, "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_store_it_cannot_use() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");

    let out = run(with_store(&s3, &root).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "s3://no-such-bucket",
    ]));
    assert_eq!(code(&out), 1);
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with(
            "artifact: cannot use the store s3://no-such-bucket: bucket of s3://no-such-bucket not found"
        ),
        "{message}"
    );

    let out = run(with_store(&s3, &root).env("AWS_SECRET_ACCESS_KEY", "wrong").args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &s3.url(),
    ]));
    assert_eq!(code(&out), 2);
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with(
            "artifact: cannot use the store s3://artifacts: s3://artifacts refused the credentials for list"
        ),
        "{message}"
    );

    let out = run(with_store(&s3, &root).args(["serve", "--store", "ftp://x"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// `GET /artifact?id=ID` over a fresh connection; the status code.
fn http_get_status(url: &str, id: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /artifact?id={id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head = String::from_utf8_lossy(&response[..12.min(response.len())]).into_owned();
    head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_is_one_store_download_and_a_down_store_spares_local_hits() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let store = format!("{}/fleet", s3.url());
    let worker = dir.path().join("worker");
    ok(&run(with_store(&s3, &worker).args(["add", "abba", src.to_str().unwrap()])));
    ok(&run(with_store(&s3, &worker).args(["put", "abba", "--to", &store])));

    let root = dir.path().join("server");
    ok(&run(with_store(&s3, &root).args(["add", "cafe", src.to_str().unwrap()])));
    let server = serve(&s3, &root, &store);
    let before = s3.stats().downloads();
    let url = server.url.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let askers: Vec<_> = (0..64)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || http_get_status(&url, "abba"))
            })
            .collect();
        askers.into_iter().map(|asker| asker.join().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(s3.stats().downloads() - before, 1, "64 GETs of one missing id, one store GET");

    // The store goes down: local hits still served, a miss is 503.
    s3.faults().always(artifact_testkit::server::Fault::Status(503));
    let url = server.url.clone();
    let (hit, miss) = tokio::task::spawn_blocking(move || {
        (http_get_status(&url, "cafe"), http_get_status(&url, "beef"))
    })
    .await
    .unwrap();
    assert_eq!((hit, miss), (200, 503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tries_stores_and_peers_as_one_ordered_list() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let store = format!("{}/order", s3.url());
    let peer_root = dir.path().join("peer");
    ok(&run(with_store(&s3, &peer_root).args(["add", "f00d", src.to_str().unwrap()])));
    // The peer reads and writes through a bucket prefix of its own, not the one asked first.
    let peer = serve(&s3, &peer_root, &format!("{}/peer", s3.url()));

    // The store lacks it: the peer after it serves it, in the same download.
    let there = dir.path().join("there");
    let out = run(with_store(&s3, &there)
        .args(["--json", "get", "f00d", "--from", &store])
        .args(["--from", &peer.url]));
    let result: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(result["endpoint"], peer.url.as_str(), "{result}");
    assert_eq!(result["attempts"], 2, "the store's miss, then the peer: {result}");

    // Stored, then damaged: the store is refused and the peer serves it.
    ok(&run(with_store(&s3, &peer_root).args(["put", "f00d", "--to", &store])));
    let object = s3.object_file("order/f00d.tar");
    let mut bytes = fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    fs::write(&object, &bytes).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let out = run(with_store(&s3, &elsewhere)
        .args(["--json", "get", "f00d", "--from", &store])
        .args(["--from", &peer.url]));
    let result: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(result["endpoint"], peer.url.as_str(), "{result}");

    // The damaged store alone: exit 5, the corrupt status.
    let alone =
        run(with_store(&s3, &dir.path().join("alone")).args(["get", "f00d", "--from", &store]));
    assert_eq!(code(&alone), 5, "{}", stderr(&alone));
}
