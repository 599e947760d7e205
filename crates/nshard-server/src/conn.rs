//! The accept loop: HTTP/1.1 connections with a header-read timeout, under a connection cap.
//!
//! A client that connects and sends nothing, sends half a header, or keeps an idle keep-alive
//! connection open is disconnected after [`Limits::header_timeout`] (hyper's header-read timer runs
//! from the moment the server waits for a request head, including between keep-alive requests).
//! Bodies and whole requests have their own limits, applied as layers in [`crate::app`]. At most
//! [`Limits::max_connections`] connections are open at once: beyond that the server stops
//! accepting (new connections wait in the kernel's backlog) until one closes, so a flood of
//! connections can neither exhaust file descriptors nor starve requests already being served.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::{AppState, Limits};

/// How long the loop pauses after `accept` fails (out of file descriptors, …) before trying again,
/// so that a persistent failure does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits for the
/// open connections to finish their requests (the caller bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON answers should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        let state = state.clone();
        state.metrics.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
            state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
