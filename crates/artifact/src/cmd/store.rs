//! Object-store URLs on the command line (feature `store`): `put --to` a store, `ls --from` a
//! store, and the store of `serve --store`. (`get --from` takes stores among its endpoints
//! through the `Downloader`: see `cmd::net`.)

use std::io::Write;

use anyhow::anyhow;
use artifact_cache::ArtifactId;
use artifact_store::{Error, Store, UploadOutcome};

use crate::{
    Context,
    cli::{LsArgs, PutArgs},
    cmd::local::{exit_for, open, parse_id},
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
