//! A plain walk that feeds a [`TreeHasher`] (a first, simple implementation of `digest_dir`).

use std::{
    fs,
    io::Read,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::Path,
};

use crate::{Error, Summary, TreeHasher, digest::canonical_cmp, error::IoResultExt};

pub(crate) fn digest_dir(root: &Path) -> Result<Summary, Error> {
    let mut tree = TreeHasher::new();
    let mut summary = Summary {
        digest: tree.finish(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        file_bytes: 0,
        stream_bytes: 0,
    };
    let mut buf = vec![0u8; 256 * 1024];
    walk(root, &mut Vec::new(), &mut tree, &mut summary, &mut buf)?;
    summary.digest = tree.finish();
    Ok(summary)
}

fn walk(
    dir: &Path,
    rel: &mut Vec<u8>,
    tree: &mut TreeHasher,
    summary: &mut Summary,
    buf: &mut [u8],
) -> Result<(), Error> {
    let mut entries =
        fs::read_dir(dir).with_path(dir)?.collect::<Result<Vec<_>, _>>().with_path(dir)?;
    entries.sort_by(|a, b| canonical_cmp(a.file_name().as_bytes(), b.file_name().as_bytes()));
    for entry in entries {
        let path = entry.path();
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(entry.file_name().as_bytes());
        let meta = fs::symlink_metadata(&path).with_path(&path)?;
        let kind = meta.file_type();
        let ordered = if kind.is_dir() {
            summary.dirs += 1;
            let ordered = tree.dir(rel);
            walk(&path, rel, tree, summary, buf)?;
            ordered
        } else if kind.is_symlink() {
            summary.symlinks += 1;
            let target = fs::read_link(&path).with_path(&path)?;
            tree.symlink(rel, target.as_os_str().as_bytes())
        } else if kind.is_file() {
            summary.files += 1;
            let mut file = fs::File::open(&path).with_path(&path)?;
            let mut hasher = blake3::Hasher::new();
            let mut size = 0u64;
            loop {
                let n = file.read(buf).with_path(&path)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buf[..n]);
            }
            summary.file_bytes += size;
            let executable = meta.permissions().mode() & 0o100 != 0;
            tree.file(rel, executable, size, hasher.finalize().as_bytes())
        } else {
            return Err(Error::UnsupportedFileType { path });
        };
        ordered.expect("siblings are sorted and visited depth first");
        rel.truncate(len);
    }
    Ok(())
}
