//! `artifact pack` and `artifact unpack`: a directory to a tar stream on stdout, and back.
//!
//! Both talk to the raw stdin/stdout file descriptors (no std line buffering in between) and
//! enlarge the pipe to 1 MiB where stdin/stdout is one, so that `pack | unpack` moves data in
//! large chunks. `unpack` creates DIR if absent, refuses a non-empty DIR, and on failure
//! removes what it created inside DIR (DIR itself too if it created it).

use std::{
    fs::{self, File},
    io::{self, IsTerminal},
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use anyhow::Context as _;
use tarstream::{ReceiveOptions, Summary};

use crate::{
    Context,
    cli::{PackArgs, UnpackArgs},
    exit::{Exit, fail},
};

/// Pipe buffer size to ask for (Linux caps unprivileged requests at
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
const PIPE_SIZE: usize = 1 << 20;

pub(crate) fn pack(ctx: &Context, args: PackArgs) -> anyhow::Result<()> {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!("refusing to write a tar stream to a terminal; redirect stdout"),
        ));
    }
    if !args.dir.is_dir() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!("{} is not a directory", args.dir.display()),
        ));
    }
    let out = raw(stdout.as_fd())?;
    grow_pipe(&out);
    let context = || format!("packing {}", args.dir.display());
    if ctx.json {
        let summary = tarstream::send(&args.dir, &out).with_context(context)?;
        // Stdout carries the stream; the summary goes to stderr.
        eprintln!("{}", summary_json(&summary));
    } else {
        // Nobody asked for the digest: skip hashing, a quarter of the CPU time, and let the
        // kernel move large files into the pipe.
        tarstream::send_to_fd(&args.dir, &out).with_context(context)?;
    }
    Ok(())
}

pub(crate) fn unpack(ctx: &Context, args: UnpackArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let created = prepare_dest(dir, "unpack")?;
    let input = raw(io::stdin().as_fd())?;
    grow_pipe(&input);
    let options = ReceiveOptions::default();
    let received = if ctx.json {
        tarstream::receive_with(dir, &input, &options).map(|summary| {
            println!("{}", summary_json(&summary));
        })
    } else {
        // Nobody asked for the digest: skip hashing, and let the kernel move large files
        // from the pipe.
        tarstream::receive_from_fd(dir, &input, &options).map(drop)
    };
    match received {
        Ok(()) => Ok(()),
        Err(err) => {
            if let Err(cleanup) = clean(dir, created) {
                tracing::warn!(path = %dir.display(), error = %cleanup, "could not clean up");
            }
            Err(anyhow::Error::new(err).context(format!("unpacking into {}", dir.display())))
        }
    }
}

/// Makes sure `dir` can receive a tree: creates it if absent (returning `true`), accepts it
/// if it is an empty directory (`false`), and refuses anything else as a usage error naming
/// `command`.
pub(crate) fn prepare_dest(dir: &Path, command: &str) -> anyhow::Result<bool> {
    match fs::symlink_metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(true)
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", dir.display())),
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                return Err(fail(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "{} is not empty; {command} needs an empty directory",
                        dir.display()
                    ),
                ));
            }
            Ok(false)
        }
        Ok(_) => Err(fail(
            Exit::Usage,
            anyhow::anyhow!("{} exists and is not a directory", dir.display()),
        )),
    }
}

/// Removes what a failed unpack left: DIR itself if it was created, else its contents.
/// Never follows symlinks (`remove_dir_all` and `remove_file` act on the links themselves).
pub(crate) fn clean(dir: &Path, created: bool) -> io::Result<()> {
    if created {
        return match fs::remove_dir_all(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A `File` on a duplicate of a standard stream's fd: unbuffered, large reads and writes.
fn raw(fd: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<File> {
    let owned: OwnedFd = fd.try_clone_to_owned().context("duplicating a standard stream")?;
    Ok(File::from(owned))
}

/// Asks for a bigger pipe buffer; not a pipe, or not allowed: nothing happens.
fn grow_pipe(file: &File) {
    let _ = rustix::pipe::fcntl_setpipe_size(file, PIPE_SIZE);
}

fn summary_json(summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "digest": summary.digest.to_string(),
        "files": summary.files,
        "dirs": summary.dirs,
        "symlinks": summary.symlinks,
        "file_bytes": summary.file_bytes,
        "stream_bytes": summary.stream_bytes,
    })
}
