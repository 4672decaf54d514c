//! An on-disk cache of artifact directories that threads and processes share safely.
//!
//! NOTE: under construction (issue 3); nothing is exported yet.
