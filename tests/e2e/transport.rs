//! How `get` and `put` talk to a server: zstd on the wire, HTTPS with a certificate the client
//! is told to trust, and what a client that does not trust it says.

use std::{fs, path::Path};

use artifact_testkit::assert_same_tree;

use crate::{
    net::{Server, cli, json, ok, tree},
    support::{code, stderr},
};

#[test]
fn zstd_get_and_put_send_less_than_the_tree_and_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, other) =
        (dir.path().join("remote"), dir.path().join("local"), dir.path().join("other"));
    // Text repeated 10,000 times: compresses to a fraction.
    let src = tree(dir.path(), "z");
    let server = Server::start(&remote, &[]);
    ok(&cli(&local, &["add", "f1", src.to_str().unwrap()]));

    let put = cli(&local, &["--json", "put", "f1", "--to", &server.url, "--zstd"]);
    ok(&put);
    let sent = json(&put)["stream_bytes"].as_u64().unwrap();
    assert!(sent > 0 && sent < 10_000 / 2, "put --zstd sent {sent} bytes");

    let plain = cli(&other, &["--json", "get", "f1", "--from", &server.url]);
    ok(&plain);
    let plain_bytes = json(&plain)["stream_bytes"].as_u64().unwrap();
    ok(&cli(&other, &["rm", "f1"]));
    let out_dir = dir.path().join("out");
    let got = cli(
        &other,
        &[
            "--json",
            "get",
            "f1",
            "--from",
            &server.url,
            "--zstd",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    ok(&got);
    let zstd_bytes = json(&got)["stream_bytes"].as_u64().unwrap();
    assert!(zstd_bytes * 4 < plain_bytes, "zstd {zstd_bytes} bytes, plain {plain_bytes}");
    assert_same_tree(&src, &out_dir);
    ok(&cli(&other, &["verify", "f1"]));
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) PEM files.
fn self_signed(dir: &Path) -> (String, String) {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    fs::write(&cert, certified.cert.pem()).unwrap();
    fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

#[test]
fn https_with_a_trusted_self_signed_certificate_and_a_clear_refusal_without() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local, other) =
        (dir.path().join("remote"), dir.path().join("local"), dir.path().join("other"));
    let src = tree(dir.path(), "t");
    let (cert, key) = self_signed(dir.path());
    let server = Server::start(&remote, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    ok(&cli(&local, &["add", "ca", src.to_str().unwrap()]));

    // Not told to trust it: refused at the handshake, said plainly, and not retried.
    let out = cli(&local, &["put", "ca", "--to", &server.url]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("TLS handshake with"), "{text}");
    assert!(text.contains("invalid peer certificate"), "the TLS library's reason: {text}");
    assert_eq!(text.matches("WARN").count(), 1, "one attempt, no retries: {text}");

    let put = cli(&local, &["--json", "put", "ca", "--to", &server.url, "--ca-cert", &cert]);
    ok(&put);
    assert_eq!(json(&put)["created"], true);
    let out_dir = dir.path().join("out");
    let got = cli(
        &other,
        &[
            "get",
            "ca",
            "--from",
            &server.url,
            "--ca-cert",
            &cert,
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    ok(&got);
    assert_same_tree(&src, &out_dir);

    // The jobs API over HTTPS too.
    let jobs = cli(&other, &["--json", "jobs", "ls", "--server", &server.url, "--ca-cert", &cert]);
    ok(&jobs);
    let jobs = cli(&other, &["jobs", "ls", "--server", &server.url]);
    assert_eq!(code(&jobs), 1, "{}", stderr(&jobs));

    // Plain HTTP to the HTTPS server fails; so does a CA file that holds no certificate.
    let plain = server.url.replacen("https://", "http://", 1);
    let out = cli(&other, &["get", "cb", "--from", &plain, "--timeout", "20"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let out = cli(&other, &["get", "ca", "--from", &server.url, "--ca-cert", &key]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no certificate"), "{}", stderr(&out));
}

#[test]
fn serve_refuses_a_key_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = self_signed(dir.path());
    let root = dir.path().join("root");
    let out =
        cli(&root, &["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &cert]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no private key"), "{}", stderr(&out));
    let out = cli(&root, &["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert]);
    assert_eq!(code(&out), 2, "--tls-cert needs --tls-key: {}", stderr(&out));
}
