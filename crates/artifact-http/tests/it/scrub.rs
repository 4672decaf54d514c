//! The background scrub: a byte flipped on disk is found by a pass, the artifact is never
//! served again (not even from the streams kept in memory), and with a peer it comes back
//! whole, or not at all when the peer holds another tree.

use artifact_cache::{ArtifactId, Cache};
use artifact_http::{ScrubConfig, Scrubber, ServerConfig, protocol};
use artifact_testkit::{
    cache::{TempCache, flip_byte},
    server::TestServer,
};
use serde_json::Value;

use crate::support::{commit_tree, fast, id, json, metric, run};

/// Fast enough that no test waits on the rate (the pacing has its own unit tests).
fn config() -> ScrubConfig {
    ScrubConfig::default().rate(1 << 30)
}

async fn status_of(url: &str, id: &ArtifactId) -> u16 {
    let url = format!("{url}{}", protocol::artifact_path(id));
    reqwest::get(url).await.unwrap().status().as_u16()
}

async fn scrub_status(server: &TestServer) -> Value {
    json(reqwest::get(format!("{}/status", server.url())).await.unwrap()).await["scrub"].clone()
}

/// A server of `cache` showing `scrubber`.
async fn serve(cache: &Cache, scrubber: &Scrubber) -> TestServer {
    let config = ServerConfig::default().scrub(Some(scrubber.clone()));
    TestServer::start_with(cache.clone(), config).await
}

#[test]
fn a_flipped_byte_is_found_and_the_artifact_never_served_again() {
    run(async {
        let local = TempCache::new();
        // Small enough that its stream is kept in memory after the first GET.
        let damaged = commit_tree(&local, &id(1), 1000);
        let good = commit_tree(&local, &id(2), 30_000);
        let scrubber = Scrubber::new(local.cache().clone(), config());
        let server = serve(&local, &scrubber).await;
        for _ in 0..2 {
            assert_eq!(status_of(server.url(), &id(1)).await, 200);
        }
        assert_eq!(metric(&server, "artifact_http_small_streams").await, 1);

        flip_byte(local.root(), &id(1), "big.bin");
        let report = scrubber.pass().await;
        assert_eq!(report.corrupt, [id(1)]);
        assert_eq!(report.quarantined, [id(1)]);
        assert_eq!(report.verified, 1);
        assert!(report.repaired.is_empty() && report.repair_failed.is_empty());
        // Every byte of both trees was read once, through the rate limit.
        assert_eq!(report.bytes, damaged.size + good.size);

        assert_eq!(status_of(server.url(), &id(1)).await, 404);
        assert_eq!(status_of(server.url(), &id(2)).await, 200);
        let quarantined = local.quarantined().unwrap();
        assert_eq!(quarantined.len(), 1);
        assert!(quarantined[0].reason.contains(&damaged.digest.to_string()), "{quarantined:?}");

        assert_eq!(metric(&server, "artifact_scrub_passes_total").await, 1);
        assert_eq!(metric(&server, "artifact_scrub_verified_total").await, 1);
        assert_eq!(metric(&server, "artifact_scrub_corrupt_total").await, 1);
        assert_eq!(metric(&server, "artifact_scrub_quarantined_total").await, 1);
        assert_eq!(metric(&server, "artifact_scrub_repaired_total").await, 0);
        assert_eq!(metric(&server, "artifact_scrub_bytes_total").await, report.bytes);
        let scrub = scrub_status(&server).await;
        assert_eq!(scrub["corrupt"], 1, "{scrub}");
        assert_eq!(scrub["last_pass"]["verified"], 1, "{scrub}");
        assert_eq!(scrub["recent"][0]["id"], id(1).to_string(), "{scrub}");
        assert_eq!(scrub["recent"][0]["state"], "quarantined", "{scrub}");
        let page = reqwest::get(server.url()).await.unwrap().text().await.unwrap();
        assert!(page.contains("<h2>Scrub</h2>") && page.contains(&id(1).to_string()), "{page}");

        // The next pass has nothing left to find.
        let again = scrubber.pass().await;
        assert!(again.corrupt.is_empty() && again.verified == 1, "{again:?}");
    });
}

#[test]
fn with_a_peer_the_corrupt_artifact_comes_back_whole() {
    run(async {
        let peer = TempCache::new();
        let original = commit_tree(&peer, &id(1), 100_000);
        let peer_server = TestServer::start(peer.cache().clone()).await;
        let local = TempCache::new();
        commit_tree(&local, &id(1), 100_000);
        flip_byte(local.root(), &id(1), "src/main.rs");

        let downloader = fast([peer_server.url()]).build().unwrap();
        let scrubber = Scrubber::new(local.cache().clone(), config()).repair_from(downloader);
        let server = serve(&local, &scrubber).await;
        let report = scrubber.pass().await;
        assert_eq!(report.corrupt, [id(1)]);
        assert_eq!(report.repaired, [id(1)]);

        // Served whole again, and verified end to end by a client.
        assert_eq!(local.verify(&id(1)).unwrap().digest, original.digest);
        let client = TempCache::new();
        let fetched =
            fast([server.url()]).build().unwrap().download(&client, &id(1)).await.unwrap();
        assert_eq!(fetched.metadata().digest, original.digest);
        assert_eq!(metric(&server, "artifact_scrub_repaired_total").await, 1);
        let scrub = scrub_status(&server).await;
        assert_eq!(scrub["recent"][0]["state"], "repaired", "{scrub}");
        assert_eq!(scrub["recent"][0]["detail"], peer_server.url(), "{scrub}");
        assert_eq!(scrub["repair_from"][0], peer_server.url(), "{scrub}");
    });
}

#[test]
fn a_peer_with_another_tree_under_the_id_is_refused() {
    run(async {
        let peer = TempCache::new();
        commit_tree(&peer, &id(1), 5_000);
        let peer_server = TestServer::start(peer.cache().clone()).await;
        let local = TempCache::new();
        commit_tree(&local, &id(1), 6_000);
        flip_byte(local.root(), &id(1), "big.bin");

        let downloader = fast([peer_server.url()]).build().unwrap();
        let scrubber = Scrubber::new(local.cache().clone(), config()).repair_from(downloader);
        let server = serve(&local, &scrubber).await;
        let report = scrubber.pass().await;
        assert_eq!(report.repair_failed, [id(1)]);
        assert_eq!(status_of(server.url(), &id(1)).await, 404);
        // The damaged copy and the wrong one, both out of the way.
        assert_eq!(local.quarantined().unwrap().len(), 2);
        assert_eq!(metric(&server, "artifact_scrub_repair_failures_total").await, 1);
        assert_eq!(scrub_status(&server).await["recent"][0]["state"], "repair failed");
    });
}

#[test]
fn a_stream_in_flight_delays_the_quarantine_and_new_requests_get_404() {
    run(async {
        let local = TempCache::new();
        commit_tree(&local, &id(1), 1000);
        let scrubber = Scrubber::new(local.cache().clone(), config());
        let server = serve(&local, &scrubber).await;
        flip_byte(local.root(), &id(1), "big.bin");
        // A reader of this process, as a response body streaming.
        let reader = local.get(&id(1)).unwrap();
        let pass = tokio::spawn({
            let scrubber = scrubber.clone();
            async move { scrubber.pass().await }
        });
        while !local.is_condemned(&id(1)) {
            tokio::task::yield_now().await;
        }
        assert_eq!(status_of(server.url(), &id(1)).await, 404);
        assert_eq!(scrub_status(&server).await["quarantined"], 0);
        drop(reader);
        let report = pass.await.unwrap();
        assert_eq!(report.quarantined, [id(1)]);
        assert_eq!(status_of(server.url(), &id(1)).await, 404);
    });
}
