//! `artifact pack` and `artifact unpack`: a directory to a tar stream on stdout, and back.

use anyhow::bail;

use crate::cli::{PackArgs, UnpackArgs};

pub(crate) fn pack(_args: PackArgs) -> anyhow::Result<()> {
    bail!("pack is not implemented yet (issue 2)")
}

pub(crate) fn unpack(_args: UnpackArgs) -> anyhow::Result<()> {
    bail!("unpack is not implemented yet (issue 2)")
}
