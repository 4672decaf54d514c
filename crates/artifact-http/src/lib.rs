//! Serve and fetch `artifact-cache` entries as tar streams over HTTP.
//!
//! NOTE: under construction (issue 4); nothing is exported yet.
