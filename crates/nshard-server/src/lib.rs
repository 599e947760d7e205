//! The NeuroShard HTTP server (`nshard serve`): protocol v1 over an object store: a directory or an
//! S3 bucket (any [`Store`](nshard_core::Store); the server never reaches around the trait).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | `GET` | `/v1/health` | liveness, protocol version, limits (no token needed) |
//! | `POST` | `/v1/objects/missing` | `{"ids":[…]}` → `{"missing":[…]}` (bounded batch) |
//! | `HEAD` | `/v1/objects/{id}` | 200 with the encoded length, or 404 |
//! | `GET` | `/v1/objects/{id}` | the encoded object (verified before it is sent) |
//! | `PUT` | `/v1/objects/{id}` | body: the encoded object; decoded and hashed before it becomes visible |
//! | `POST` | `/v1/objects/{id}/verify` | the server hashes its copy: `{"state": "intact" \| "corrupt" \| "missing", …}` |
//! | `GET` | `/v1/records` | `{"records":[…]}`: every record name, sorted |
//! | `GET` | `/v1/records/{space}/{key}/{stamp.writer}` | the record's bytes, or 404 |
//! | `PUT` | `/v1/records/{space}/{key}/{stamp}` | body: the record; stored under the token's writer name: 201 `{"name":…}`, 409 when it exists; gc's own spaces need the admin scope |
//! | `GET` | `/v1/objects?after={id}&limit={n}` | admin: a page of `{"objects":[{"id","size","modified"}…],"next":…}` |
//! | `POST` | `/v1/objects/delete` | admin: `{"ids":[…]}` → `{"deleted":n}` (at most 1000) |
//! | `POST` | `/v1/records/delete` | admin: `{"names":[…]}` → `{"deleted":n}` (at most 1000) |
//! | `PUT` | `/v1/deltas/{id}.{base}` | body: a delta object; verified against the stored base before it becomes visible (422 `base_missing` without it) |
//! | `GET` | `/v1/deltas/{id}.{base}` | the delta's bytes, or 404 |
//! | `POST` | `/v1/deltas/of` | `{"ids":[…]}` → `{"deltas":["<id>.<base>",…]}` (bounded batch) |
//! | `GET` | `/v1/deltas?after={id}.{base}&limit={n}` | admin: a page of `{"deltas":[{"name","size","modified"}…],"next":…}` |
//! | `POST` | `/v1/deltas/delete` | admin: `{"names":[…]}` → `{"deleted":n}` (at most 1000) |
//! | `GET` | `/metrics` | Prometheus text |
//!
//! Errors are JSON: `{"error": "<message>", "code": "<code>"}` with a 4xx/5xx status.
//!
//! A store directory has the same layout as a directory remote (`objects/ab/cd…`, `tmp/`), so a
//! server can be started over an existing directory remote and vice versa; an S3 store likewise
//! uses the bucket layout of an `s3://` remote. With S3 the server keeps no state of its own: any
//! number of replicas can serve one bucket.
//!
//! ```no_run
//! use nshard_server::{ServerConfig, Server};
//! use nshard_core::RemoteUrl;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RemoteUrl::parse("/srv/nshard", std::path::Path::new("/"))?;
//! let config = ServerConfig::new(store);
//! let server = Server::bind(config, "127.0.0.1:8000".parse().expect("addr")).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod auth;
mod body;
mod conn;
mod error;
pub mod host;
pub mod metrics;
pub mod routes;
pub mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::protocol;
use nshard_core::{RemoteUrl, Store};
use nshard_remote::OpenOptions;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::{TimeoutBody, TimeoutLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use auth::{Access, AccessPolicy, Scope, TokenError, Tokens};
pub use error::{AppError, ServeError};
use metrics::Metrics;

pub use nshard_core::protocol::PROTOCOL_VERSION;

/// Request limits. Each refusal is a 4xx with a JSON error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted upload body (an encoded object), in bytes.
    pub max_object_bytes: u64,
    /// Most ids in one `missing` query.
    pub max_batch: usize,
    /// Uploads received at the same time; more get 429 with `Retry-After`.
    pub max_concurrent_uploads: usize,
    /// Received uploads verified and stored at the same time (each holds a few MiB while it is).
    pub max_concurrent_commits: usize,
    /// Downloads held in memory at the same time (each holds its object, and while it is verified
    /// the decoded bytes too, until it is sent); more wait for a turn. Bounds the server's memory
    /// whatever the number of readers. The default (6) keeps two cores busy verifying and sending
    /// with room to spare; each slot is a few times the object size in memory (the read buffer,
    /// the decoded copy, the allocator's slack around both), which is most of a busy server's
    /// resident memory.
    pub max_concurrent_downloads: usize,
    /// A connection that has not sent a complete request head this long after the server started
    /// waiting for one (a new connection, or an idle keep-alive one) is closed.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails (400), releasing its upload slot.
    pub body_idle_timeout: Duration,
    /// A request not answered within this long, whatever the client does, gets 408 and its
    /// resources (an upload slot) back. Bounds a body trickled byte by byte.
    pub request_timeout: Duration,
    /// A response the client accepts no byte of for this long (it stopped reading, or reads too
    /// slowly for anything to be sent) has its connection closed, freeing the connection slot.
    pub send_idle_timeout: Duration,
    /// Connections open at once; beyond this the server stops accepting until one closes. The
    /// binary keeps it below the file-descriptor limit.
    pub max_connections: usize,
    /// The newest object format stored: uploads of float objects (format 4) are refused below 4,
    /// and clients re-send them in format 1, which every nshard reads (1 keeps a store that
    /// clients older than float objects can pull from). Below the delta format (3) the server
    /// keeps no delta encodings either: it does not announce them and refuses their uploads.
    pub max_object_format: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // The largest raw object plus the header and the byte-grouping plane headers.
            max_object_bytes: MAX_OBJECT_SIZE + 4096,
            max_batch: nshard_core::backend::MISSING_BATCH,
            max_concurrent_uploads: 64,
            max_concurrent_commits: 4,
            max_concurrent_downloads: 6,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15 * 60),
            send_idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_object_format: nshard_core::format::FLOAT_FORMAT_VERSION,
        }
    }
}

/// Everything `nshard serve` needs, as typed options (the binary reads flags and environment).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The store: a directory (created when missing, with `objects/` and `tmp/` inside) or an
    /// `s3://bucket/prefix` (the bucket must exist).
    pub store: RemoteUrl,
    /// How to open the store (S3 credentials, region, endpoint).
    pub store_options: OpenOptions,
    /// Where uploads are staged while they arrive and are verified. Default for a directory
    /// store: its `tmp/`; an S3 store needs one given (any local directory).
    pub staging_dir: Option<PathBuf>,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// Requests without a token may read.
    pub allow_anonymous_read: bool,
    /// Requests without a token may read and write (needed to serve without tokens on a
    /// non-loopback address; never a good idea outside a trusted network).
    pub insecure_allow_anonymous_write: bool,
    /// Request limits.
    pub limits: Limits,
}

impl ServerConfig {
    /// Defaults for a store: no tokens, default limits.
    pub fn new(store: RemoteUrl) -> Self {
        Self {
            store,
            store_options: OpenOptions::default(),
            staging_dir: None,
            tokens: Tokens::new(),
            allow_anonymous_read: false,
            insecure_allow_anonymous_write: false,
            limits: Limits::default(),
        }
    }

    /// The access policy for a server listening on `addr`:
    /// - explicit anonymous flags are obeyed;
    /// - without tokens and flags on a loopback address, anyone on this machine may read and write
    ///   (the development setup the quickstart uses);
    /// - without tokens and flags on any other address the server refuses to start.
    pub fn policy(&self, addr: SocketAddr) -> Result<AccessPolicy, ServeError> {
        let anonymous = if self.insecure_allow_anonymous_write {
            Some(Scope::Write)
        } else if self.allow_anonymous_read {
            Some(Scope::Read)
        } else if self.tokens.is_empty() {
            if !addr.ip().is_loopback() {
                return Err(ServeError::NoTokens { addr });
            }
            Some(Scope::Write)
        } else {
            None
        };
        Ok(AccessPolicy {
            tokens: self.tokens.clone(),
            anonymous,
        })
    }
}

/// Shared state of the request handlers.
pub struct AppState {
    /// The object store. Uploads go through its verified put-if-absent; reads are verified here
    /// before they are sent.
    pub store: Arc<dyn Store>,
    /// Who may do what.
    pub policy: AccessPolicy,
    /// Request limits.
    pub limits: Limits,
    /// One permit per concurrent upload.
    pub uploads: Arc<Semaphore>,
    /// One permit per upload being verified and stored.
    pub commits: Semaphore,
    /// One permit per download held in memory, kept until its body is sent.
    pub downloads: Arc<Semaphore>,
    /// Where uploads are staged.
    pub staging: PathBuf,
    /// The store verifies a delta against its base itself before storing it (a directory does,
    /// in [`Store::put_delta`]); for the others (S3) the server verifies it first.
    pub store_verifies_deltas: bool,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.display_url())
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the store and builds the state. A store directory is created when missing (it is
    /// the server's own); an S3 bucket must exist and accept the credentials.
    pub async fn open(
        store: &RemoteUrl,
        options: &OpenOptions,
        staging_dir: Option<PathBuf>,
        policy: AccessPolicy,
        limits: Limits,
    ) -> Result<Self, ServeError> {
        let bad = |error| ServeError::Store {
            store: store.to_string(),
            error,
        };
        let staging = match (store, staging_dir) {
            (_, Some(d)) => d,
            (RemoteUrl::Dir(dir), None) => dir.join("tmp"),
            (_, None) => {
                return Err(bad(nshard_core::Error::Remote(
                    nshard_core::RemoteError::Failed {
                        remote: store.to_string(),
                        kind: nshard_core::RemoteFailure::Other,
                        reason: "needs a local directory to stage uploads in".into(),
                    },
                )))
            }
        };
        match store {
            RemoteUrl::Dir(dir) => {
                for sub in ["objects", "tmp"] {
                    nshard_core::backend::create_dir_all(&dir.join(sub)).map_err(bad)?;
                }
            }
            RemoteUrl::S3 { .. } => {}
            // HTTP, and any kind of remote added later that is not a storage backend.
            _ => {
                return Err(bad(nshard_core::Error::Remote(
                    nshard_core::RemoteError::Unsupported {
                        url: store.to_string(),
                        reason:
                            "a server stores into a directory or an S3 bucket, not another server",
                    },
                )))
            }
        }
        nshard_core::backend::create_dir_all(&staging).map_err(bad)?;
        let store_verifies_deltas = matches!(store, RemoteUrl::Dir(_));
        let store = nshard_remote::open(store, options).await.map_err(bad)?;
        Ok(Self {
            store,
            policy,
            limits,
            uploads: Arc::new(Semaphore::new(limits.max_concurrent_uploads)),
            commits: Semaphore::new(limits.max_concurrent_commits.max(1)),
            downloads: Arc::new(Semaphore::new(limits.max_concurrent_downloads.max(1))),
            staging,
            store_verifies_deltas,
            metrics: Metrics::default(),
        })
    }
}

/// The protocol v1 router over `state`, with the body-idle and total request timeouts of
/// `state.limits` (the header timeout and the connection cap belong to the accept loop).
pub fn app(state: Arc<AppState>) -> Router {
    let limits = state.limits;
    use routes::*;
    let objects = get(get_object)
        .head(head_object)
        .put(put_object)
        .fallback(method_not_allowed);
    Router::new()
        .route(protocol::HEALTH, get(health).fallback(method_not_allowed))
        .route(
            protocol::MISSING,
            post(missing).fallback(method_not_allowed),
        )
        // Static segments win over `{id}`: `/v1/objects/missing` and `/v1/objects/delete` are
        // never taken for object ids.
        .route(
            protocol::OBJECTS,
            get(list_objects).fallback(method_not_allowed),
        )
        .route(
            protocol::DELETE_OBJECTS,
            post(delete_objects).fallback(method_not_allowed),
        )
        .route(protocol::OBJECT_ROUTE, objects)
        .route(
            protocol::RECORDS,
            get(list_records).fallback(method_not_allowed),
        )
        .route(
            protocol::DELETE_RECORDS,
            post(delete_records).fallback(method_not_allowed),
        )
        .route(
            protocol::RECORD_ROUTE,
            get(get_record).put(put_record).fallback(method_not_allowed),
        )
        .route(
            protocol::VERIFY_ROUTE,
            post(verify_object).fallback(method_not_allowed),
        )
        // As for objects, the static `/v1/deltas/of` and `/v1/deltas/delete` win over `{name}`.
        .route(
            protocol::DELTAS,
            get(deltas::list_deltas).fallback(method_not_allowed),
        )
        .route(
            protocol::DELTAS_OF,
            post(deltas::deltas_of).fallback(method_not_allowed),
        )
        .route(
            protocol::DELETE_DELTAS,
            post(deltas::delete_deltas).fallback(method_not_allowed),
        )
        .route(
            protocol::DELTA_ROUTE,
            get(deltas::get_delta)
                .put(deltas::put_delta)
                .fallback(method_not_allowed),
        )
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route(
            "/lfs/objects/batch",
            post(lfs_batch).fallback(method_not_allowed),
        )
        .route(
            "/lfs/locks/verify",
            post(lfs_locks_verify).fallback(method_not_allowed),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), count_request))
        .fallback(not_found)
        .layer(
            TraceLayer::new_for_http()
                // The path only: a query string may carry what a client should not have put
                // there (a token), and the log must never hold it.
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        version = ?req.version(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // Authorization values are redacted wherever headers are formatted.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(middleware::from_fn_with_state(
            limits.body_idle_timeout,
            body_idle_timeout,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

/// Fails a request body that sends nothing for `idle` (the handler sees a broken body).
async fn body_idle_timeout(State(idle): State<Duration>, req: Request, next: Next) -> Response {
    next.run(req.map(|b| Body::new(TimeoutBody::new(idle, b))))
        .await
}

async fn count_request(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let resp = next.run(req).await;
    state
        .metrics
        .request(&route, method.as_str(), resp.status().as_u16());
    resp
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    loopback_hosts_only: bool,
}

impl Server {
    /// Checks the access policy for `addr`, opens the store and binds the socket (port 0 picks a
    /// free port; see [`Server::local_addr`]).
    pub async fn bind(config: ServerConfig, addr: SocketAddr) -> Result<Server, ServeError> {
        let policy = config.policy(addr)?;
        // A loopback server without tokens trusts whoever reaches it: refuse other Host names.
        let loopback_hosts_only = policy.tokens.is_empty() && addr.ip().is_loopback();
        let state = AppState::open(
            &config.store,
            &config.store_options,
            config.staging_dir,
            policy,
            config.limits,
        )
        .await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Bind { addr, error })?;
        let addr = listener
            .local_addr()
            .map_err(|error| ServeError::Bind { addr, error })?;
        Ok(Server {
            listener,
            addr,
            state: Arc::new(state),
            loopback_hosts_only,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access policy in force.
    pub fn policy(&self) -> &AccessPolicy {
        &self.state.policy
    }

    /// Whether requests must name a loopback host (no tokens on a loopback address; see [`host`]).
    pub fn loopback_hosts_only(&self) -> bool {
        self.loopback_hosts_only
    }

    /// Serves until `shutdown` completes, then stops accepting connections and finishes the
    /// requests in flight.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let mut router = app(self.state.clone());
        if self.loopback_hosts_only {
            router = router.layer(middleware::from_fn(host::loopback_hosts_only));
        }
        let limits = self.state.limits;
        conn::serve(self.listener, router, limits, self.state, shutdown)
            .await
            .map_err(ServeError::Io)
    }
}
