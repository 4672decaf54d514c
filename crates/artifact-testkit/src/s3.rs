//! [`S3Server`] (feature `s3`): a real S3 server (the `s3s` protocol layer over `s3s-fs`,
//! objects as files in a temporary directory) speaking SigV4 over HTTP on `127.0.0.1:0`, in
//! process, behind the same fault layer as [`TestServer`](crate::server::TestServer).
//!
//! ```
//! use artifact_testkit::s3::S3Server;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = S3Server::start().await;
//! assert!(server.endpoint().starts_with("http://127.0.0.1:"));
//! assert_eq!(server.url(), format!("s3://{}", server.bucket()));
//! # }
//! ```

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering::SeqCst},
};

use artifact_http::ServerConfig;
use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::task::JoinHandle;

use crate::server::{Faults, Stats, apply};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "artifact-test-key";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "artifact-test-secret";
/// The region to sign for.
pub const REGION: &str = "us-east-1";
/// The bucket the server starts with.
pub const BUCKET: &str = "artifacts";

/// An S3 server on `127.0.0.1:0` with one bucket ([`BUCKET`]) and one key pair
/// ([`ACCESS_KEY`], [`SECRET_KEY`]). Stops when dropped.
///
/// [`faults`](S3Server::faults) apply to object GETs (whole or ranged) and
/// [`put_faults`](S3Server::put_faults) to object and part PUTs; [`stats`](S3Server::stats)
/// counts them (`downloads`: object GETs, `uploads`: PUTs, `requests`: everything).
pub struct S3Server {
    addr: SocketAddr,
    endpoint: String,
    root: tempfile::TempDir,
    faults: Faults,
    put_faults: Faults,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct LayerState {
    faults: Faults,
    put_faults: Faults,
    stats: Arc<Stats>,
}

impl S3Server {
    /// Starts a server over a fresh temporary directory.
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(root.path().join(BUCKET)).expect("the bucket directory");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("the s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("a bound address");
        let stats = Arc::new(Stats::new());
        let state = LayerState {
            faults: Faults::default(),
            put_faults: Faults::default(),
            stats: stats.clone(),
        };
        let app = axum::Router::new()
            .fallback(move |request: Request| call(service.clone(), request))
            .layer(axum::middleware::from_fn_with_state(state.clone(), inject));
        let config = ServerConfig::default();
        let task = tokio::spawn(async move {
            artifact_http::serve_router(listener, app, &config, std::future::pending::<()>())
                .await
                .expect("the S3 test server runs");
        });
        S3Server {
            addr,
            endpoint: format!("http://{addr}"),
            root,
            faults: state.faults,
            put_faults: state.put_faults,
            stats,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// `s3://BUCKET`.
    pub fn url(&self) -> String {
        format!("s3://{BUCKET}")
    }

    /// The `AWS_*` environment that points a client at this server with valid credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The same settings as `object_store` configuration keys (lowercase), for clients that
    /// take them directly rather than from the process environment.
    pub fn config(&self) -> Vec<(String, String)> {
        self.env().into_iter().map(|(key, value)| (key.to_ascii_lowercase(), value)).collect()
    }

    /// The file that holds the object `key` of the bucket.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Fault rules for object GETs.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Fault rules for PUTs (objects and parts); [`Fault::Status`](crate::server::Fault::Status)
    /// is the one that makes sense.
    pub fn put_faults(&self) -> &Faults {
        &self.put_faults
    }

    /// What it saw.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hands `request` to s3s.
async fn call(service: s3s::service::S3Service, request: Request) -> Response {
    let mut service = service;
    match tower::Service::call(&mut service, request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err:?}")).into_response(),
    }
}

/// The fault layer: object GETs and PUTs take the next fault of their list.
async fn inject(State(state): State<LayerState>, request: Request, next: Next) -> Response {
    state.stats.requests.fetch_add(1, SeqCst);
    // `/bucket/key`: an object (listings and bucket requests have no key).
    let is_object = request.uri().path().trim_start_matches('/').contains('/');
    let method = request.method().clone();
    let fault = if is_object && method == Method::GET {
        state.stats.downloads.fetch_add(1, SeqCst);
        state.faults.next()
    } else if is_object && method == Method::PUT {
        state.stats.uploads.fetch_add(1, SeqCst);
        state.put_faults.next()
    } else {
        None
    };
    let in_flight = state.stats.enter();
    apply(fault, in_flight, request, next).await
}
