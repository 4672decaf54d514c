//! Networked commands: `serve`, `get`, `put`.

use anyhow::bail;

use crate::{
    Context,
    cli::{GetArgs, PutArgs, ServeArgs},
};

pub(crate) fn serve(_ctx: &Context, _args: ServeArgs) -> anyhow::Result<()> {
    bail!("serve is not implemented yet (issue 4)")
}

pub(crate) fn get(_ctx: &Context, _args: GetArgs) -> anyhow::Result<()> {
    bail!("get is not implemented yet (issue 4)")
}

pub(crate) fn put(_ctx: &Context, _args: PutArgs) -> anyhow::Result<()> {
    bail!("put is not implemented yet (issue 4)")
}
