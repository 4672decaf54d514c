//! The testkit's S3 server as a process of its own, for benchmarks and manual tries.
//!
//! `cargo run -p artifact-testkit --features s3 --example s3_server` starts the server on
//! `127.0.0.1`, with its objects under `$TMPDIR`, prints one line
//! `ENDPOINT BUCKET OBJECT_DIR`, and serves until its standard input is closed. Clients reach
//! it with the environment of [`S3Server::env`]: `AWS_ACCESS_KEY_ID=artifact-test-key`,
//! `AWS_SECRET_ACCESS_KEY=artifact-test-secret`, `AWS_REGION=us-east-1`,
//! `AWS_ENDPOINT_URL=ENDPOINT` and `AWS_ALLOW_HTTP=true`.

use std::io::Read;

use artifact_testkit::s3::S3Server;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    example()
}

fn example() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = S3Server::start().await;
        println!("{} {} {}", server.endpoint(), server.bucket(), server.object_file("").display());
        // Serve until whoever started us closes our standard input (or exits).
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        drop(server);
        Ok(())
    })
}
