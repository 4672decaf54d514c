//! Commands on the local cache: `add`, `ls`, `rm`, `gc`, `verify`.

use std::{io::Write, path::Path};

use anyhow::{Context as _, anyhow};
use artifact_cache::{ArtifactId, Cache, Error, Metadata};

use crate::{
    Context,
    cli::{AddArgs, GcArgs, IdArgs, LsArgs, VerifyArgs},
    exit::{Exit, fail},
    size::{human, parse_size},
};

/// The exit status that tells scripts what kind of cache failure `err` is.
pub(crate) fn exit_for(err: &Error) -> Exit {
    match err {
        Error::InvalidId(_) => Exit::Usage,
        Error::NotFound { .. } => Exit::NotFound,
        Error::Exists { .. } => Exit::Exists,
        Error::WriteLocked { .. } | Error::ReadLocked { .. } | Error::Timeout { .. } => Exit::Busy,
        Error::Corrupt { .. } => Exit::Corrupt,
        _ => Exit::Failure,
    }
}

/// Wraps a cache error with its exit status.
pub(crate) fn cache_failure(err: Error) -> anyhow::Error {
    let exit = exit_for(&err);
    fail(exit, err)
}

/// Parses an id given on the command line (a usage error if malformed).
pub(crate) fn parse_id(text: &str) -> anyhow::Result<ArtifactId> {
    text.parse().map_err(|err: artifact_cache::ParseIdError| fail(Exit::Usage, err))
}

/// Opens the cache at the context's root.
pub(crate) fn open(ctx: &Context) -> anyhow::Result<Cache> {
    Cache::open(&ctx.root).map_err(cache_failure)
}

pub(crate) fn add(ctx: &Context, args: AddArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    if !args.dir.is_dir() {
        return Err(fail(Exit::Usage, anyhow!("{} is not a directory", args.dir.display())));
    }
    let cache = open(ctx)?;
    let writer = cache.create(&id).map_err(cache_failure)?;
    let summary = import(&args.dir, writer.path())
        .with_context(|| format!("importing {} as {id}", args.dir.display()))?;
    let meta = writer.commit_with(&summary).map_err(cache_failure)?;
    if ctx.json {
        println!("{}", serde_json::to_string(&meta)?);
    } else {
        println!(
            "added {id}: {}, {}, {}, {}, digest {}",
            count(meta.files, "file"),
            count(meta.dirs, "dir"),
            count(meta.symlinks, "symlink"),
            human(meta.size),
            meta.digest
        );
    }
    Ok(())
}

/// `1 file`, `2 files`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Copies `source` into `dest` through a tar stream in memory (`send` | `receive`), so the
/// import obeys exactly the rules of a transfer (no special files, no symlink escaping the
/// tree, normalised modes) and yields the tree digest without reading the copy again.
fn import(source: &Path, dest: &Path) -> anyhow::Result<tarstream::Summary> {
    let (reader, writer) = std::io::pipe().context("making a pipe")?;
    let source = source.to_owned();
    let sender = std::thread::spawn(move || tarstream::send(&source, writer));
    let options = tarstream::ReceiveOptions::default().read_only(true);
    let received = tarstream::receive_with(dest, reader, &options);
    let sent = sender.join().map_err(|_| anyhow!("the sending thread panicked"))?;
    // If sending failed, the receiver saw a cut stream: the sender's error says why.
    let sent = sent.context("reading the directory")?;
    let received = received.context("copying into the cache")?;
    debug_assert_eq!(sent.digest, received.digest);
    Ok(received)
}

/// Every committed id, in order.
pub(crate) fn sorted_ids(cache: &Cache) -> anyhow::Result<Vec<ArtifactId>> {
    let mut ids = cache
        .list()
        .map_err(cache_failure)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cache_failure)?;
    ids.sort();
    Ok(ids)
}

pub(crate) fn ls(ctx: &Context, _args: LsArgs) -> anyhow::Result<()> {
    let cache = open(ctx)?;
    let ids = sorted_ids(&cache)?;
    let mut metas = Vec::with_capacity(ids.len());
    for id in ids {
        match cache.stat(&id) {
            Ok(meta) => metas.push(meta),
            // Removed since it was listed.
            Err(Error::NotFound { .. }) => {}
            Err(err) => {
                tracing::warn!(id = %id, error = %err, "cannot read metadata");
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if ctx.json {
        for meta in &metas {
            writeln!(out, "{}", serde_json::to_string(meta)?)?;
        }
        return Ok(());
    }
    let width = metas.iter().map(|m| m.id.to_string().len()).max().unwrap_or(2).max(2);
    writeln!(out, "{:<width$}  {:>10}  {:>8}  LAST USED", "ID", "SIZE", "FILES")?;
    for meta in &metas {
        writeln!(
            out,
            "{:<width$}  {:>10}  {:>8}  {}",
            meta.id.to_string(),
            human(meta.size),
            meta.files,
            humantime::format_rfc3339_seconds(meta.last_used)
        )?;
    }
    Ok(())
}

pub(crate) fn rm(ctx: &Context, args: IdArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    let cache = open(ctx)?;
    cache.remove(&id).map_err(cache_failure)?;
    if ctx.json {
        println!("{}", serde_json::json!({ "id": id, "removed": true }));
    } else {
        println!("removed {id}");
    }
    Ok(())
}

pub(crate) fn gc(ctx: &Context, args: GcArgs) -> anyhow::Result<()> {
    let max = match &args.max_size {
        Some(text) => Some(parse_size(text).map_err(|e| fail(Exit::Usage, anyhow!(e)))?),
        None => None,
    };
    let cache = open(ctx)?;
    let report = cache.gc(max).map_err(cache_failure)?;
    if ctx.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "evicted {} ({}), skipped {} in use, removed {}, {} and {}; the cache holds {} ({})",
            count(report.evicted.len() as u64, "artifact"),
            human(report.evicted_bytes),
            report.skipped_locked,
            count(report.leftovers_removed, "leftover"),
            count(report.stale_locks_removed, "stale lock"),
            count(report.quarantine_removed, "quarantined artifact"),
            count(report.usage.artifacts, "artifact"),
            human(report.usage.bytes),
        );
    }
    Ok(())
}

pub(crate) fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<()> {
    if args.repair {
        #[cfg(feature = "http")]
        return crate::cmd::scrub::verify_repair(ctx, args);
        #[cfg(not(feature = "http"))]
        return Err(fail(
            Exit::Usage,
            anyhow!("this build of artifact has no HTTP support (feature `http`)"),
        ));
    }
    let cache = open(ctx)?;
    if let Some(id) = &args.id {
        let id = parse_id(id)?;
        let result = cache.verify(&id);
        report(ctx, &id, &result)?;
        return result.map(drop).map_err(cache_failure);
    }
    let ids = sorted_ids(&cache)?;
    let (mut corrupt, mut busy, mut failed) = (0, 0, 0);
    for id in &ids {
        let result = cache.verify(id);
        match &result {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(Error::Corrupt { .. }) => corrupt += 1,
            Err(err) if err.is_locked() => busy += 1,
            Err(_) => failed += 1,
        }
        report(ctx, id, &result)?;
    }
    if corrupt > 0 {
        return Err(fail(
            Exit::Corrupt,
            anyhow!("{corrupt} of {} artifacts are corrupt", ids.len()),
        ));
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} artifacts could not be verified", ids.len()));
    }
    if busy > 0 {
        return Err(fail(
            Exit::Busy,
            anyhow!("{busy} of {} artifacts were busy and not verified", ids.len()),
        ));
    }
    Ok(())
}

/// Prints the outcome of verifying `id`: one line per artifact (a JSON object with `--json`).
fn report(ctx: &Context, id: &ArtifactId, result: &Result<Metadata, Error>) -> anyhow::Result<()> {
    let mut line = serde_json::json!({ "id": id });
    let text = match result {
        Ok(meta) => {
            line["status"] = "ok".into();
            line["digest"] = meta.digest.to_string().into();
            format!("ok (digest {})", meta.digest)
        }
        Err(Error::NotFound { .. }) => {
            line["status"] = "absent".into();
            "absent".to_owned()
        }
        Err(Error::Corrupt { expected, actual, .. }) => {
            line["status"] = "corrupt".into();
            line["expected"] = expected.to_string().into();
            line["actual"] = actual.to_string().into();
            format!("CORRUPT: digest {actual}, expected {expected}")
        }
        Err(err) => {
            let status = if err.is_locked() { "busy" } else { "error" };
            let chain = chain(err);
            line["status"] = status.into();
            line["error"] = chain.clone().into();
            format!("{status}: {chain}")
        }
    };
    if ctx.json {
        println!("{line}");
    } else {
        println!("{id}: {text}");
    }
    Ok(())
}

/// `err` and its sources on one line: "what failed: because: because".
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
