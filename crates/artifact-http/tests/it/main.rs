//! Integration tests of `artifact-http`, one binary (see STYLE.md, "Tests").
