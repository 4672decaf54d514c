//! Scrub and repair: the `serve --scrub-interval` flags into a `Scrubber`, and
//! `verify --repair --from URL`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use artifact_cache::{ArtifactId, Cache, Error};
use artifact_http::{Downloader, ScrubConfig, Scrubber};

use crate::{
    Context,
    cli::{ServeScrubArgs, VerifyArgs},
    cmd::{
        local::{cache_failure, chain, open, parse_id, sorted_ids},
        net::{client, read_token, with_scheme},
    },
    exit::{Exit, fail},
    size::parse_rate,
};

/// How long `verify --repair` waits for readers of a corrupt artifact before giving up on
/// quarantining it.
const QUARANTINE_WAIT: Duration = Duration::from_secs(10);

/// The scrubber `serve`'s flags ask for (none without `--scrub-interval`): repairing from
/// `--repair-from`, then the store, with the server's token.
pub(crate) fn scrubber(
    args: &ServeScrubArgs,
    cache: &Cache,
    token: Option<String>,
    #[cfg(feature = "store")] store: Option<&artifact_store::Store>,
) -> anyhow::Result<Option<Scrubber>> {
    let usage = |msg: String| fail(Exit::Usage, anyhow!(msg));
    let Some(interval) = args.scrub_interval else { return Ok(None) };
    let interval: Duration = interval.into();
    if interval.is_zero() {
        return Err(usage("--scrub-interval must be positive".into()));
    }
    let mut config = ScrubConfig::default().interval(interval);
    if let Some(text) = &args.scrub_rate {
        let rate = parse_rate(text).map_err(|err| usage(format!("--scrub-rate: {err}")))?;
        config = config.rate(rate);
    }
    let scrubber = Scrubber::new(cache.clone(), config);
    let builder = Downloader::builder().endpoints(args.repair_from.iter().map(|u| with_scheme(u)));
    #[cfg(feature = "store")]
    let (builder, has_store) = match store {
        Some(store) => (builder.store(store.clone()), true),
        None => (builder, false),
    };
    #[cfg(not(feature = "store"))]
    let has_store = false;
    if args.repair_from.is_empty() && !has_store {
        return Ok(Some(scrubber));
    }
    let downloader = builder.token(token).build().map_err(|err| fail(Exit::Usage, err))?;
    Ok(Some(scrubber.repair_from(downloader)))
}

/// `artifact verify --repair --from URL`: verifies, quarantines what is corrupt and fetches it
/// again; one line per artifact (a JSON object with `--json`).
pub(crate) fn verify_repair(ctx: &Context, args: VerifyArgs) -> anyhow::Result<()> {
    let cache = open(ctx)?;
    let single = args.id.as_deref().map(parse_id).transpose()?;
    let ids = match single {
        Some(id) => vec![id],
        None => sorted_ids(&cache)?,
    };
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let downloader = client(&args.transfer)?
        .endpoints(args.from.iter().map(|url| with_scheme(url)))
        .token(token)
        .build()
        .map_err(|err| fail(Exit::Usage, err))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let mut tally = Tally::default();
    runtime.block_on(async {
        for id in &ids {
            let outcome = repair_one(&cache, &downloader, *id).await;
            tally.count(&outcome);
            print(ctx, id, &outcome);
        }
    });
    let total = ids.len();
    if let Some(id) = single
        && tally.absent > 0
    {
        return Err(cache_failure(Error::NotFound { id }));
    }
    if tally.unrepaired > 0 {
        let msg =
            anyhow!("{} of {total} artifacts are corrupt and were not repaired", tally.unrepaired);
        return Err(fail(Exit::Corrupt, msg));
    }
    if tally.failed > 0 {
        return Err(anyhow!(
            "{} of {total} artifacts could not be checked or quarantined",
            tally.failed
        ));
    }
    if tally.busy > 0 {
        return Err(fail(Exit::Busy, anyhow!("{} of {total} artifacts were busy", tally.busy)));
    }
    Ok(())
}

/// What became of one artifact.
#[derive(Debug)]
enum Outcome {
    /// It matched its digest.
    Ok(tarstream::Digest),
    Absent,
    /// Being written, or its readers outlasted the wait (text: why).
    Busy(String),
    /// Corrupt, quarantined and fetched again.
    Repaired {
        reason: String,
        endpoint: String,
    },
    /// Corrupt and quarantined, but not fetched again.
    Quarantined {
        reason: String,
        error: String,
    },
    /// It could not be checked or quarantined.
    Failed(String),
}

/// How many artifacts ended each way that makes the command fail.
#[derive(Default)]
struct Tally {
    absent: usize,
    unrepaired: usize,
    failed: usize,
    busy: usize,
}

impl Tally {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Absent => self.absent += 1,
            Outcome::Quarantined { .. } => self.unrepaired += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Busy(_) => self.busy += 1,
            Outcome::Ok(_) | Outcome::Repaired { .. } => {}
        }
    }
}

async fn repair_one(cache: &Cache, downloader: &Downloader, id: ArtifactId) -> Outcome {
    let reader = cache.clone();
    let checked = tokio::task::spawn_blocking(move || reader.verify(&id)).await;
    let checked = match checked {
        Ok(checked) => checked,
        Err(err) => return Outcome::Failed(err.to_string()),
    };
    let reason = match checked {
        Ok(meta) => return Outcome::Ok(meta.digest),
        Err(Error::NotFound { .. }) => return Outcome::Absent,
        Err(err) if err.is_locked() => return Outcome::Busy(chain(&err)),
        Err(Error::Corrupt { expected, actual, .. }) => {
            format!("tree digest is {actual}, expected {expected}")
        }
        Err(err @ (Error::Digest { .. } | Error::BadMetadata { .. })) => {
            format!("unreadable: {}", chain(&err))
        }
        Err(err) => return Outcome::Failed(chain(&err)),
    };
    let quarantined = match cache.quarantine_wait(&id, &reason, QUARANTINE_WAIT).await {
        Ok(quarantined) => quarantined,
        Err(Error::NotFound { .. }) => return Outcome::Absent,
        Err(err) if err.is_retryable() => {
            return Outcome::Busy(format!("corrupt ({reason}), not quarantined: {}", chain(&err)));
        }
        Err(err) => {
            return Outcome::Failed(format!(
                "corrupt ({reason}), not quarantined: {}",
                chain(&err)
            ));
        }
    };
    match downloader.repair(cache, &quarantined).await {
        Ok(repaired) => Outcome::Repaired {
            reason,
            endpoint: repaired.endpoint().unwrap_or("another process, meanwhile").to_owned(),
        },
        Err(err) => Outcome::Quarantined { reason, error: chain(&err) },
    }
}

fn print(ctx: &Context, id: &ArtifactId, outcome: &Outcome) {
    let mut line = serde_json::json!({ "id": id });
    let text = match outcome {
        Outcome::Ok(digest) => {
            line["status"] = "ok".into();
            line["digest"] = digest.to_string().into();
            format!("ok (digest {digest})")
        }
        Outcome::Absent => {
            line["status"] = "absent".into();
            "absent".to_owned()
        }
        Outcome::Busy(why) => {
            line["status"] = "busy".into();
            line["error"] = why.clone().into();
            format!("busy: {why}")
        }
        Outcome::Repaired { reason, endpoint } => {
            line["status"] = "repaired".into();
            line["reason"] = reason.clone().into();
            line["endpoint"] = endpoint.clone().into();
            format!("CORRUPT ({reason}): quarantined, repaired from {endpoint}")
        }
        Outcome::Quarantined { reason, error } => {
            line["status"] = "quarantined".into();
            line["reason"] = reason.clone().into();
            line["error"] = error.clone().into();
            format!("CORRUPT ({reason}): quarantined, not repaired: {error}")
        }
        Outcome::Failed(error) => {
            line["status"] = "error".into();
            line["error"] = error.clone().into();
            format!("error: {error}")
        }
    };
    if ctx.json {
        println!("{line}");
    } else {
        println!("{id}: {text}");
    }
}
