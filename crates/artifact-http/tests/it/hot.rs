//! The hot path of `serve_endpoints` (`GET` and `HEAD /artifact` without the router's
//! dispatch) answers exactly as the router does, counts the same, and leaves every other
//! request to the app.

use std::{
    future::pending,
    sync::{Arc, Mutex},
};

use axum::{extract::Request, middleware::Next};

use artifact_cache::Cache;
use artifact_http::{Endpoints, ServerConfig, protocol, router, serve_endpoints, serve_router};
use artifact_testkit::cache::TempCache;
use tokio::net::TcpListener;

use crate::support::{commit_tree, id, run};

/// `http://` and the address of a server running `serve` on a fresh loopback listener.
async fn start<F>(serve: impl FnOnce(TcpListener) -> F) -> String
where
    F: Future<Output = Result<(), artifact_http::Error>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = serve(listener);
    tokio::spawn(async move { serving.await.expect("the server runs") });
    url
}

/// A request (method, path and query, headers) and the status it must get.
type Case = (&'static str, String, Vec<(&'static str, String)>, u16);

/// What an answer was, all of it but its `Date`.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn ask(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Answer {
    let mut request = client.request(method.parse().unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let mut headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    Answer { status, headers, body: answer.bytes().await.unwrap().to_vec() }
}

/// The counters of `/metrics` that requests move (not durations or gauges of memory).
async fn counters(client: &reqwest::Client, url: &str, auth: &[(&str, String)]) -> Vec<String> {
    let text = ask(client, "GET", &format!("{url}/metrics"), auth).await;
    let wanted = ["artifact_http_requests_total", "artifact_http_hits", "artifact_http_misses"];
    let mut lines: Vec<String> = String::from_utf8(text.body)
        .unwrap()
        .lines()
        .filter(|line| wanted.iter().any(|name| line.starts_with(name)))
        .filter(|line| !line.contains("endpoint=\"metrics\""))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_hot_path_answers_and_counts_as_the_router_does() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1000);
        let big = commit_tree(&remote, &id(2), 1 << 20);
        let cache: Cache = remote.cache().clone();
        let guarded = ServerConfig::default().token(Some("s3cret".into())).token_for_reads(true);
        for config in [ServerConfig::default(), guarded] {
            let endpoints = Endpoints::new(cache.clone(), config.clone());
            let hot = start(|listener| async move {
                serve_endpoints(listener, &endpoints, endpoints.router(), pending()).await
            })
            .await;
            let (plain_cache, plain_config) = (cache.clone(), config.clone());
            let plain = start(|listener| async move {
                let app = router(plain_cache, plain_config.clone());
                serve_router(listener, app, &plain_config, pending()).await
            })
            .await;
            let auth: Vec<(&str, String)> = match &config.token {
                Some(token) => vec![("authorization", format!("Bearer {token}"))],
                None => Vec::new(),
            };
            let with = |extra: &[(&'static str, String)]| {
                auth.iter().cloned().chain(extra.iter().cloned()).collect::<Vec<_>>()
            };
            let path = |n: u64| protocol::artifact_path(&id(n));
            let tag = format!("\"{}\"", big.digest);
            let unauthorized = if config.token_for_reads { 401 } else { 200 };
            let (range, if_range) = ("range", "if-range");
            // Each request, and the status it must get (from both).
            let requests: Vec<Case> = vec![
                ("GET", path(1), with(&[]), 200),
                ("GET", path(1), with(&[]), 200), // now from memory
                ("HEAD", path(1), with(&[]), 200),
                ("GET", path(1), Vec::new(), unauthorized),
                ("GET", path(2), with(&[]), 200),
                ("HEAD", path(2), with(&[]), 200),
                ("GET", path(2), with(&[(range, "bytes=0-99".into())]), 206),
                ("GET", path(2), with(&[(range, "bytes=999999999-".into())]), 416),
                (
                    "GET",
                    path(2),
                    with(&[(range, "bytes=0-9".into()), (if_range, tag.clone())]),
                    206,
                ),
                (
                    "GET",
                    path(2),
                    with(&[(range, "bytes=0-9".into()), (if_range, "\"x\"".into())]),
                    200,
                ),
                ("GET", path(1), with(&[("accept-encoding", "zstd".into())]), 200),
                ("GET", path(2), with(&[("if-none-match", tag.clone())]), 304),
                ("HEAD", path(2), with(&[("if-none-match", "*".into())]), 304),
                ("GET", path(2), with(&[("if-none-match", "\"x\"".into())]), 200),
                ("GET", path(9), with(&[]), 404),
                ("HEAD", path(9), with(&[]), 404),
                ("GET", "/artifact?id=zz".into(), with(&[]), 400),
                ("GET", "/artifact".into(), with(&[]), 400),
                ("GET", format!("/artifact/?id={}", id(1)), with(&[]), 404),
                ("POST", path(1), with(&[]), 405),
                ("GET", "/healthz".into(), with(&[]), 200),
            ];
            let client = reqwest::Client::new();
            for (method, target, headers, status) in &requests {
                let ours = ask(&client, method, &format!("{hot}{target}"), headers).await;
                let theirs = ask(&client, method, &format!("{plain}{target}"), headers).await;
                assert_eq!(ours, theirs, "{method} {target} {headers:?}");
                assert_eq!(ours.status, *status, "{method} {target} {headers:?} {config:?}");
            }
            assert_eq!(
                counters(&client, &hot, &auth).await,
                counters(&client, &plain, &auth).await
            );
            assert!(!counters(&client, &hot, &auth).await.is_empty());
        }
    });
}

#[test]
fn other_requests_go_to_the_app_and_its_layers() {
    run(async {
        let remote = TempCache::new();
        let endpoints = Endpoints::new(remote.cache().clone(), ServerConfig::default());
        // A layer of the app's that counts what it sees (as the jobs' layer of `artifact
        // serve` would pass it on): every request but `GET` and `HEAD /artifact`.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = endpoints
            .router()
            .route("/about", axum::routing::get(|| async { "farm" }))
            .layer(axum::middleware::from_fn(move |request: Request, next: Next| {
                log.lock().unwrap().push(format!("{} {}", request.method(), request.uri().path()));
                next.run(request)
            }));
        let url = start(|listener| async move {
            serve_endpoints(listener, &endpoints, app, pending()).await
        })
        .await;
        let client = reqwest::Client::new();
        let about = client.get(format!("{url}/about")).send().await.unwrap();
        assert_eq!(about.text().await.unwrap(), "farm");
        // An upload and a removal go through the app's routes; the hot path serves what was
        // uploaded, and then its absence.
        let dir = tempfile::tempdir().unwrap();
        crate::support::fill(dir.path(), &id(3), 5000);
        let stream = crate::support::tar_of(dir.path());
        let target = format!("{url}{}", protocol::artifact_path(&id(3)));
        let put = client.put(&target).body(stream.clone()).send().await.unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        let got = client.get(&target).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap(), stream);
        assert_eq!(client.head(&target).send().await.unwrap().status(), 200);
        assert_eq!(client.delete(&target).send().await.unwrap().status(), 204);
        assert_eq!(client.get(&target).send().await.unwrap().status(), 404);
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /about", "PUT /artifact", "DELETE /artifact"],
            "the app's layer saw the others, not GET or HEAD /artifact"
        );
    });
}
