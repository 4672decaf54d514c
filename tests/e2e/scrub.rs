//! Scrub and repair from the command line: `verify --repair --from URL` quarantines a corrupt
//! artifact and fetches it again, and `serve --scrub-interval` does the same in the
//! background.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use artifact::cache::ArtifactId;
use artifact_testkit::cache::flip_byte;

use crate::{
    net::{Server, cli, ok, statuses, stdout, tree},
    support::{code, stderr},
};

fn id(text: &str) -> ArtifactId {
    text.parse().unwrap()
}

#[test]
fn verify_repair_fetches_a_corrupt_artifact_again_and_refuses_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "a");
    let server = Server::start(&remote, &[]);
    ok(&cli(&remote, &["add", "a1", src.to_str().unwrap()]));
    for name in ["a1", "a2"] {
        ok(&cli(&local, &["add", name, src.to_str().unwrap()]));
    }
    flip_byte(&local, &id("a1"), "data.txt");
    flip_byte(&local, &id("a2"), "data.txt");
    assert_eq!(code(&cli(&local, &["verify", "a1"])), 5);

    // The server has a1, not a2: a1 is repaired, a2 only quarantined (exit 5).
    let out = cli(&local, &["--json", "verify", "--repair", "--from", &server.url]);
    assert_eq!(code(&out), 5, "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        statuses(&out),
        [("a1".into(), "repaired".into()), ("a2".into(), "quarantined".into())]
    );
    ok(&cli(&local, &["verify", "a1"]));
    assert_eq!(code(&cli(&local, &["verify", "a2"])), 3, "a2 is out of the cache");

    // Nothing corrupt left: a plain success.
    let out = cli(&local, &["verify", "--repair", "--from", &server.url]);
    ok(&out);
    assert!(stdout(&out).contains("a1: ok"), "{}", stdout(&out));
    // --repair needs a source, and a source needs --repair.
    assert_eq!(code(&cli(&local, &["verify", "--repair"])), 2);
    assert_eq!(code(&cli(&local, &["verify", "--from", &server.url])), 2);
    // So do the scrub's flags, and a rate of nothing is refused before serving.
    assert_eq!(code(&cli(&local, &["serve", "--scrub-rate", "1MiB/s"])), 2);
    assert_eq!(code(&cli(&local, &["serve", "--repair-from", &server.url])), 2);
    let out = cli(
        &local,
        &["serve", "--listen", "127.0.0.1:0", "--scrub-interval", "1h", "--scrub-rate", "0/s"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--scrub-rate"), "{}", stderr(&out));
}

/// `GET path` on `url` (`http://host:port`), the body as text.
fn http_get(url: &str, path: &str) -> String {
    let host = url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// Asks `/status` until the scrub has finished a pass (it starts one at once).
fn first_pass(url: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = serde_json::from_str(&http_get(url, "/status")).unwrap();
        if status["scrub"]["passes"].as_u64() >= Some(1) {
            return status["scrub"].clone();
        }
        assert!(Instant::now() < deadline, "no scrub pass: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_scrubs_and_repairs_from_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (peer_root, root) = (dir.path().join("peer"), dir.path().join("local"));
    let src = tree(dir.path(), "b");
    for cache in [&peer_root, &root] {
        ok(&cli(cache, &["add", "b1", src.to_str().unwrap()]));
    }
    flip_byte(&root, &id("b1"), "data.txt");
    let peer = Server::start(&peer_root, &[]);
    let server = Server::start(
        &root,
        &["--scrub-interval", "1h", "--scrub-rate", "64MiB/s", "--repair-from", &peer.url],
    );
    let scrub = first_pass(&server.url);
    assert_eq!(scrub["corrupt"], 1, "{scrub}");
    assert_eq!(scrub["repaired"], 1, "{scrub}");
    assert_eq!(scrub["recent"][0]["id"], "b1", "{scrub}");
    let metrics = http_get(&server.url, "/metrics");
    assert!(metrics.lines().any(|l| l == "artifact_scrub_repaired_total 1"), "{metrics}");
    ok(&cli(&root, &["verify", "b1"]));
    // And a client gets the whole tree back.
    let fetched = dir.path().join("fetched");
    ok(&cli(&fetched, &["get", "b1", "--from", &server.url]));
    assert_eq!(code(&cli(&fetched, &["verify", "b1"])), 0);
}
