//! Integration tests of `tarstream`, one binary (see STYLE.md, "Tests").

mod adversarial;
mod async_io;
mod direct;
mod faults;
mod forge;
mod interop;
mod protocol;
mod range;
mod roundtrip;
mod tar_crate;
