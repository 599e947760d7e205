//! `nshard serve`: the NeuroShard HTTP server (protocol v1) over a directory store.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nshard_core::RemoteUrl;
use nshard_remote::OpenOptions;
use nshard_server::{Limits, Scope, Server, ServerConfig, Tokens};

use crate::output::Ctx;

/// The environment variable holding server tokens (`SCOPE:TOKEN` entries, comma or newline
/// separated).
pub const TOKENS_ENV: &str = "NSHARD_SERVE_TOKENS";

/// How long in-flight requests get to finish after SIGINT/SIGTERM before the server exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serve a store over HTTP for push and pull (protocol v1).
///
/// Clients push to and pull from it with `--remote http://HOST:PORT`.
///
/// Without tokens the server only listens on loopback, where anyone on this machine may read and
/// write. To serve other machines give tokens: a file with one `read:TOKEN`, `write:TOKEN` or
/// `admin:TOKEN` per line (`--tokens`), and/or the same entries in NSHARD_SERVE_TOKENS. Clients
/// send them with NSHARD_TOKEN (or `nshard login`). `nshard remote gc` needs an admin token. For TLS, put the server behind a reverse proxy (see docs/server.md).
///
/// Logs go to stderr (RUST_LOG=debug for more); SIGINT/SIGTERM stop accepting connections and let
/// requests in flight finish.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Store: a directory (created when missing; the same layout as a directory remote) or
    /// s3://BUCKET/PREFIX (the bucket must exist; credentials, region and endpoint from the AWS_*
    /// environment variables, as for s3:// remotes).
    #[arg(
        long,
        value_name = "DIR|s3://BUCKET/PREFIX",
        default_value = "nshard-store"
    )]
    pub store: String,
    /// Token file: one `read:TOKEN`, `write:TOKEN` or `admin:TOKEN` per line (each scope
    /// includes the ones before it), `#` comments.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Let requests without a token read (for a public, read-only mirror).
    #[arg(long)]
    pub allow_anonymous_read: bool,
    /// Let requests without a token write. Anyone who can reach the server can then fill its disk.
    #[arg(long)]
    pub insecure_allow_anonymous_write: bool,
    /// Largest accepted upload (one encoded object), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_object_bytes)]
    pub max_object_size: u64,
    /// Most ids in one `missing` query.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_batch as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch: u64,
    /// Uploads received at the same time; more are answered 429 (clients retry).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_concurrent_uploads as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_uploads: u64,
    /// Downloads held in memory at the same time; more wait for a turn. Each holds its object
    /// (and, while it is verified, the decoded bytes) until it is sent: memory for downloads is
    /// a few times N × the largest object served (4 MiB chunks by default).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_concurrent_downloads as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_downloads: u64,
    /// Seconds a connection may take to send a request head (also how long an idle keep-alive
    /// connection stays open).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().header_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout: u64,
    /// Seconds a request body may send nothing before the request fails (its upload slot is
    /// released).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().body_idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub body_idle_timeout: u64,
    /// Seconds a whole request may take, however the client sends it (answered 408 after that).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().request_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout: u64,
    /// Seconds a response may wait for the client to accept more of it; a client that stops
    /// reading (or reads too slowly for anything to be sent) is disconnected after that.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().send_idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub send_timeout: u64,
    /// Connections open at once (more wait until one closes). Lowered automatically to stay well
    /// below the process's file-descriptor limit, which the server raises to its maximum.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Newest object format to store. 4 (the default) stores float objects, the smallest
    /// encoding of tensor chunks, which nshard clients older than them cannot read; 1 refuses
    /// them, and clients then send those chunks in format 1 (up to 1.5 % larger), so that every
    /// nshard can pull from this server.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_object_format,
          value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["1", "4"]),
              |s: String| if s == "1" { 1u8 } else { 4 }))]
    pub max_object_format: u8,
}

/// Threads of the runtime's blocking pool, where the server reads, verifies, stages and fsyncs
/// objects: two per core (the CPU-bound work, hashing and decoding, and the staging writes and
/// reads beside it) and one per commit slot, so that reads go on while every commit waits in
/// fsync: 8 on 2 cores.
///
/// tokio's default (up to 512) starts a thread per blocking task in flight: 30 to 60 in
/// `bench/load.sh`'s mix. glibc's allocator gives each thread that allocates an arena of its own
/// (up to 8 per core) and, once an object buffer has been freed, keeps up to twice its size free
/// at the top of every arena (16 MiB after a 4 MiB object, whose read buffer is 8 MiB) besides
/// the holes between live buffers: resident memory grew with the number of threads that ever held
/// an object, not with the objects held. The work is bounded already (download and commit slots)
/// and CPU-bound beyond a thread or two per core, so more threads add no throughput.
fn blocking_threads(commits: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    2 * cores + commits.max(1)
}

/// File descriptors kept free of connections: the listener, logs, store files being read or
/// written outside any connection's share.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-files limit to the hard one and returns the connection cap that fits
/// under it: each connection may hold its socket and one store file at a time.
fn connection_cap(wanted: u64) -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut lim = getrlimit(Resource::Nofile);
        if lim.current < lim.maximum {
            let raised = rustix::process::Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                lim = getrlimit(Resource::Nofile);
            }
        }
        if let Some(soft) = lim.current {
            let fit = soft.saturating_sub(RESERVED_FDS) / 2;
            if fit < wanted {
                tracing::warn!(
                    "open-files limit is {soft}: serving at most {} connections at once, not {wanted}",
                    fit.max(1)
                );
                return fit.max(1);
            }
        }
    }
    wanted
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<ExitCode> {
    init_logging(ctx.quiet);
    let addr = resolve(&a.listen)?;
    let mut tokens = Tokens::new();
    if let Some(path) = &a.tokens {
        let path = ctx.cwd.join(path);
        warn_if_readable_by_others(&path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let t = Tokens::parse(&text, &path.display().to_string())?;
        if t.is_empty() {
            bail!("the token file {} holds no tokens", path.display());
        }
        tokens.extend(t);
    }
    if let Ok(text) = std::env::var(TOKENS_ENV) {
        tokens.extend(Tokens::parse(&text, TOKENS_ENV)?);
    }
    let store =
        RemoteUrl::parse(&a.store, &ctx.cwd).with_context(|| format!("--store {:?}", a.store))?;
    // S3 stores stage uploads in the system's temporary directory (TMPDIR).
    let staging_dir = matches!(store, RemoteUrl::S3 { .. }).then(std::env::temp_dir);
    let config = ServerConfig {
        staging_dir,
        store,
        store_options: OpenOptions {
            token: None,
            s3: super::remote::s3_options(),
        },
        tokens,
        allow_anonymous_read: a.allow_anonymous_read,
        insecure_allow_anonymous_write: a.insecure_allow_anonymous_write,
        limits: Limits {
            max_object_bytes: a.max_object_size,
            max_batch: a.max_batch as usize,
            max_concurrent_uploads: a.max_uploads as usize,
            max_concurrent_downloads: a.max_downloads as usize,
            header_timeout: Duration::from_secs(a.header_timeout),
            body_idle_timeout: Duration::from_secs(a.body_idle_timeout),
            request_timeout: Duration::from_secs(a.request_timeout),
            send_idle_timeout: Duration::from_secs(a.send_timeout),
            max_connections: connection_cap(a.max_connections) as usize,
            max_object_format: a.max_object_format,
            ..Limits::default()
        },
    };
    let blocking = blocking_threads(config.limits.max_concurrent_commits);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nshard-serve")
        .max_blocking_threads(blocking)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(config, addr))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: ServerConfig, addr: SocketAddr) -> Result<()> {
    let store = config.store.to_string();
    // A store directory the server creates keeps itself out of git (like a virtualenv): started
    // in a project, `./nshard-store` must not show up in `git status` or `git add -A`.
    let created = match &config.store {
        RemoteUrl::Dir(d) if !d.exists() => Some(d.clone()),
        _ => None,
    };
    let server = Server::bind(config, addr).await?;
    if let Some(d) = created {
        nshard_core::backend::write_atomic(
            &d.join(".gitignore"),
            b"# The store of `nshard serve`: never committed.\n*\n",
        )?;
        tracing::info!("created the store directory {}", d.display());
    }
    let p = server.policy();
    let auth = match (p.tokens.is_empty(), p.anonymous) {
        (true, Some(Scope::Write)) => {
            "no tokens: anyone who can connect may read and write".to_string()
        }
        (_, anon) => format!(
            "{} admin token(s), {} write token(s), {} read token(s); without a token: {}",
            p.tokens.count(Scope::Admin),
            p.tokens.count(Scope::Write),
            p.tokens.count(Scope::Read),
            match anon {
                None => "nothing",
                Some(Scope::Read) => "read",
                Some(Scope::Write | Scope::Admin) => "read and write",
            }
        ),
    };
    tracing::info!("store {store}; {auth}");
    if server.loopback_hosts_only() {
        tracing::info!("no tokens: answering only requests addressed to localhost or 127.0.0.1");
    }
    if p.anonymous == Some(Scope::Write) && !server.local_addr().ip().is_loopback() {
        tracing::warn!("anonymous writes are allowed on a non-loopback address");
    }
    // The one line scripts wait for: where the server listens.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", server.local_addr())?;
        out.flush()?;
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        r = &mut task => return Ok(r.context("server task failed")??),
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down: finishing requests in flight (a second signal stops at once)");
    let _ = stop_tx.send(());
    tokio::select! {
        r = &mut task => { r.context("server task failed")??; }
        _ = shutdown_signal() => bail!("stopped by a second signal before requests finished"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            bail!("requests still running {}s after the shutdown signal; stopped", SHUTDOWN_GRACE.as_secs())
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn resolve(listen: &str) -> Result<SocketAddr> {
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return Ok(a);
    }
    listen
        .to_socket_addrs()
        .with_context(|| {
            format!("--listen {listen:?}: expected ADDRESS:PORT, e.g. 127.0.0.1:8000")
        })?
        .next()
        .with_context(|| format!("--listen {listen:?} resolves to no address"))
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .try_init();
}

/// Tokens are secrets: say so when the file is readable by other users.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "token file {} is readable by other users; consider `chmod 600`",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
