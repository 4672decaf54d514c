//! The operator's view: `GET /status` reports the cache, the traffic and the transfers in
//! flight under the token rules of `/metrics`; `GET /` shows the same as HTML, with every
//! untrusted text escaped, and a real headless browser renders the numbers `/status` reports.

use std::{process::Command, sync::Arc, time::Duration};

use artifact_cache::Options;
use artifact_http::{
    EndpointStatus, JobSummary, JobsSource, JobsStatus, JobsStatusFuture, ServerConfig, protocol,
};
use artifact_testkit::{cache::TempCache, server::TestServer};
use bytes::Bytes;
use serde_json::Value;

use crate::support::{commit_tree, fast, fill, id, run, tar_of};

async fn get(url: String, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn status(url: &str, token: Option<&str>) -> Value {
    let response = get(format!("{url}/status"), token).await;
    assert_eq!(response.status(), 200);
    crate::support::json(response).await
}

#[test]
fn status_reports_usage_and_traffic_under_the_token_rules() {
    run(async {
        let max = 10 << 20;
        let remote =
            TempCache::with_options(Options::default().max_bytes(Some(max)).min_free_bytes(1));
        commit_tree(&remote, &id(1), 50_000);
        let config = ServerConfig::default().token(Some("s3cret".into())).token_for_reads(true);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let client = fast([server.url()]).token(Some("s3cret".into())).build().unwrap();
        client.download(&TempCache::new(), &id(1)).await.unwrap();
        assert!(client.download(&TempCache::new(), &id(2)).await.unwrap_err().is_not_found());

        let http = reqwest::Client::new();
        for path in ["/status", "/"] {
            let refused = get(format!("{}{path}", server.url()), None).await;
            assert_eq!(refused.status(), 401, "{path}");
            // A browser that sees the Basic challenge asks for a user name and password.
            let challenges: Vec<_> = refused.headers().get_all("www-authenticate").iter().collect();
            assert_eq!(
                challenges,
                ["Bearer realm=\"artifact\"", "Basic realm=\"artifact\", charset=\"UTF-8\""],
                "{path}"
            );
            let wrong = get(format!("{}{path}", server.url()), Some("guess")).await;
            assert_eq!(wrong.status(), 401, "{path}");
            // The token as the Basic password, under any user name.
            for (user, password, answer) in
                [("ops", "s3cret", 200), ("", "s3cret", 200), ("s3cret", "guess", 401)]
            {
                let url = format!("{}{path}", server.url());
                let basic = http.get(url).basic_auth(user, Some(password)).send().await.unwrap();
                assert_eq!(basic.status(), answer, "{path} as {user}:{password}");
            }
        }
        let s = status(server.url(), Some("s3cret")).await;
        let usage = remote.cache().usage().unwrap();
        assert_eq!(s["cache"]["bytes"], usage.bytes, "{s}");
        assert_eq!(s["cache"]["artifacts"], 1);
        assert_eq!(s["cache"]["max_bytes"], max);
        assert_eq!(s["cache"]["used"].as_f64().unwrap(), usage.bytes as f64 / max as f64);
        assert_eq!(s["cache"]["min_free_bytes"], 1);
        assert!(s["cache"]["free_bytes"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["traffic"]["hits"], 1);
        assert_eq!(s["traffic"]["misses"], 1);
        assert_eq!(s["traffic"]["hit_rate"], 0.5);
        assert!(s["traffic"]["bytes_out"].as_u64().unwrap() > 50_000, "{s}");
        assert_eq!(s["transfers"]["count"], 0);
        assert_eq!(s["warnings"], serde_json::json!([]));
        assert!(s.get("jobs").is_none() && s.get("store").is_none(), "{s}");

        let page = get(format!("{}/", server.url()), Some("s3cret")).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        let html = page.text().await.unwrap();
        for part in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<td class=\"num\" id=\"hits\">1</td>",
            "<td class=\"num\" id=\"misses\">1</td>",
            "<td class=\"num\" id=\"hit-rate\">50.0%</td>",
            "<td id=\"cache-artifacts\">1</td>",
            &format!("id=\"cache-bytes\" data-value=\"{}\"", usage.bytes),
            &format!("id=\"cache-max\" data-value=\"{max}\""),
            "id=\"usage-bar\"",
        ] {
            assert!(html.contains(part), "no {part:?} in\n{html}");
        }
        assert!(!html.contains("<script"), "the page needs no script");
    });
}

/// Jobs whose endpoint, error and id carry HTML.
struct HostileJobs;

const PEER: &str = "http://x/<script>alert(\"peer\")</script>";
const ERROR: &str = "it's \"bad\" & <b>bold</b>";

impl JobsSource for HostileJobs {
    fn jobs_status(&self, _listed: usize) -> JobsStatusFuture<'_> {
        Box::pin(async {
            Ok(JobsStatus {
                by_state: [("running".to_owned(), 1), ("failed".to_owned(), 2)].into(),
                active: vec![JobSummary {
                    job: 7,
                    action: "pull".into(),
                    id: "<img src=x onerror=alert(1)>".into(),
                    state: "running".into(),
                    endpoint: Some(PEER.into()),
                    error: Some(ERROR.into()),
                    ..JobSummary::default()
                }],
                endpoints: vec![EndpointStatus {
                    endpoint: PEER.into(),
                    last_error: Some(ERROR.into()),
                    ..EndpointStatus::default()
                }],
            })
        })
    }
}

#[test]
fn untrusted_text_is_escaped_on_the_page() {
    run(async {
        let remote = TempCache::new();
        let source: Arc<dyn JobsSource> = Arc::new(HostileJobs);
        let app = artifact_http::router(remote.cache().clone(), ServerConfig::default())
            .layer(axum::Extension(source));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = ServerConfig::default();
        tokio::spawn(async move {
            artifact_http::serve_router(listener, app, &config, std::future::pending::<()>()).await
        });

        let s = status(&url, None).await;
        assert_eq!(s["jobs"]["by_state"]["failed"], 2, "{s}");
        assert_eq!(s["jobs"]["endpoints"][0]["endpoint"], PEER, "JSON keeps the text as it is");
        assert_eq!(s["jobs"]["active"][0]["error"], ERROR);

        let html = get(format!("{url}/"), None).await.text().await.unwrap();
        for part in [
            "http://x/&lt;script&gt;alert(&quot;peer&quot;)&lt;/script&gt;",
            "it&#39;s &quot;bad&quot; &amp; &lt;b&gt;bold&lt;/b&gt;",
            "&lt;img src=x onerror=alert(1)&gt;",
            "<a href=\"jobs/7\">7</a>",
            "<td class=\"num\" id=\"jobs-failed\">2</td>",
        ] {
            assert!(html.contains(part), "no {part:?} in\n{html}");
        }
        for raw in ["<script", "<b>", "<img", ERROR] {
            assert!(!html.contains(raw), "{raw:?} unescaped in\n{html}");
        }
    });
}

/// Polls `/status` until `done` holds for it.
async fn status_until(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let s = status(url, None).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn an_upload_in_flight_shows_its_progress() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let source = tempfile::tempdir().unwrap();
        fill(source.path(), &id(3), 100_000);
        let body = tar_of(source.path());
        let total = body.len();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(3)));
        let upload = tokio::spawn(
            reqwest::Client::new()
                .put(url)
                .header("content-length", total)
                .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
                .send(),
        );
        tx.send(Ok(Bytes::copy_from_slice(&body[..2048]))).await.unwrap();
        let s = status_until(server.url(), |s| s["transfers"]["list"][0]["bytes"] == 2048).await;
        let transfer = &s["transfers"]["list"][0];
        assert_eq!(s["transfers"]["count"], 1, "{s}");
        assert_eq!(transfer["kind"], "put");
        assert_eq!(transfer["id"], id(3).to_string());
        assert_eq!(transfer["total"], total);
        assert!(transfer["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{s}");
        let html = get(format!("{}/", server.url()), None).await.text().await.unwrap();
        assert!(html.contains(&format!("<progress value=\"2048\" max=\"{total}\">")), "{html}");

        tx.send(Ok(Bytes::copy_from_slice(&body[2048..]))).await.unwrap();
        drop(tx);
        assert_eq!(upload.await.unwrap().unwrap().status(), 201);
        status_until(server.url(), |s| s["transfers"]["count"] == 0).await;
        assert_eq!(status(server.url(), None).await["traffic"]["uploads"], 1);
    });
}

/// The receiver as a stream of body chunks.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The headless browser: `$CHROMIUM`, else `chromium` (Debian's package).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// The DOM a headless browser renders of the page at `url`.
async fn dump_dom(url: String) -> String {
    // A profile of its own: no state shared with a browser the user runs, or another test.
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    tokio::task::spawn_blocking(move || {
        let out = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .args(["--no-first-run", &profile_arg, "--dump-dom", &url])
            .output()
            .unwrap_or_else(|e| {
                panic!("chromium is needed (Debian: apt-get install chromium): {e}")
            });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// With `--token-for-reads`, a browser opens the page with the token as the password it is
/// asked for (given here in the URL, as a user would type it into the prompt).
#[test]
fn a_real_browser_opens_the_guarded_page_with_the_token_as_password() {
    run(async {
        let remote = TempCache::new();
        commit_tree(&remote, &id(1), 1_000);
        let config = ServerConfig::default().token(Some("s3cret".into())).token_for_reads(true);
        let server = TestServer::start_with(remote.cache().clone(), config).await;
        let with_token = dump_dom(server.url().replacen("://", "://ops:s3cret@", 1) + "/").await;
        assert!(with_token.contains("<title>artifact server</title>"), "{with_token}");
        assert!(with_token.contains("id=\"cache-artifacts\">1</td>"), "{with_token}");
        for url in
            [server.url().replacen("://", "://ops:guess@", 1) + "/", server.url().to_owned() + "/"]
        {
            let refused = dump_dom(url.clone()).await;
            assert!(!refused.contains("cache-artifacts"), "{url}: {refused}");
        }
    });
}

#[test]
fn a_real_browser_renders_the_numbers_of_status() {
    run(async {
        let remote = TempCache::with_options(Options::default().max_bytes(Some(4 << 20)));
        commit_tree(&remote, &id(1), 300_000);
        commit_tree(&remote, &id(2), 1_000);
        let server = TestServer::start(remote.cache().clone()).await;
        let client = fast([server.url()]).build().unwrap();
        client.download(&TempCache::new(), &id(1)).await.unwrap();
        client.download(&TempCache::new(), &id(2)).await.unwrap();
        assert!(client.download(&TempCache::new(), &id(9)).await.unwrap_err().is_not_found());
        let s = status(server.url(), None).await;

        let dom = dump_dom(format!("{}/", server.url())).await;

        let number = |key: &str| s.pointer(key).and_then(Value::as_u64).unwrap();
        for part in [
            "<title>artifact server</title>".to_owned(),
            format!("id=\"hits\">{}</td>", number("/traffic/hits")),
            format!("id=\"misses\">{}</td>", number("/traffic/misses")),
            format!("id=\"cache-artifacts\">{}</td>", number("/cache/artifacts")),
            format!("id=\"cache-bytes\" data-value=\"{}\"", number("/cache/bytes")),
            format!("id=\"cache-max\" data-value=\"{}\"", number("/cache/max_bytes")),
            format!("id=\"bytes-in\" data-value=\"{}\"", number("/traffic/bytes_in")),
            format!("id=\"transfers\">{}</span>", number("/transfers/count")),
        ] {
            assert!(dom.contains(&part), "no {part:?} in the rendered DOM:\n{dom}");
        }
        assert_eq!(number("/traffic/hits"), 2);
        // The bar is as wide as the share of the bound in use.
        let used = s["cache"]["used"].as_f64().unwrap() * 100.0;
        assert!(dom.contains(&format!("style=\"width:{used:.1}%\"")), "{dom}");
    });
}

#[test]
fn refusals_logged_as_warnings_are_listed_newest_first() {
    run(async {
        let remote = TempCache::new();
        let server = TestServer::start(remote.cache().clone()).await;
        let http = reqwest::Client::new();
        for (n, body) in [(4, b"<garbage>".to_vec()), (5, vec![0x5a; 600])] {
            let url = format!("{}{}", server.url(), protocol::artifact_path(&id(n)));
            assert_eq!(http.put(url).body(body).send().await.unwrap().status(), 400);
        }
        // A 404 is not a warning.
        let absent = format!("{}{}", server.url(), protocol::artifact_path(&id(6)));
        assert_eq!(http.get(absent).send().await.unwrap().status(), 404);
        let s = status(server.url(), None).await;
        let warnings = s["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 2, "{s}");
        for (warning, n) in warnings.iter().zip([5, 4]) {
            assert_eq!(warning["endpoint"], "put");
            let message = warning["message"].as_str().unwrap();
            assert!(message.starts_with(&format!("bad tar stream for artifact {}", id(n))), "{s}");
            assert!(warning["at"].as_u64().unwrap() > 1_700_000_000);
        }
        assert_eq!(s["traffic"]["uploads_rejected"], 2);
    });
}

#[test]
fn a_download_in_flight_is_listed_until_the_client_goes_away() {
    run(async {
        let remote = TempCache::new();
        // Far more than the socket buffers hold: the server waits for a client that stops reading.
        let big = 32 << 20;
        commit_tree(&remote, &id(7), big);
        let server = TestServer::start(remote.cache().clone()).await;
        let url = format!("{}{}", server.url(), protocol::artifact_path(&id(7)));
        let mut response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut received = 0;
        while received < 100_000 {
            received += response.chunk().await.unwrap().unwrap().len();
        }
        let s = status_until(server.url(), |s| s["transfers"]["count"] == 1).await;
        let transfer = &s["transfers"]["list"][0];
        assert_eq!(transfer["kind"], "get", "{s}");
        assert_eq!(transfer["id"], id(7).to_string());
        let bytes = transfer["bytes"].as_u64().unwrap();
        assert!((100_000..big as u64).contains(&bytes), "{s}");
        assert_eq!(s["transfers"]["active_streams"], 1);
        drop(response);
        status_until(server.url(), |s| s["transfers"]["count"] == 0).await;
    });
}
