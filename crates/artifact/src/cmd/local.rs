//! Commands on the local cache: `add`, `ls`, `rm`, `gc`, `verify`.

use anyhow::bail;

use crate::{
    Context,
    cli::{AddArgs, GcArgs, IdArgs, LsArgs, VerifyArgs},
};

pub(crate) fn add(_ctx: &Context, _args: AddArgs) -> anyhow::Result<()> {
    bail!("add is not implemented yet (issue 3)")
}

pub(crate) fn ls(_ctx: &Context, _args: LsArgs) -> anyhow::Result<()> {
    bail!("ls is not implemented yet (issue 3)")
}

pub(crate) fn rm(_ctx: &Context, _args: IdArgs) -> anyhow::Result<()> {
    bail!("rm is not implemented yet (issue 3)")
}

pub(crate) fn gc(_ctx: &Context, _args: GcArgs) -> anyhow::Result<()> {
    bail!("gc is not implemented yet (issue 3)")
}

pub(crate) fn verify(_ctx: &Context, _args: VerifyArgs) -> anyhow::Result<()> {
    bail!("verify is not implemented yet (issue 3)")
}
