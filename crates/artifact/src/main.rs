//! The `artifact` command-line program: parses the command line, sets up logging, runs one
//! subcommand and turns its outcome into an exit status.

mod cli;
mod cmd;
mod exit;
mod size;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// What every subcommand gets besides its own arguments.
#[derive(Debug)]
pub(crate) struct Context {
    /// The cache directory, chosen by `--root`, `$ARTIFACT_ROOT` or the default.
    pub(crate) root: PathBuf,
    /// Print results as JSON for scripts.
    pub(crate) json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse_with_exit_codes();
    let default_log = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    init_logging(cli.global.log.as_deref(), default_log);
    let ctx = Context {
        root: cli.global.root.clone().unwrap_or_else(default_root),
        json: cli.global.json,
    };
    let result = match cli.command {
        Command::Pack(args) => cmd::pack::pack(&ctx, args),
        Command::Unpack(args) => cmd::pack::unpack(&ctx, args),
        Command::Add(args) => cmd::local::add(&ctx, args),
        #[cfg(feature = "store")]
        Command::Ls(args) if args.from.is_some() => cmd::store::ls(&ctx, args),
        #[cfg(not(feature = "store"))]
        Command::Ls(args) if args.from.is_some() => Err(exit::fail(
            exit::Exit::Usage,
            anyhow::anyhow!("this build of artifact has no store support (feature `store`)"),
        )),
        Command::Ls(args) => cmd::local::ls(&ctx, args),
        Command::Rm(args) => cmd::local::rm(&ctx, args),
        Command::Gc(args) => cmd::local::gc(&ctx, args),
        Command::Verify(args) => cmd::local::verify(&ctx, args),
        #[cfg(feature = "http")]
        Command::Serve(args) => cmd::net::serve(&ctx, args),
        #[cfg(feature = "http")]
        Command::Get(args) => cmd::net::get(&ctx, args),
        #[cfg(feature = "http")]
        Command::Put(args) => cmd::net::put(&ctx, args),
        #[cfg(feature = "http")]
        Command::Jobs(command) => cmd::jobs::run(&ctx, command),
        #[cfg(not(feature = "http"))]
        Command::Serve(_) | Command::Get(_) | Command::Put(_) | Command::Jobs(_) => {
            Err(exit::fail(
                exit::Exit::Usage,
                anyhow::anyhow!("this build of artifact has no HTTP support (feature `http`)"),
            ))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let status = exit::status(&err);
            eprintln!("artifact: {err:#}");
            ExitCode::from(status as u8)
        }
    }
}

/// Logs go to stderr, filtered by `--log`, else `$RUST_LOG`, else `default`.
fn init_logging(flag: Option<&str>, default: &str) {
    let filter = match flag {
        Some(spec) => EnvFilter::try_new(spec).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    // The TLS verifier logs each refused certificate as an error of its own; the refusal is
    // reported by the command already.
    .unwrap_or_else(|| EnvFilter::new(format!("{default},rustls_platform_verifier=off")));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// `$XDG_CACHE_HOME/artifact` (or the platform's user cache directory), else `./artifact-cache`.
fn default_root() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(home_cache) {
        Some(dir) if dir.is_absolute() => dir.join("artifact"),
        _ => Path::new("artifact-cache").to_path_buf(),
    }
}

fn home_cache() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache"))
}
