//! The integration tests of artifact-jobs: one binary, one module per area.

mod api;
mod machine;
mod rate;
mod sched;
mod store;
