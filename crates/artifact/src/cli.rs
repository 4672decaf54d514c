//! The command line: every subcommand and flag of `artifact`, as clap definitions.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

/// Exit statuses, also printed in `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  failure (I/O, network, a hostile or corrupt stream, ...)
  2  usage error (a bad flag, a malformed id or size)
  3  not found (the artifact is absent locally, or on every remote asked)
  4  already exists (add; put exits 0 when the server already has the artifact)
  5  verification failed (the tree on disk no longer matches its digest)
  6  busy (another writer or reader holds the artifact's lock)";

/// Cache build and CI outputs on disk, and move them between machines as tar streams.
#[derive(Debug, Parser)]
#[command(name = "artifact", version, after_help = EXIT_CODES, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Parses the command line; every subcommand's `--help` ends with the exit statuses
    /// (those of `jobs` are its own). On a bad command line, prints why and exits 2.
    pub(crate) fn parse_with_exit_codes() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_subcommands(|sub| {
            if sub.get_after_help().is_some() { sub } else { sub.after_help(EXIT_CODES) }
        });
        Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit())
    }
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The cache directory [default: $ARTIFACT_ROOT, else `$XDG_CACHE_HOME/artifact`, else
    /// `$HOME/.cache/artifact`, else `./artifact-cache`].
    #[arg(long, global = true, value_name = "DIR", env = "ARTIFACT_ROOT")]
    pub(crate) root: Option<PathBuf>,
    /// Print results as JSON (one object per line) for scripts.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `artifact_http=debug` [default:
    /// $RUST_LOG, else `warn` (`info` for serve)].
    #[arg(long, global = true, value_name = "FILTER")]
    pub(crate) log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write DIR as one tar stream to standard output.
    Pack(PackArgs),
    /// Read one tar stream from standard input into DIR (created if absent; must be empty).
    Unpack(UnpackArgs),
    /// Import a directory into the local cache under ID.
    Add(AddArgs),
    /// List the artifacts in the local cache.
    Ls(LsArgs),
    /// Remove an artifact from the local cache.
    Rm(IdArgs),
    /// Evict least recently used artifacts until the cache fits its size bound; delete
    /// quarantined ones.
    Gc(GcArgs),
    /// Recompute tree digests and compare them with the recorded ones (all artifacts without ID);
    /// with --repair, quarantine corrupt ones and fetch them again.
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify(VerifyArgs),
    /// Run a cache server.
    Serve(ServeArgs),
    /// Download an artifact from one of several servers into the local cache.
    Get(GetArgs),
    /// Upload an artifact from the local cache to a server.
    Put(PutArgs),
    /// Transfer jobs on a server: queue pulls and pushes, list, show, cancel, wait.
    #[command(subcommand, after_help = JOBS_EXIT_CODES)]
    Jobs(JobsCommand),
}

#[derive(Debug, Args)]
pub(crate) struct PackArgs {
    /// The directory to pack.
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UnpackArgs {
    /// Where to unpack; created if absent, refused unless empty.
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The artifact id (hex, 1 to 64 bytes).
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The artifact id (hex, 1 to 64 bytes).
    pub(crate) id: String,
    /// The directory to import (copied; the original is left as it is).
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// List the ids in this object store (`s3://BUCKET[/PREFIX]`, `gs://…`, `az://…`,
    /// `file:///DIR`) instead of the local cache.
    #[arg(long = "from", value_name = "URL")]
    pub(crate) from: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Evict least recently used artifacts that nobody holds until the cache holds at most
    /// SIZE (e.g. `10GiB`, `500M`, `1048576`; K, M, G, T are powers of 1000, KiB, MiB, GiB,
    /// TiB powers of 1024). Without it, gc only removes leftovers of dead processes.
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_size: Option<String>,
}

/// Exit statuses of `artifact verify`, printed in its `--help`.
pub(crate) const VERIFY_EXIT_CODES: &str = "\
Exit status:
  0  every artifact verified (with --repair: or was repaired)
  1  failure (an artifact could not be read or checked, or could not be quarantined)
  2  usage error (a bad flag, id or URL)
  3  not found (the artifact ID is absent)
  5  corrupt (without --repair: an artifact does not match its digest; with --repair: a
     corrupt artifact was quarantined but could not be fetched again whole)
  6  busy (an artifact is being written, or readers held a corrupt one past the wait)";

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The artifact to verify; all of them when absent.
    pub(crate) id: Option<String>,
    /// Move each corrupt artifact out of the cache into its quarantine area (never served
    /// again; its reason recorded beside its metadata), then fetch it again from --from,
    /// keeping the new copy only if it has the digest recorded at commit.
    #[arg(long, requires = "from")]
    pub(crate) repair: bool,
    /// With --repair: a server (`http(s)://`) or object store (`s3://BUCKET[/PREFIX]`, …) to
    /// fetch corrupt artifacts from again; repeat for failover, tried in order.
    #[arg(long = "from", value_name = "URL", requires = "repair")]
    pub(crate) from: Vec<String>,
    /// With --repair: a file holding the bearer token, for servers that require it for reads.
    #[arg(long, value_name = "FILE", requires = "repair")]
    pub(crate) token_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8417")]
    pub(crate) listen: SocketAddr,
    /// Evict least recently used artifacts beyond this size (e.g. `50GiB`).
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_size: Option<String>,
    /// A file holding the bearer token that writes (PUT, DELETE) must present.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Also require the token for reads.
    #[arg(long, requires = "token_file")]
    pub(crate) token_for_reads: bool,
    /// At most this many tar streams at once; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub(crate) max_streams: usize,
    /// At most this many tar streams at once for one client address; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) max_streams_per_peer: usize,
    /// At most this many open connections; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// At most this many open connections from one client address; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub(crate) max_connections_per_peer: usize,
    /// Keep the tar streams of small artifacts (up to 64 KiB) in memory, up to SIZE in all
    /// (e.g. `256MiB`; `0` keeps none).
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub(crate) small_cache: String,
    /// Threads that answer requests (0: one per core). Reading and writing artifacts' files
    /// runs on a separate pool either way.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) threads: usize,
    /// An object store behind the cache (`s3://BUCKET[/PREFIX]` with the AWS_* environment,
    /// `gs://…`, `az://…`, `file:///DIR`): local misses are fetched from it, uploads are
    /// written to it before they are answered. Checked once at start.
    #[arg(long, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then any
    /// intermediates); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) scrub: ServeScrubArgs,
    #[command(flatten)]
    pub(crate) jobs: ServeJobsArgs,
}

/// The scrub flags of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeScrubArgs {
    /// Re-verify every artifact's tree digest once per DURATION in the background (e.g.
    /// `24h`): a corrupt one is quarantined at once (never served again) and fetched again
    /// from --repair-from and --store, if given. Off by default.
    #[arg(long, value_name = "DURATION")]
    pub(crate) scrub_interval: Option<humantime::Duration>,
    /// Read at most SIZE per second while scrubbing, on average (e.g. `50MiB/s`) [default:
    /// 16MiB/s].
    #[arg(long, value_name = "SIZE/s", requires = "scrub_interval")]
    pub(crate) scrub_rate: Option<String>,
    /// Where the scrub fetches a quarantined artifact again: a peer server or an object
    /// store; repeat for failover, tried in order (then --store). The --token-file token is
    /// sent to them.
    #[arg(long = "repair-from", value_name = "URL", requires = "scrub_interval")]
    pub(crate) repair_from: Vec<String>,
}

/// The transfer-job flags of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeJobsArgs {
    /// Limit the transfer jobs of one endpoint to SIZE per second (e.g.
    /// `http://peer:8417=8MiB/s`); repeat for several endpoints.
    #[arg(long = "rate", value_name = "URL=SIZE/s")]
    pub(crate) rates: Vec<String>,
    /// Limit all transfer jobs together to SIZE per second (e.g. `100MiB/s`).
    #[arg(long, value_name = "SIZE/s")]
    pub(crate) rate_limit: Option<String>,
    /// Keep ended transfer jobs this long before pruning them (e.g. `7d`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub(crate) jobs_keep: humantime::Duration,
    /// At most this many active transfer jobs; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub(crate) jobs_max_queued: usize,
    /// Transfer jobs at once per endpoint.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) jobs_concurrency: usize,
}

/// Exit statuses of `artifact jobs`, printed in its `--help`.
pub(crate) const JOBS_EXIT_CODES: &str = "\
Exit status:
  0  success (for wait: every job succeeded)
  1  failure (the server failed or is unreachable; for wait: a job failed or was cancelled;
     for cancel: the job has ended already)
  2  usage error (a bad flag, id or URL; the server refused the request as malformed)
  3  not found (no such job)
  6  busy (the server's job queue is full; try again later)";

/// `artifact jobs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Queue pulls: the server fetches each ID from the first source that has it.
    Pull(JobsPullArgs),
    /// Queue pushes: the server copies each ID from its cache to each target.
    Push(JobsPushArgs),
    /// List jobs.
    Ls(JobsLsArgs),
    /// Show one job with its log.
    Show(JobArgs),
    /// Cancel a job (a running transfer is stopped; nothing partial is kept).
    Cancel(JobArgs),
    /// Wait until the jobs have ended; exit 0 only if every one succeeded.
    Wait(JobsWaitArgs),
}

/// Flags every `jobs` subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct JobsServer {
    /// The server to ask.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8417")]
    pub(crate) server: String,
    /// A file holding the server's bearer token.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Trust only the certificate authorities in this PEM file for an `https://` server.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct JobsPullArgs {
    /// The artifact ids (hex).
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// A source server (repeat for failover, tried in order).
    #[arg(long = "from", value_name = "URL", required = true)]
    pub(crate) from: Vec<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i64,
    #[command(flatten)]
    pub(crate) server: JobsServer,
}

#[derive(Debug, Args)]
pub(crate) struct JobsPushArgs {
    /// The artifact ids (hex).
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// A target server (repeat: one job per id and target).
    #[arg(long = "to", value_name = "URL", required = true)]
    pub(crate) to: Vec<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i64,
    #[command(flatten)]
    pub(crate) server: JobsServer,
}

#[derive(Debug, Args)]
pub(crate) struct JobsLsArgs {
    /// Only jobs in this state (queued, running, retrying, succeeded, failed, cancelled).
    #[arg(long, value_name = "STATE")]
    pub(crate) state: Option<String>,
    #[command(flatten)]
    pub(crate) server: JobsServer,
}

#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// The job number.
    pub(crate) job: String,
    #[command(flatten)]
    pub(crate) server: JobsServer,
}

#[derive(Debug, Args)]
pub(crate) struct JobsWaitArgs {
    /// The job numbers.
    #[arg(required = true)]
    pub(crate) jobs: Vec<String>,
    #[command(flatten)]
    pub(crate) server: JobsServer,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The artifact id (hex, 1 to 64 bytes).
    pub(crate) id: String,
    /// A server (`http(s)://`) or an object store (`s3://BUCKET[/PREFIX]`, `gs://…`, `az://…`,
    /// `file:///DIR`) to fetch from; repeat for failover, tried in order.
    #[arg(long = "from", value_name = "URL", required = true)]
    pub(crate) from: Vec<String>,
    /// Also place the files in DIR (created if absent, refused unless empty; checked before
    /// downloading): reflinks where the file system can make them, else copies, writable and
    /// independent of the cache.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// With --out: hard links to the cache's files instead of copies (fast, no extra space).
    /// They share the cache's inodes, so they are read-only: a write to one (as root, or
    /// after a chmod) would change the cached artifact, which `artifact verify` then reports.
    #[arg(long, requires = "out")]
    pub(crate) link: bool,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
    /// Give up after this many seconds in all.
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,
    /// Abandon a server whose body brings less than this many bytes per second over
    /// --speed-time, for the next one (like curl's; default 1KiB; 0 turns it off).
    #[arg(long, value_name = "BYTES")]
    pub(crate) speed_limit: Option<String>,
    /// The window of --speed-limit, in seconds (default 30).
    #[arg(long, value_name = "SECS")]
    pub(crate) speed_time: Option<f64>,
    /// A file holding the bearer token, for servers that require it for reads.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Accept an answer without a digest header (the original seed server's bare tar), if
    /// the stream is valid and complete; it is committed with the digest computed on receipt,
    /// and `--json` says `"verified": false`. A 400 "not found" then counts as a miss.
    #[arg(long)]
    pub(crate) allow_no_digest: bool,
    /// Fetch a large artifact (64 MiB or more) from up to N of the --from servers at once,
    /// as disjoint ranges (default 4; 1 turns it off).
    #[arg(long, value_name = "N")]
    pub(crate) sources: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The artifact id (hex, 1 to 64 bytes).
    pub(crate) id: String,
    /// The server (`http(s)://`) or object store (`s3://BUCKET[/PREFIX]`, …) to upload to.
    #[arg(long = "to", value_name = "URL")]
    pub(crate) to: String,
    /// A file holding the bearer token for the server.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
}

/// How `get` and `put` talk to servers.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    /// Compress the stream with zstd (get: ask the server to; put: send it compressed). It pays
    /// on links slower than about 1 Gbit/s with compressible content (sources, text, object
    /// files); on a fast LAN or with already compressed files it only costs CPU.
    #[arg(long)]
    pub(crate) zstd: bool,
    /// Trust only the certificate authorities in this PEM file for `https://` servers (for a
    /// self-signed certificate, say) instead of the system's.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
