//! Integration tests of `artifact-cache`, one binary (see STYLE.md, "Tests").
