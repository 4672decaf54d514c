//! The HTTP API on a real listener, driven with reqwest.

use artifact_jobs::{Jobs, JobsConfig, State};
use artifact_testkit::{
    cache::{TempCache, commit_known, test_id},
    server::{Fault, TestServer},
};
use serde_json::{Value, json};

/// Serves `jobs.router()` on `127.0.0.1:0`; returns its URL.
async fn serve(jobs: &Jobs) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = jobs.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_show_list_and_cancel() {
    let remote = TempCache::new();
    for i in 0..3 {
        commit_known(remote.cache(), &test_id(i), 2).unwrap();
    }
    let server = TestServer::start(remote.cache().clone()).await;
    let local = TempCache::new();
    let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    let api = serve(&jobs).await;
    let http = reqwest::Client::new();

    let body = json!({"action": "pull", "ids": [test_id(0).to_string(), test_id(1).to_string()], "from": [server.url()]});
    let answer = http.post(format!("{api}/jobs")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 202);
    let answer: Value = answer.json().await.unwrap();
    let first = answer["jobs"][0]["job"].as_i64().unwrap();
    assert_eq!(answer["jobs"][1]["id"], test_id(1).to_string());
    for entry in answer["jobs"].as_array().unwrap() {
        let done = jobs.wait(artifact_jobs::JobId(entry["job"].as_i64().unwrap())).await.unwrap();
        assert_eq!(done.state, State::Succeeded);
    }

    let shown: Value =
        http.get(format!("{api}/jobs/{first}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["action"], "pull");
    assert_eq!(shown["attempts"], 1);
    assert_eq!(shown["endpoint"], server.url());
    assert!(shown["bytes"].as_u64().unwrap() > 0);
    assert!(shown["created"].as_str().unwrap().ends_with('Z'));
    let states: Vec<&str> =
        shown["log"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "running", "succeeded"]);

    let page: Value = http
        .get(format!("{api}/jobs?state=succeeded&limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    let next = page["next"].as_i64().unwrap();
    let page: Value = http
        .get(format!("{api}/jobs?limit=5&after={next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["jobs"][0]["job"].as_i64().unwrap(), next + 1);
    assert!(page.get("next").is_none());

    // Ended: 409; unknown: 404; not a number: 400.
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.delete(format!("{api}/jobs/{first}")).send().await.unwrap()), 409);
    assert_eq!(status(http.delete(format!("{api}/jobs/999")).send().await.unwrap()), 404);
    assert_eq!(status(http.get(format!("{api}/jobs/x")).send().await.unwrap()), 400);
    assert_eq!(status(http.get(format!("{api}/jobs?state=done")).send().await.unwrap()), 400);

    // A running transfer cancelled over HTTP.
    server.faults().once(Fault::StallAfter(600));
    let body = json!({"action": "pull", "ids": [test_id(2).to_string()], "from": [server.url()]});
    let answer: Value =
        http.post(format!("{api}/jobs")).json(&body).send().await.unwrap().json().await.unwrap();
    let job = answer["jobs"][0]["job"].as_i64().unwrap();
    server.stats().wait_in_flight(1).await;
    // The same job again is the active one.
    let again: Value =
        http.post(format!("{api}/jobs")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["jobs"][0]["job"].as_i64().unwrap(), job);
    assert_eq!(again["jobs"][0]["state"], "running");
    assert_eq!(status(http.delete(format!("{api}/jobs/{job}")).send().await.unwrap()), 204);
    server.stats().wait_idle().await;
    assert_eq!(jobs.get(artifact_jobs::JobId(job)).await.unwrap().state, State::Cancelled);
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_a_full_queue_and_tokens_are_refused() {
    let local = TempCache::new();
    let config = JobsConfig::default().max_queued(2).max_ids(3).token(Some("s3cret".into()));
    let jobs = Jobs::start(local.cache().clone(), config).await.unwrap();
    let api = serve(&jobs).await;
    let http = reqwest::Client::new();
    // Nothing listens there: the jobs stay active (retrying) while the test runs.
    let from = artifact_testkit::peer::refused_url().await;
    let post =
        |body: Value| http.post(format!("{api}/jobs")).bearer_auth("s3cret").json(&body).send();

    let unauthorized = http.post(format!("{api}/jobs")).json(&json!({})).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let challenges: Vec<_> = unauthorized.headers().get_all("www-authenticate").iter().collect();
    assert_eq!(
        challenges,
        ["Bearer realm=\"artifact\"", "Basic realm=\"artifact\", charset=\"UTF-8\""]
    );
    // The token as the Basic password (any user name) is the token too: a body that is not
    // a job is refused for what it is, not for the credentials.
    let basic = http
        .post(format!("{api}/jobs"))
        .basic_auth("ops", Some("s3cret"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 400);
    let wrong = http
        .post(format!("{api}/jobs"))
        .bearer_auth("guess")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        http.get(format!("{api}/jobs")).send().await.unwrap().status(),
        200,
        "reads are open"
    );

    for (body, field) in [
        (json!({"action": "move", "ids": ["00"], "from": [from]}), "`action`"),
        (json!({"action": "pull", "ids": [], "from": [from]}), "`ids`"),
        (json!({"action": "pull", "ids": ["xyz"], "from": [from]}), "`ids[0]`"),
        (json!({"action": "pull", "ids": ["00"], "from": ["nope"]}), "`from[0]`"),
        (
            json!({"action": "pull", "ids": ["00", "01", "02", "03"], "from": [from]}),
            "`ids`: 4 jobs",
        ),
    ] {
        let answer = post(body.clone()).await.unwrap();
        assert_eq!(answer.status(), 400, "{body}");
        let error: Value = answer.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(field), "{body}: {error}");
    }

    let ok = post(json!({"action": "pull", "ids": ["00", "01"], "from": [from]})).await.unwrap();
    assert_eq!(ok.status(), 202);
    let full = post(json!({"action": "pull", "ids": ["02"], "from": [from]})).await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "5");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pages_gain_the_job_lines() {
    let local = TempCache::new();
    let jobs = Jobs::start(local.cache().clone(), JobsConfig::default()).await.unwrap();
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(|| async { "artifact_requests_total 3\n" }))
        .route("/other", axum::routing::get(|| async { "other\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = jobs.with_metrics(app.merge(jobs.router()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let page = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    assert!(page.starts_with("artifact_requests_total 3\n"), "{page}");
    assert!(page.contains("artifact_jobs{state=\"queued\"} 0\n"), "{page}");
    let other = reqwest::get(format!("{url}/other")).await.unwrap().text().await.unwrap();
    assert_eq!(other, "other\n");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_jobs_and_each_peers_last_error() {
    let local = TempCache::new();
    let config = JobsConfig::default()
        .max_attempts(2)
        .backoff(std::time::Duration::from_secs(3600), std::time::Duration::from_secs(3600));
    let jobs = Jobs::start(local.cache().clone(), config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server =
        artifact_http::router(local.cache().clone(), artifact_http::ServerConfig::default());
    let app = jobs.with_metrics(server.merge(jobs.router()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Nothing listens on port 1: the first attempt fails, and the retry is an hour away.
    let dead = "http://127.0.0.1:1";
    let new = artifact_jobs::NewJob {
        action: artifact_jobs::Action::Pull,
        id: test_id(5),
        endpoints: vec![dead.into()],
        priority: 0,
    };
    let (job, _) = jobs.submit(vec![new]).await.unwrap().remove(0);
    jobs.wait_until(job.job, |j| j.state == State::Retrying).await.unwrap();

    let status: Value = reqwest::get(format!("{url}/status")).await.unwrap().json().await.unwrap();
    let listed = &status["jobs"];
    assert_eq!(listed["by_state"]["retrying"], 1, "{status}");
    assert_eq!(listed["active"][0]["job"], job.job.0);
    assert_eq!(listed["active"][0]["id"], test_id(5).to_string());
    assert_eq!(listed["endpoints"][0]["endpoint"], dead);
    assert_eq!(listed["endpoints"][0]["transfers"]["retried"], 1);
    let error = listed["endpoints"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1:1"), "{error}");

    let page = reqwest::get(format!("{url}/")).await.unwrap().text().await.unwrap();
    for part in [
        "<td class=\"num\" id=\"jobs-retrying\">1</td>".to_owned(),
        format!("<a href=\"jobs/{0}\">{0}</a>", job.job.0),
        format!("<td>{dead}</td>"),
    ] {
        assert!(page.contains(&part), "no {part:?} in\n{page}");
    }
    // The link leads to the job's detail.
    let detail: Value =
        reqwest::get(format!("{url}/jobs/{}", job.job.0)).await.unwrap().json().await.unwrap();
    assert_eq!(detail["state"], "retrying");
    jobs.shutdown().await;
}
