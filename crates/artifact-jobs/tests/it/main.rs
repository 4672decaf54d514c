//! The integration tests of artifact-jobs: one binary, one module per area.

mod machine;
mod rate;
mod sched;
mod store;
