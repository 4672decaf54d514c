//! Interoperability with standard tools: `curl | tar -x` reads a GET, and a GNU tar archive
//! uploads with `curl -T`.

use std::process::Command;

use artifact_http::protocol;
use artifact_testkit::{assert_same_tree, cache::TempCache, server::TestServer};

use crate::support::{commit_tree, fill, id, run};

/// Runs a bash pipeline (with `pipefail`) off the runtime, and checks it succeeded.
async fn sh(script: String) -> String {
    tokio::task::spawn_blocking(move || {
        let output = Command::new("bash")
            .args(["-o", "pipefail", "-c"])
            .arg(&script)
            .output()
            .expect("sh runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{script}\nfailed: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[test]
fn curl_piped_into_tar_extracts_a_get() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 200_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let out = tempfile::tempdir().unwrap();
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        sh(format!("curl -sSf '{url}' | tar -xf - -C '{}'", out.path().display())).await;
        assert_same_tree(remote.get(&id(1)).unwrap().path(), out.path());
    });
}

#[test]
fn a_gnu_tar_archive_uploads_with_curl() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("src");
        fill(&source, &id(1), 200_000);
        let archive = work.path().join("x.tar");
        sh(format!("tar --format=gnu -cf '{}' -C '{}' .", archive.display(), source.display()))
            .await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(1)));
        let status = sh(format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' -T '{}' '{url}'",
            archive.display()
        ))
        .await;
        assert_eq!(status, "201");
        assert_same_tree(&source, remote.get(&id(1)).unwrap().path());
        // Again: it exists.
        let status = sh(format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' -T '{}' '{url}'",
            archive.display()
        ))
        .await;
        assert_eq!(status, "200");
    });
}
