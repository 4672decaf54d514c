//! Networked commands: `serve`, `get`, `put`.
//!
//! Each builds a tokio runtime of its own; the work is done by `artifact-http` (the server,
//! the `Downloader`). What lives here is the command-line face: flags to configuration, a
//! progress bar on a terminal, results as text or JSON, errors to exit statuses.

use std::{
    fs,
    io::{self, IsTerminal, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use artifact_cache::{ArtifactId, Cache, Options};
use artifact_http::{Downloader, Error, Progress, ProgressEvent, ServerConfig, UploadOutcome};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    Context,
    cli::{GetArgs, PutArgs, ServeArgs},
    cmd::{
        local::{count, exit_for, open, parse_id},
        pack::{clean, prepare_dest},
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
    runtime()?.block_on(async move {
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
        let url = format!("http://{addr}");
        // One line on stdout, flushed, so that scripts (and tests) can wait for it.
        let mut out = io::stdout().lock();
        if ctx.json {
            writeln!(out, "{}", serde_json::json!({ "url": url, "root": root }))?;
        } else {
            writeln!(out, "serving {root} on {url}")?;
        }
        out.flush()?;
        drop(out);
        let app =
            jobs.with_metrics(artifact_http::router(cache, config.clone()).merge(jobs.router()));
        // On the signal, the jobs stop at once (running ones are left queued), while requests
        // in flight get the grace period.
        let stop_jobs = jobs.clone();
        let shutdown = async move {
            shutdown.await;
            stop_jobs.shutdown().await;
        };
        let served = artifact_http::serve_router(listener, app, &config, shutdown).await;
        jobs.shutdown().await;
        served.context("serving")
    })
}

pub(crate) fn get(ctx: &Context, args: GetArgs) -> anyhow::Result<()> {
    #[cfg(feature = "store")]
    if args.from.iter().any(|url| crate::cmd::store::is_store_url(url)) {
        return crate::cmd::store::get(ctx, args);
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
    let mut builder = Downloader::builder()
        .endpoints(&args.from)
        .timeout(timeout)
        .low_speed_limit(speed_limit, speed_time)
        .token(token);
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
        place(downloaded.path(), out)?;
    }
    let meta = downloaded.metadata();
    if ctx.json {
        let result = serde_json::json!({
            "id": id,
            "transferred": downloaded.transferred(),
            "endpoint": downloaded.endpoint(),
            "attempts": downloaded.attempts(),
            "stream_bytes": downloaded.stream_bytes(),
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

pub(crate) fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<()> {
    #[cfg(feature = "store")]
    if crate::cmd::store::is_store_url(&args.to) {
        return crate::cmd::store::put(ctx, args);
    }
    let id = parse_id(&args.id)?;
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let cache = open(ctx)?;
    let downloader =
        Downloader::builder().endpoint(&args.to).token(token).build().map_err(net_failure)?;
    let uploaded =
        client_runtime()?.block_on(downloader.upload(&cache, &id)).map_err(net_failure)?;
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
            _ => println!("{} already has {id}", uploaded.endpoint),
        }
    }
    Ok(())
}

/// The server's runtime: a worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")
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
        Error::NotFound { .. } => Exit::NotFound,
        Error::DigestMismatch { .. } => Exit::Corrupt,
        Error::Cache { source, .. } => exit_for(source),
        Error::Status { status: 409 | 503, .. } => Exit::Busy,
        _ => Exit::Failure,
    };
    fail(exit, err)
}

fn progress_bar(id: &ArtifactId) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(format!("{id}: connecting"));
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
        ProgressEvent::Failed { error, retry_in } => {
            let next = retry_in.map(|d| format!("; retrying in {d:.1?}")).unwrap_or_default();
            bar.println(format!("{}: {error}{next}", p.endpoint));
        }
        _ => {}
    }
}

/// Places a copy of the artifact's tree at `out` (created if absent, refused unless empty).
/// Each file is a reflink where the filesystem can make one, else a hard link to the cache's
/// file, else a copy; all are read-only (0444, or 0555 for executables) like the cache's own,
/// since a hard link shares the file with the cache (`artifact verify` tells if one was
/// changed anyway). On failure, what was placed is removed.
pub(crate) fn place(tree: &Path, out: &Path) -> anyhow::Result<()> {
    let created = prepare_dest(out, "get --out")?;
    copy_tree(tree, out).map_err(|err| {
        if let Err(cleanup) = clean(out, created) {
            tracing::warn!(path = %out.display(), error = %cleanup, "could not clean up");
        }
        err.context(format!("placing a copy in {}", out.display()))
    })
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(from.to_owned(), to.to_owned())];
    while let Some((from, to)) = stack.pop() {
        for entry in fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
            let entry = entry?;
            let (source, dest) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type()?;
            if kind.is_dir() {
                fs::create_dir(&dest).with_context(|| format!("creating {}", dest.display()))?;
                stack.push((source, dest));
            } else if kind.is_symlink() {
                // Inside the tree, relative: the cache checked it when the artifact arrived.
                let target = fs::read_link(&source)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
            } else {
                place_file(&source, &dest)
                    .with_context(|| format!("placing {}", dest.display()))?;
            }
        }
    }
    Ok(())
}

/// Reflink, else hard link, else copy `source` to `dest`, read-only.
fn place_file(source: &Path, dest: &Path) -> io::Result<()> {
    if reflink_copy::reflink(source, dest).is_err() {
        // A reflink attempt can leave an empty file behind.
        let _ = fs::remove_file(dest);
        if fs::hard_link(source, dest).is_ok() {
            return Ok(());
        }
        fs::copy(source, dest)?;
    }
    let exec = fs::metadata(source)?.permissions().mode() & 0o111 != 0;
    fs::set_permissions(dest, fs::Permissions::from_mode(if exec { 0o555 } else { 0o444 }))
}
