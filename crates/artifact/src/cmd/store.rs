//! Object-store URLs on the command line (feature `store`): `get --from` lists that mix
//! stores and peers, `put --to` a store, `ls --from` a store, and the store of `serve --store`.

use std::{io::Write, time::Instant};

use anyhow::anyhow;
use artifact_cache::ArtifactId;
use artifact_store::{Error, Store, UploadOutcome};

use crate::{
    Context,
    cli::{GetArgs, LsArgs, PutArgs},
    cmd::local::{count, exit_for, open, parse_id},
    exit::{Exit, fail},
    size::human,
};

/// Whether `url` names an object store rather than an HTTP peer.
pub(crate) fn is_store_url(url: &str) -> bool {
    !(url.starts_with("http://") || url.starts_with("https://"))
}

/// Opens the store at `url` (a bad URL or configuration is a usage error).
pub(crate) fn open_store(url: &str) -> anyhow::Result<Store> {
    Store::open(url).map_err(store_failure)
}

/// Checks the store of `serve --store` once, before serving.
pub(crate) async fn check(store: &Store) -> anyhow::Result<()> {
    store.check().await.map_err(|err| {
        let exit = if err.is_auth() { Exit::Usage } else { Exit::Failure };
        fail(exit, anyhow::Error::new(err).context(format!("cannot use the store {}", store.url())))
    })
}

/// `get ID --from URL...` where some URLs are stores: each run of consecutive peers is one
/// `Downloader` (failover and retries among them), each store is tried on its own, in the
/// order given; a remote failure moves on to the next source, a local one stops.
pub(crate) fn get(ctx: &Context, args: GetArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    let cache = open(ctx)?;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow!(err).context("starting tokio"))?;
    let mut last: Option<anyhow::Error> = None;
    let mut rest = args.from.as_slice();
    while let Some(first) = rest.first() {
        let (source, result) = if is_store_url(first) {
            rest = &rest[1..];
            let store = open_store(first)?;
            let got = runtime.block_on(store.download(&cache, &id));
            match got {
                Ok(reader) => (first.clone(), Ok(reader.metadata().clone())),
                Err(err) if err.is_remote() => {
                    eprintln!("artifact: {first}: {err}");
                    (first.clone(), Err(store_failure(err)))
                }
                Err(err) => return Err(store_failure(err)),
            }
        } else {
            let peers = rest.iter().take_while(|url| !is_store_url(url)).count();
            let (group, tail) = rest.split_at(peers);
            rest = tail;
            let downloader = crate::cmd::net::client(&args.transfer)?
                .endpoints(group)
                .build()
                .map_err(|err| fail(Exit::Usage, err))?;
            match runtime.block_on(downloader.download(&cache, &id)) {
                Ok(downloaded) => (
                    downloaded.endpoint().unwrap_or(&group[0]).to_owned(),
                    Ok(downloaded.metadata().clone()),
                ),
                Err(err) if err.is_remote() => {
                    eprintln!("artifact: {}: {err}", group.join(", "));
                    let exit = if err.is_not_found() { Exit::NotFound } else { Exit::Failure };
                    (group[0].clone(), Err(fail(exit, err)))
                }
                Err(err) => return Err(fail(Exit::Failure, err)),
            }
        };
        match result {
            Ok(meta) => {
                if let Some(out) = &args.out {
                    let reader = cache.get(&id).map_err(crate::cmd::local::cache_failure)?;
                    let how = crate::cmd::net::placement(&args);
                    crate::cmd::place::place(reader.path(), out, how)?;
                }
                let secs = started.elapsed().as_secs_f64();
                if ctx.json {
                    let result = serde_json::json!({
                        "id": id,
                        "endpoint": source,
                        "seconds": secs,
                        "size": meta.size,
                        "files": meta.files,
                        "digest": meta.digest.to_string(),
                        "out": args.out,
                    });
                    println!("{result}");
                } else {
                    println!(
                        "got {id} from {source}: {}, {} in {secs:.2} s",
                        count(meta.files, "file"),
                        human(meta.size)
                    );
                }
                return Ok(());
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| fail(Exit::Usage, anyhow!("no source to get {id} from"))))
}

/// `put ID --to STORE`.
pub(crate) fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    let cache = open(ctx)?;
    let store = open_store(&args.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow!(err).context("starting tokio"))?;
    let uploaded = runtime.block_on(store.upload(&cache, &id)).map_err(store_failure)?;
    let created = uploaded.outcome == UploadOutcome::Created;
    if ctx.json {
        let result = serde_json::json!({
            "id": id,
            "endpoint": store.url(),
            "created": created,
            "stream_bytes": uploaded.bytes_sent,
            "key": store.key(&id),
        });
        println!("{result}");
    } else if created {
        println!("put {id} to {}: {}", store.url(), human(uploaded.bytes_sent));
    } else {
        println!("{} already has {id}", store.url());
    }
    Ok(())
}

/// `ls --from STORE`: the ids in a store, one per line.
pub(crate) fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<()> {
    let url = args.from.as_deref().expect("called for ls --from");
    if !is_store_url(url) {
        return Err(fail(
            Exit::Usage,
            anyhow!("ls --from takes a store URL (s3://, gs://, az://, file://), not {url}"),
        ));
    }
    let store = open_store(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow!(err).context("starting tokio"))?;
    let ids: Vec<ArtifactId> = runtime.block_on(store.list()).map_err(store_failure)?;
    let mut out = std::io::stdout().lock();
    for id in ids {
        if ctx.json {
            writeln!(out, "{}", serde_json::json!({ "id": id, "key": store.key(&id) }))?;
        } else {
            writeln!(out, "{id}")?;
        }
    }
    Ok(())
}

/// Wraps a store error with the exit status that tells scripts what kind it is.
pub(crate) fn store_failure(err: Error) -> anyhow::Error {
    let exit = match &err {
        Error::InvalidUrl { .. } | Error::Config { .. } => Exit::Usage,
        Error::Cache { source, .. } => exit_for(source),
        err if err.is_not_found() => Exit::NotFound,
        err if err.is_corrupt() => Exit::Corrupt,
        _ => Exit::Failure,
    };
    fail(exit, err)
}
