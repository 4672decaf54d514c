//! `get --out DIR`: the downloaded artifact's files placed in a directory of the user's, as
//! reflinks or copies that are independent of the cache, or, with `--link`, as read-only hard
//! links that share the cache's files.

use std::{
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};

use crate::{
    cmd::pack::{clean, prepare_dest},
    exit::{Exit, fail},
};

/// How the files get to `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A reflink where the file system can make one, else a copy; writable by the owner.
    Copy,
    /// A hard link to the cache's file, read-only (0444, or 0555 for executables); a copy
    /// where no link can be made (another file system).
    Link,
}

/// Fails, as a usage error, unless `out` is absent or an empty directory: checked before a
/// download so that a bad `--out` costs nothing.
pub(crate) fn check_out(out: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(out) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("reading {}", out.display())),
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(fail(
                    Exit::Usage,
                    anyhow!("{} is not empty; get --out needs an empty directory", out.display()),
                )),
            }
        }
        Ok(_) => Err(fail(Exit::Usage, anyhow!("{} exists and is not a directory", out.display()))),
    }
}

/// Places the artifact's tree at `out` (created if absent, refused unless empty). On failure,
/// what was placed is removed.
pub(crate) fn place(tree: &Path, out: &Path, how: Placement) -> anyhow::Result<()> {
    let created = prepare_dest(out, "get --out")?;
    copy_tree(tree, out, how).map_err(|err| {
        if let Err(cleanup) = clean(out, created) {
            tracing::warn!(path = %out.display(), error = %cleanup, "could not clean up");
        }
        err.context(format!("placing the files in {}", out.display()))
    })
}

fn copy_tree(from: &Path, to: &Path, how: Placement) -> anyhow::Result<()> {
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
                place_file(&source, &dest, how)
                    .with_context(|| format!("placing {}", dest.display()))?;
            }
        }
    }
    Ok(())
}

/// One file: a hard link for [`Placement::Link`] where possible, else a reflink or a copy,
/// made writable by the owner (it shares nothing with the cache).
fn place_file(source: &Path, dest: &Path, how: Placement) -> io::Result<()> {
    if how == Placement::Link && fs::hard_link(source, dest).is_ok() {
        return Ok(());
    }
    reflink_copy::reflink_or_copy(source, dest)?;
    let mode = fs::metadata(source)?.permissions().mode() & 0o777;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode | 0o200))
}
