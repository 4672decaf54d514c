//! Helpers shared by the integration tests: a runtime with a watchdog, trees, downloaders
//! with fast retries, and checks that nothing partial was kept.

use std::{future::Future, path::Path, time::Duration};

use artifact_cache::{ArtifactId, Cache, Fill, Metadata};
use artifact_http::{Downloader, DownloaderBuilder};
use artifact_testkit::TreeBuilder;

/// How long any test may run before it counts as hung.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `test` on a two-thread runtime; fails it if it hangs.
pub(crate) fn run(test: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(WATCHDOG, test).await.expect("watchdog: the test hung");
    });
}

/// Commits `id` in `cache` with a small tree of every kind of entry, plus a file of
/// `big` bytes (so that streams have a body worth cutting).
pub(crate) fn commit_tree(cache: &Cache, id: &ArtifactId, big: usize) -> Metadata {
    let writer = cache.create(id).expect("create");
    fill(writer.path(), id, big);
    writer.commit().expect("commit")
}

/// Fills `dir` (see [`commit_tree`]).
pub(crate) fn fill(dir: &Path, id: &ArtifactId, big: usize) {
    let tree = TreeBuilder::new(dir);
    let seed =
        id.as_bytes().iter().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut blob = vec![0u8; big];
    rng.fill(&mut blob);
    tree.file("big.bin", &blob)
        .file("src/main.rs", format!("fn main() {{ println!(\"{id}\"); }}\n"))
        .file("src/a very long name/".to_owned() + &"n".repeat(120) + ".txt", "long name\n")
        .exec("bin/tool", "#!/bin/sh\necho tool\n")
        .dir("empty/dir")
        .file("unicodé/ファイル.txt", "unicode\n")
        .symlink("latest", "bin/tool");
}

/// A downloader for `urls` that retries quickly.
pub(crate) fn fast<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> DownloaderBuilder {
    Downloader::builder()
        .endpoints(urls)
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(10))
        .lock_wait(Duration::from_secs(20))
}

/// Panics unless `cache` holds nothing for `id` and nobody holds its lock: a writer can start
/// at once.
pub(crate) async fn assert_absent_and_unlocked(cache: &Cache, id: &ArtifactId) {
    // A dropped download finishes aborting on a blocking thread: wait for that writer.
    let err = cache.get_wait(id, Duration::from_secs(10)).await.expect_err("nothing committed");
    assert!(err.is_not_found(), "{err:?}");
    match cache.create_or_get(id, Duration::from_secs(10)).await.expect("no stuck lock") {
        Fill::Create(writer) => writer.abort().expect("abort"),
        Fill::Ready(_) => panic!("{id} was committed"),
    }
    let left: Vec<_> = cache.list().expect("list").collect();
    assert!(left.iter().all(|found| found.as_ref().ok() != Some(id)), "{id} is listed");
}

/// The raw bytes of the tar stream of `dir`.
pub(crate) fn tar_of(dir: &Path) -> Vec<u8> {
    let mut stream = Vec::new();
    tarstream::send(dir, &mut stream).expect("send");
    stream
}

/// An id from a small number.
pub(crate) fn id(n: u64) -> ArtifactId {
    artifact_testkit::cache::test_id(n)
}

/// The value of the sample `name` in `server`'s `/metrics`.
pub(crate) async fn metric(server: &artifact_testkit::server::TestServer, name: &str) -> u64 {
    let text =
        reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
}

/// The body of `response` as JSON.
pub(crate) async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.expect("a body")).expect("a JSON body")
}

pub(crate) use artifact_testkit::peer::raw_tar;
