//! Networked commands: `serve`, `get`, `put`.
//!
//! Each builds a tokio runtime of its own; the work is done by `artifact-http` (the server,
//! the `Downloader`). What lives here is the command-line face: flags to configuration, a
//! progress bar on a terminal, results as text or JSON, errors to exit statuses.

use std::{
    fs,
    io::{self, IsTerminal, Write},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use artifact_cache::{ArtifactId, Cache, Options};
use artifact_http::{
    Downloader, DownloaderBuilder, Error, Progress, ProgressEvent, ServerConfig, UploadOutcome,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    Context,
    cli::{GetArgs, PutArgs, ServeArgs, TransferArgs},
    cmd::{
        local::{count, exit_for, open, parse_id},
        place::{Placement, check_out, place},
    },
    exit::{Exit, fail},
    size::{human, parse_size},
};

pub(crate) fn serve(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let max_bytes = match &args.max_size {
        Some(text) => Some(parse_size(text).map_err(|e| fail(Exit::Usage, anyhow!(e)))?),
        None => None,
    };
    let small_cache = parse_size(&args.small_cache)
        .map_err(|e| fail(Exit::Usage, anyhow!("--small-cache: {e}")))?;
    for (flag, value) in [
        ("--max-streams", args.max_streams),
        ("--max-streams-per-peer", args.max_streams_per_peer),
        ("--max-connections", args.max_connections),
        ("--max-connections-per-peer", args.max_connections_per_peer),
    ] {
        if value == 0 {
            return Err(fail(Exit::Usage, anyhow!("{flag} must be at least 1")));
        }
    }
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let cache = Cache::open_with(&ctx.root, Options::default().max_bytes(max_bytes))
        .map_err(crate::cmd::local::cache_failure)?;
    let config = ServerConfig::default()
        .max_streams(args.max_streams)
        .max_streams_per_peer(args.max_streams_per_peer)
        .max_connections(args.max_connections)
        .max_connections_per_peer(args.max_connections_per_peer)
        .token(token)
        .token_for_reads(args.token_for_reads)
        .small_cache_bytes(small_cache);
    let (config, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (with_tls(config, cert, key)?, "https"),
        _ => (config, "http"),
    };
    let jobs_config = crate::cmd::jobs::serve_config(&args.jobs, &config)?;
    #[cfg(feature = "store")]
    let store = args.store.as_deref().map(crate::cmd::store::open_store).transpose()?;
    #[cfg(not(feature = "store"))]
    if args.store.is_some() {
        return Err(fail(
            Exit::Usage,
            anyhow!("this build of artifact has no store support (feature `store`)"),
        ));
    }
    let scrubber = crate::cmd::scrub::scrubber(
        &args.scrub,
        &cache,
        config.token.clone(),
        #[cfg(feature = "store")]
        store.as_ref(),
    )?;
    runtime(args.threads)?.block_on(async move {
        // The bucket is checked once: a bad one is one clear line and a non-zero exit.
        #[cfg(feature = "store")]
        let config = match store {
            Some(store) => {
                crate::cmd::store::check(&store).await?;
                config.store(Some(store))
            }
            None => config,
        };
        // Before the address is announced: a SIGTERM right after it must stop us cleanly.
        let shutdown = artifact_http::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the listen address")?;
        let jobs = artifact_jobs::Jobs::start(cache.clone(), jobs_config)
            .await
            .context("starting the transfer jobs")?;
        let root = fs::canonicalize(cache.root()).unwrap_or_else(|_| cache.root().to_owned());
        let root = root.display().to_string();
        let url = format!("{scheme}://{addr}");
        // One line on stdout, flushed, so that scripts (and tests) can wait for it.
        let mut out = io::stdout().lock();
        if ctx.json {
            writeln!(out, "{}", serde_json::json!({ "url": url, "root": root }))?;
        } else {
            writeln!(out, "serving {root} on {url}")?;
        }
        out.flush()?;
        drop(out);
        let config = config.scrub(scrubber.clone());
        // Aborted after the server stops, which stops a walk under way at its next read.
        let scrubbing = scrubber.map(|scrubber| tokio::spawn(scrubber.run()));
        // The jobs' layer passes `GET` and `HEAD /artifact` through untouched, so those can
        // take the endpoints' hot path (`serve_endpoints`).
        let endpoints = artifact_http::Endpoints::new(cache, config);
        let app = jobs.with_metrics(endpoints.router().merge(jobs.router()));
        // On the signal, the jobs stop at once (running ones are left queued), while requests
        // in flight get the grace period.
        let stop_jobs = jobs.clone();
        let shutdown = async move {
            shutdown.await;
            stop_jobs.shutdown().await;
        };
        let served = artifact_http::serve_endpoints(listener, &endpoints, app, shutdown).await;
        if let Some(scrubbing) = scrubbing {
            scrubbing.abort();
        }
        jobs.shutdown().await;
        served.context("serving")
    })
}

pub(crate) fn get(ctx: &Context, mut args: GetArgs) -> anyhow::Result<()> {
    args.from = args.from.iter().map(|url| with_scheme(url)).collect();
    if let Some(out) = &args.out {
        check_out(out)?;
    }
    let id = parse_id(&args.id)?;
    let timeout = match args.timeout {
        Some(secs) if !(secs.is_finite() && secs > 0.0) => {
            return Err(fail(Exit::Usage, anyhow!("--timeout must be a positive number")));
        }
        Some(secs) => Some(Duration::from_secs_f64(secs)),
        None => None,
    };
    let speed_limit = match &args.speed_limit {
        Some(text) => parse_size(text).map_err(|e| fail(Exit::Usage, anyhow!(e)))?,
        None => artifact_http::DEFAULT_LOW_SPEED,
    };
    let speed_time = match args.speed_time {
        Some(secs) if !(secs.is_finite() && secs > 0.0) => {
            return Err(fail(Exit::Usage, anyhow!("--speed-time must be a positive number")));
        }
        Some(secs) => Duration::from_secs_f64(secs),
        None => artifact_http::DEFAULT_LOW_SPEED_WINDOW,
    };
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let cache = open(ctx)?;
    let bar = (!ctx.json && io::stderr().is_terminal()).then(|| progress_bar(&id));
    let mut builder = client(&args.transfer)?
        .endpoints(&args.from)
        .timeout(timeout)
        .low_speed_limit(speed_limit, speed_time)
        .token(token)
        .require_digest(!args.allow_no_digest);
    match args.sources {
        Some(0) => return Err(fail(Exit::Usage, anyhow!("--sources must be at least 1"))),
        Some(n) => builder = builder.sources(n),
        None => {}
    }
    if let Some(bar) = &bar {
        let bar = bar.clone();
        builder = builder.progress(move |p| show(&bar, p));
    }
    let downloader = builder.build().map_err(net_failure)?;
    let downloaded = client_runtime()?.block_on(downloader.download(&cache, &id));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let downloaded = downloaded.map_err(net_failure)?;
    if let Some(out) = &args.out {
        place(downloaded.path(), out, placement(&args))?;
    }
    let meta = downloaded.metadata();
    if ctx.json {
        let result = serde_json::json!({
            "id": id,
            "transferred": downloaded.transferred(),
            "endpoint": downloaded.endpoint(),
            "attempts": downloaded.attempts(),
            "stream_bytes": downloaded.stream_bytes(),
            "sources": downloaded.sources().iter().map(|(endpoint, bytes)| {
                serde_json::json!({ "endpoint": &**endpoint, "bytes": bytes })
            }).collect::<Vec<_>>(),
            "refetched_bytes": downloaded.refetched_bytes(),
            "resumes": downloaded.resumes(),
            "verified": downloaded.verified(),
            "seconds": downloaded.elapsed().as_secs_f64(),
            "size": meta.size,
            "files": meta.files,
            "digest": meta.digest.to_string(),
            "path": downloaded.path(),
            "out": args.out,
        });
        println!("{result}");
    } else if downloaded.transferred() {
        let secs = downloaded.elapsed().as_secs_f64();
        println!(
            "got {id} from {}: {}, {} in {secs:.2} s ({}/s)",
            downloaded.endpoint().unwrap_or("?"),
            count(meta.files, "file"),
            human(meta.size),
            human((downloaded.stream_bytes() as f64 / secs.max(1e-6)) as u64),
        );
    } else {
        println!(
            "{id} was already in the cache: {}, {}",
            count(meta.files, "file"),
            human(meta.size)
        );
    }
    Ok(())
}

pub(crate) fn put(ctx: &Context, mut args: PutArgs) -> anyhow::Result<()> {
    args.to = with_scheme(&args.to);
    #[cfg(feature = "store")]
    if crate::cmd::store::is_store_url(&args.to) {
        return crate::cmd::store::put(ctx, args);
    }
    let id = parse_id(&args.id)?;
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let cache = open(ctx)?;
    let terminal = !ctx.json && io::stderr().is_terminal();
    // The bar needs the tree's size, known once the URL has been checked and the cache read.
    let shown = std::sync::Arc::new(std::sync::OnceLock::<ProgressBar>::new());
    let mut builder = client(&args.transfer)?.endpoint(&args.to).token(token);
    if terminal {
        let shown = shown.clone();
        builder = builder.progress(move |p| {
            if let Some(bar) = shown.get() {
                show(bar, p);
            }
        });
    }
    let downloader = builder.build().map_err(net_failure)?;
    let size = cache.get(&id).map_err(crate::cmd::local::cache_failure)?.metadata().size;
    let bar = terminal.then(|| {
        shown.get_or_init(|| upload_bar(&id, &args.to, (!args.transfer.zstd).then_some(size)))
    });
    let uploaded = client_runtime()?.block_on(downloader.upload(&cache, &id));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let uploaded = uploaded.map_err(net_failure)?;
    if ctx.json {
        let result = serde_json::json!({
            "id": id,
            "endpoint": uploaded.endpoint,
            "created": uploaded.outcome == UploadOutcome::Created,
            "attempts": uploaded.attempts,
            "stream_bytes": uploaded.bytes,
            "digest": uploaded.metadata.digest.to_string(),
        });
        println!("{result}");
    } else {
        match uploaded.outcome {
            UploadOutcome::Created => {
                println!("put {id} to {}: {}", uploaded.endpoint, human(uploaded.bytes));
            }
            _ => println!("{} already has {id}: nothing to send", uploaded.endpoint),
        }
    }
    Ok(())
}

/// The server's runtime: `threads` workers, one per core for 0.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.enable_all().build().context("starting tokio")
}

/// A transfer's runtime: one thread for the HTTP side (the tar side runs on a blocking
/// thread of its own), so no worker threads wake each other for every chunk.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")
}

/// Reads a bearer token: the file's content without surrounding whitespace, not empty.
pub(crate) fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail(Exit::Usage, anyhow!("the token file {} is empty", path.display())));
    }
    Ok(token.to_owned())
}

/// Wraps a network error with the exit status that tells scripts what kind it is.
fn net_failure(err: Error) -> anyhow::Error {
    let exit = match &err {
        Error::InvalidEndpoint { .. } => Exit::Usage,
        #[cfg(feature = "tls")]
        Error::Tls { .. } => Exit::Usage,
        Error::NotFound { .. } => Exit::NotFound,
        Error::DigestMismatch { .. } => Exit::Corrupt,
        Error::Cache { source, .. } => exit_for(source),
        Error::Status { status: 409 | 503, .. } => Exit::Busy,
        #[cfg(feature = "store")]
        Error::Store { source, .. } => match &**source {
            artifact_store::Error::Cache { source, .. } => exit_for(source),
            source if source.is_corrupt() => Exit::Corrupt,
            _ => Exit::Failure,
        },
        _ => Exit::Failure,
    };
    fail(exit, err)
}

fn progress_bar(id: &ArtifactId) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(format!("{id}: connecting"));
    // Drawn at once, so even a quick download shows what it was doing.
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The bar of `put`: bytes sent against the tree's size (without zstd, where the stream is a
/// little longer than the tree, so it ends near full), else a spinner with the bytes sent.
fn upload_bar(id: &ArtifactId, to: &str, size: Option<u64>) -> ProgressBar {
    let (bar, template) = match size {
        Some(size) => (
            ProgressBar::new(size),
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (ProgressBar::new_spinner(), "{spinner} {msg} {bytes} {bytes_per_sec}"),
    };
    let style = ProgressStyle::with_template(template).expect("a valid template");
    let bar = bar.with_style(style).with_message(format!("{id} to {to}"));
    // Drawn at once, so even a quick upload shows what it was doing.
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Updates the bar from a download's progress events.
fn show(bar: &ProgressBar, p: &Progress) {
    match &p.event {
        ProgressEvent::Started => {
            // The stream is about 512 bytes per entry longer than the content; the length
            // is exact when the server sends it.
            if let Some(total) = p.total.or(p.tree_bytes) {
                bar.set_length(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("a valid template"),
                );
            }
            bar.set_position(0);
            bar.set_message(format!("{} from {} (attempt {})", p.id, p.endpoint, p.attempt));
        }
        ProgressEvent::Received => bar.set_position(p.bytes),
        // The log has a line for each failed attempt: the bar only says what comes next.
        ProgressEvent::Failed { retry_in: Some(pause), .. } => {
            bar.set_message(format!(
                "{}: attempt {} failed; retrying in {pause:.1?}",
                p.id, p.attempt
            ));
        }
        _ => {}
    }
}

/// A URL given without a scheme (`host:port`) means `http://host:port`.
pub(crate) fn with_scheme(url: &str) -> String {
    if url.contains("://") { url.to_owned() } else { format!("http://{url}") }
}

/// The `--out` placement `get` was asked for.
pub(crate) fn placement(args: &GetArgs) -> Placement {
    if args.link { Placement::Link } else { Placement::Copy }
}

/// A downloader builder with the transfer flags of `get` and `put` applied.
pub(crate) fn client(args: &TransferArgs) -> anyhow::Result<DownloaderBuilder> {
    let builder = Downloader::builder();
    #[cfg(feature = "zstd")]
    let builder = builder.zstd(args.zstd);
    #[cfg(not(feature = "zstd"))]
    if args.zstd {
        return Err(fail(
            Exit::Usage,
            anyhow!("this build of artifact has no zstd (feature `zstd`)"),
        ));
    }
    #[cfg(feature = "tls")]
    let builder = match &args.ca_cert {
        Some(pem) => builder.ca_cert(pem),
        None => builder,
    };
    #[cfg(not(feature = "tls"))]
    if args.ca_cert.is_some() {
        return Err(fail(
            Exit::Usage,
            anyhow!("this build of artifact has no TLS (feature `tls`)"),
        ));
    }
    Ok(builder)
}

/// `config` serving HTTPS with the certificate and key of `serve --tls-cert/--tls-key`.
fn with_tls(config: ServerConfig, cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    #[cfg(feature = "tls")]
    {
        let tls = artifact_http::TlsConfig::from_pem_files(cert, key)
            .map_err(|err| fail(Exit::Usage, err))?;
        Ok(config.tls(Some(tls)))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (config, cert, key);
        Err(fail(Exit::Usage, anyhow!("this build of artifact has no TLS (feature `tls`)")))
    }
}
