//! Integration tests of `tarstream`, one binary (see STYLE.md, "Tests").

mod adversarial;
mod forge;
