//! `artifact jobs pull|push|ls|show|cancel|wait`: a client of a server's `/jobs` API; and the
//! transfer-job settings of `artifact serve`.

use std::{
    io::{self, IsTerminal, Write},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use artifact_http::ServerConfig;
use artifact_jobs::JobsConfig;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::{
    Context,
    cli::{JobsCommand, JobsServer, ServeJobsArgs},
    exit::{Exit, fail},
    size::{human, parse_rate},
};

/// How often `jobs wait` asks the server.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// The job settings of `serve`: its flags, and the server's tokens.
pub(crate) fn serve_config(
    args: &ServeJobsArgs,
    server: &ServerConfig,
) -> anyhow::Result<JobsConfig> {
    let usage = |msg: String| fail(Exit::Usage, anyhow!(msg));
    let per_second =
        |flag: &str, text: &str| parse_rate(text).map_err(|err| usage(format!("{flag}: {err}")));
    if args.jobs_concurrency == 0 {
        return Err(usage("--jobs-concurrency must be at least 1".into()));
    }
    let mut config = JobsConfig::default()
        .keep(args.jobs_keep.into())
        .max_queued(args.jobs_max_queued)
        .concurrency(args.jobs_concurrency)
        .token(server.token.clone())
        .token_for_reads(server.token_for_reads);
    if let Some(text) = &args.rate_limit {
        config = config.global_rate(Some(per_second("--rate-limit", text)?));
    }
    for rate in &args.rates {
        let (url, size) = rate
            .rsplit_once('=')
            .ok_or_else(|| usage(format!("--rate {rate:?}: expected URL=SIZE/s")))?;
        config = config.rate(url, per_second("--rate", size)?);
    }
    Ok(config)
}

/// Runs one `jobs` subcommand.
pub(crate) fn run(ctx: &Context, command: JobsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        match command {
            JobsCommand::Pull(args) => {
                let body = json!({"action": "pull", "ids": args.ids, "from": args.from, "priority": args.priority});
                submit(ctx, &Client::new(&args.server)?, body).await
            }
            JobsCommand::Push(args) => {
                let body = json!({"action": "push", "ids": args.ids, "to": args.to, "priority": args.priority});
                submit(ctx, &Client::new(&args.server)?, body).await
            }
            JobsCommand::Ls(args) => ls(ctx, &Client::new(&args.server)?, args.state).await,
            JobsCommand::Show(args) => {
                let job = Client::new(&args.server)?.job(&args.job).await?;
                if ctx.json {
                    println!("{job}");
                } else {
                    show(&job);
                }
                Ok(())
            }
            JobsCommand::Cancel(args) => {
                let client = Client::new(&args.server)?;
                let job = job_number(&args.job)?;
                client.send(client.http.delete(client.url(&format!("/jobs/{job}")))).await?;
                if ctx.json {
                    println!("{}", json!({"job": job, "state": "cancelled"}));
                }
                Ok(())
            }
            JobsCommand::Wait(args) => wait(ctx, &Client::new(&args.server)?, &args.jobs).await,
        }
    })
}

/// An HTTP client that trusts only the certificate authorities in the PEM file `pem`.
fn trusting(pem: &std::path::Path) -> anyhow::Result<reqwest::Client> {
    #[cfg(feature = "tls")]
    {
        let text = std::fs::read(pem)
            .with_context(|| format!("reading the CA certificate {}", pem.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&text)
            .map_err(|err| fail(Exit::Usage, anyhow::Error::new(err)))?;
        if certs.is_empty() {
            return Err(fail(Exit::Usage, anyhow!("no certificate in {}", pem.display())));
        }
        reqwest::Client::builder().tls_certs_only(certs).build().context("building the HTTP client")
    }
    #[cfg(not(feature = "tls"))]
    Err(fail(
        Exit::Usage,
        anyhow!("this build of artifact has no TLS (feature `tls`) for {}", pem.display()),
    ))
}

/// A client of one server's `/jobs`.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(server: &JobsServer) -> anyhow::Result<Client> {
        let token = server.token_file.as_deref().map(crate::cmd::net::read_token).transpose()?;
        let base = crate::cmd::net::with_scheme(server.server.trim_end_matches('/'));
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(fail(Exit::Usage, anyhow!("--server {base:?}: expected an http:// URL")));
        }
        let http = match &server.ca_cert {
            Some(pem) => trusting(pem)?,
            None => reqwest::Client::new(),
        };
        Ok(Client { http, base, token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request`; turns an error answer into an error with the exit status it means.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .with_context(|| format!("asking {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reason = body["error"].as_str().unwrap_or("no reason given").to_owned();
        let exit = match status.as_u16() {
            400 => Exit::Usage,
            404 => Exit::NotFound,
            503 => Exit::Busy,
            _ => Exit::Failure,
        };
        Err(fail(exit, anyhow!("{} answered {status}: {reason}", self.base)))
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(request).await?;
        response.json().await.with_context(|| format!("reading the answer of {}", self.base))
    }

    async fn job(&self, job: &str) -> anyhow::Result<Value> {
        let job = job_number(job)?;
        self.json(self.http.get(self.url(&format!("/jobs/{job}")))).await
    }
}

fn job_number(text: &str) -> anyhow::Result<u64> {
    text.parse().map_err(|_| fail(Exit::Usage, anyhow!("bad job number {text:?}")))
}

async fn submit(ctx: &Context, client: &Client, body: Value) -> anyhow::Result<()> {
    let answer = client.json(client.http.post(client.url("/jobs")).json(&body)).await?;
    let mut out = io::stdout().lock();
    for job in answer["jobs"].as_array().into_iter().flatten() {
        if ctx.json {
            writeln!(out, "{job}")?;
        } else {
            writeln!(out, "{}\t{}\t{}", job["job"], text(&job["id"]), text(&job["state"]))?;
        }
    }
    Ok(())
}

async fn ls(ctx: &Context, client: &Client, state: Option<String>) -> anyhow::Result<()> {
    let state = state
        .map(|s| {
            s.parse::<artifact_jobs::State>()
                .map_err(|e| fail(Exit::Usage, anyhow!("--state: {e}")))
        })
        .transpose()?;
    let mut after: Option<i64> = None;
    let mut out = io::stdout().lock();
    loop {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(format!("state={state}"));
        }
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        let url = client.url(&format!("/jobs?{}", query.join("&")));
        let page = client.json(client.http.get(url)).await?;
        for job in page["jobs"].as_array().into_iter().flatten() {
            if ctx.json {
                writeln!(out, "{job}")?;
            } else {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    job["job"],
                    text(&job["state"]),
                    text(&job["action"]),
                    text(&job["id"]),
                    job["attempts"],
                    text(&job["endpoint"]),
                )?;
            }
        }
        match page["next"].as_i64() {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

fn show(job: &Value) {
    for key in [
        "job", "action", "id", "state", "attempts", "endpoint", "error", "created", "updated",
        "due",
    ] {
        if !job[key].is_null() {
            println!("{key}: {}", text(&job[key]));
        }
    }
    println!("bytes: {}", human(job["bytes"].as_u64().unwrap_or(0)));
    println!(
        "endpoints: {}",
        job["endpoints"].as_array().into_iter().flatten().map(text).collect::<Vec<_>>().join(" ")
    );
    for entry in job["log"].as_array().into_iter().flatten() {
        let note = entry["note"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
        println!("  {} {}{note}", text(&entry["at"]), text(&entry["state"]));
    }
}

/// A JSON value as plain text: strings without quotes, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

async fn wait(ctx: &Context, client: &Client, jobs: &[String]) -> anyhow::Result<()> {
    let numbers = jobs.iter().map(|j| job_number(j)).collect::<anyhow::Result<Vec<u64>>>()?;
    let bar = (!ctx.json && io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(numbers.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} jobs ended {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut ended: Vec<Option<Value>> = vec![None; numbers.len()];
    loop {
        let mut bytes = 0;
        for (i, job) in numbers.iter().enumerate() {
            if ended[i].is_some() {
                continue;
            }
            let current = client.job(&job.to_string()).await?;
            bytes += current["bytes"].as_u64().unwrap_or(0);
            if matches!(current["state"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
                ended[i] = Some(current);
            }
        }
        let done = ended.iter().filter(|e| e.is_some()).count();
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
            bar.set_message(format!("({} in running jobs)", human(bytes)));
        }
        if done == numbers.len() {
            break;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut out = io::stdout().lock();
    let mut all_succeeded = true;
    for job in ended.into_iter().flatten() {
        all_succeeded &= job["state"] == "succeeded";
        if ctx.json {
            writeln!(out, "{job}")?;
        } else {
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                job["job"],
                text(&job["state"]),
                text(&job["id"]),
                text(&job["error"])
            )?;
        }
    }
    if all_succeeded {
        Ok(())
    } else {
        Err(fail(Exit::Failure, anyhow!("not every job succeeded")))
    }
}
