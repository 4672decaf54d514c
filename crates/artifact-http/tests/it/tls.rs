//! HTTPS (feature `tls`): `serve` with a self-signed certificate, a client told to trust it, a
//! client that is not (a typed error, not retried), and the per-address connection limit,
//! which admits or closes connections before their handshake.

use std::{net::SocketAddr, path::Path, time::Duration};

use artifact_cache::Cache;
use artifact_http::{Downloader, Error, ServerConfig, TlsConfig, serve};
use artifact_testkit::{assert_same_tree, cache::TempCache};
use tokio::{io::AsyncReadExt, net::TcpSocket};

use crate::support::{commit_tree, fast, id, run};

/// A self-signed certificate for 127.0.0.1 and localhost, written as `cert.pem` and `key.pem`
/// in `dir`.
fn self_signed(dir: &Path) -> TlsConfig {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    TlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap()
}

/// Serves `cache` over HTTPS on 127.0.0.1:0 until `stop` fires; returns the `https://` URL.
async fn serve_tls(
    cache: Cache,
    config: ServerConfig,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (String, SocketAddr, tokio::task::JoinHandle<Result<(), Error>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, cache, config, async {
        let _ = stop.await;
    }));
    (format!("https://{addr}"), addr, server)
}

#[test]
fn a_trusted_self_signed_server_serves_and_an_untrusting_client_is_refused() {
    run(async {
        let (remote, local) = (TempCache::new(), TempCache::new());
        let dir = tempfile::tempdir().unwrap();
        commit_tree(&remote, &id(1), 1 << 20);
        let config = ServerConfig::default().tls(Some(self_signed(dir.path())));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (url, _, server) = serve_tls(remote.cache().clone(), config, stopped).await;

        // Not told to trust it: a typed error at the first attempt, not retried.
        let untrusting = fast([url.as_str()]).attempts(3).build().unwrap();
        let err = untrusting.download(&local, &id(1)).await.unwrap_err();
        assert!(matches!(err, Error::TlsHandshake { .. }), "{err:?}");
        assert!(!err.is_retryable() && err.is_remote(), "{err:?}");
        assert_eq!(err.endpoint(), Some(url.as_str()));
        let chain = format!("{:?}", anyhow_like_chain(&err));
        assert!(chain.contains("invalid peer certificate"), "{chain}");

        let trusting = fast([url.as_str()]).ca_cert(dir.path().join("cert.pem")).build().unwrap();
        let downloaded = trusting.download(&local, &id(1)).await.unwrap();
        assert_eq!(downloaded.attempts(), 1);
        assert_same_tree(remote.cache().get(&id(1)).unwrap().path(), downloaded.path());
        drop(downloaded);
        // And an upload the other way.
        commit_tree(&local, &id(2), 4096);
        let uploaded = trusting.upload(&local, &id(2)).await.unwrap();
        assert_eq!(uploaded.outcome, artifact_http::UploadOutcome::Created);

        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}

/// `err` and its sources, one per line.
fn anyhow_like_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push('\n');
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

#[test]
fn the_per_address_connection_limit_holds_before_the_handshake() {
    run(async {
        let remote = TempCache::new();
        let dir = tempfile::tempdir().unwrap();
        commit_tree(&remote, &id(3), 4096);
        let config =
            ServerConfig::default().max_connections_per_peer(2).tls(Some(self_signed(dir.path())));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (url, addr, server) = serve_tls(remote.cache().clone(), config, stopped).await;

        // Four connections from 127.0.0.2 that never start a handshake: two are admitted (and
        // wait for a ClientHello), the others are closed at once.
        let mut idle = Vec::new();
        for _ in 0..4 {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            idle.push(socket.connect(addr).await.unwrap());
        }
        let mut closed = 0;
        for stream in &mut idle {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte));
            closed += usize::from(matches!(read.await, Ok(Ok(0) | Err(_))));
        }
        assert_eq!(closed, 2, "beyond the limit, closed before any handshake");

        // Another address is not held up by them.
        let local = TempCache::new();
        let client = fast([url.as_str()]).ca_cert(dir.path().join("cert.pem")).build().unwrap();
        let downloaded = client.download(&local, &id(3)).await.unwrap();
        assert_eq!(
            downloaded.metadata().files,
            remote.cache().get(&id(3)).unwrap().metadata().files
        );
        drop((downloaded, idle));

        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}

#[test]
fn unusable_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let _ = self_signed(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let absent = dir.path().join("absent.pem");
    for (c, k, expect) in [
        (&absent, &key, "cannot use the TLS certificate"),
        (&cert, &absent, "cannot use the TLS key"),
        (&key, &key, "no certificate in it"),
        (&cert, &cert, "no private key in it"),
    ] {
        let err = TlsConfig::from_pem_files(c, k).unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        assert!(err.to_string().contains(expect), "{err}");
    }
    let err = Downloader::builder().endpoint("https://a").ca_cert(&key).build().unwrap_err();
    assert!(err.to_string().contains("no certificate in it"), "{err}");
}

#[test]
fn many_concurrent_https_transfers_arrive_whole_and_shutdown_drains_them() {
    run(async {
        let (remote, local) = (TempCache::new(), TempCache::new());
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<_> = (10..42).map(id).collect();
        for id in &ids {
            commit_tree(&remote, id, 64 << 10);
        }
        let config = ServerConfig::default().tls(Some(self_signed(dir.path())));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (url, _, server) = serve_tls(remote.cache().clone(), config, stopped).await;
        // 32 downloads, 16 at a time, each its own TLS connection at first; and uploads of
        // other ids back at the same time.
        let client = fast([url.as_str()])
            .ca_cert(dir.path().join("cert.pem"))
            .concurrency(16)
            .per_endpoint(16)
            .build()
            .unwrap();
        let ups: Vec<_> = (50..58).map(id).collect();
        for id in &ups {
            commit_tree(&local, id, 64 << 10);
        }
        let uploads =
            futures_util::future::join_all(ups.iter().map(|id| client.upload(&local, id)));
        let (downloaded, uploaded) =
            tokio::join!(client.download_many(&local, ids.iter().copied()), uploads);
        for (id, result) in downloaded {
            let got = result.unwrap_or_else(|err| panic!("{id}: {err}"));
            let want = remote.cache().get(&id).unwrap();
            assert_eq!(got.metadata().digest, want.metadata().digest, "{id}");
        }
        for result in uploaded {
            result.unwrap();
        }
        for id in &ups {
            remote.cache().get(id).expect("uploaded over TLS");
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}
