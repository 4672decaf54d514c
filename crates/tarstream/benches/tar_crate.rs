//! The `tar` crate's side of `cargo xtask bench tarstream`: what a Rust user would write
//! instead of `tarstream`, run as `tar_crate pack DIR > x.tar` and `tar_crate unpack DIR <
//! x.tar`.
//!
//! `pack` is `tar::Builder::append_dir_all` (symlinks kept as symlinks) into a buffered
//! stdout; `unpack` is `tar::Archive::unpack` from a buffered stdin. Not a benchmark by
//! itself: the xtask times it in a pipe beside GNU tar and `artifact pack | artifact unpack`.

use std::{
    io::{self, BufReader, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
};

fn main() -> ExitCode {
    match example() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tar_crate: {err}");
            ExitCode::FAILURE
        }
    }
}

fn example() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["pack", dir] => {
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let mut builder = tar::Builder::new(out);
            builder.follow_symlinks(false);
            builder.append_dir_all(".", PathBuf::from(dir))?;
            builder.into_inner()?.flush()
        }
        ["unpack", dir] => {
            let input = BufReader::with_capacity(1 << 20, io::stdin().lock());
            tar::Archive::new(input).unpack(dir)
        }
        // `cargo bench` runs bench targets with `--bench`: nothing to do on its own.
        _ if args.iter().any(|a| a == "--bench") => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "usage: tar_crate pack|unpack DIR")),
    }
}
