//! `ArtifactId` parsing and the server's query parsing: an id that parses prints as its
//! lowercase self and parses back equal; any query string gets an answer below 500 from every
//! route that reads one.
#![no_main]

use std::str::FromStr;

use artifact_cache::ArtifactId;
use axum::{body::Body, http::Request};
use libfuzzer_sys::fuzz_target;

#[path = "server.rs"]
mod server;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = ArtifactId::from_str(text) {
        let printed = id.to_string();
        assert_eq!(printed, text.to_ascii_lowercase());
        assert!((1..=artifact_cache::MAX_ID_BYTES).contains(&id.as_bytes().len()));
        assert_eq!(ArtifactId::from_str(&printed).expect("printed id parses"), id);
    }

    let (_scratch, router) = server::server();
    for (method, path) in [
        ("GET", "/artifact"),
        ("HEAD", "/artifact"),
        ("DELETE", "/artifact"),
        ("GET", "/artifacts"),
    ] {
        let Ok(request) =
            Request::builder().method(method).uri(format!("{path}?{text}")).body(Body::empty())
        else {
            return;
        };
        let status = server::call(&router, request).status().as_u16();
        assert!(status < 500, "{method} {path}?{text:?} answered {status}");
    }
});
