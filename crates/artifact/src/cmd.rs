//! The subcommands, one module per concern.

#[cfg(feature = "http")]
pub(crate) mod jobs;
pub(crate) mod local;
#[cfg(feature = "http")]
pub(crate) mod net;
pub(crate) mod pack;
#[cfg(feature = "http")]
pub(crate) mod place;
#[cfg(feature = "http")]
pub(crate) mod scrub;
#[cfg(feature = "store")]
pub(crate) mod store;
