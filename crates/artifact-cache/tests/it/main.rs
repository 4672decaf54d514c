//! Integration tests of `artifact-cache`, one binary (see STYLE.md, "Tests").

mod child;
mod crash;
mod evict;
mod index;
mod model;
mod open;
mod process;
mod quarantine;
mod rules;
mod stress;
#[cfg(feature = "tokio")]
mod wait;
