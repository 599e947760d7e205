//! The accept loop: HTTP/1.1 connections with a header-read timeout, under a connection cap.
//!
//! A client that connects and sends nothing, sends half a header, or keeps an idle keep-alive
//! connection open is disconnected after [`Limits::header_timeout`] (hyper's header-read timer runs
//! from the moment the server waits for a request head, including between keep-alive requests).
//! Bodies and whole requests have their own limits, applied as layers in [`crate::app`]. At most
//! [`Limits::max_connections`] connections are open at once: beyond that the server stops
//! accepting (new connections wait in the kernel's backlog) until one closes, so a flood of
//! connections can neither exhaust file descriptors nor starve requests already being served.
//!
//! Writes have their own bound: a client that stops reading a response (or reads it so slowly
//! that the server cannot send anything for [`Limits::send_idle_timeout`]) has its connection
//! closed, so it cannot hold a connection slot forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::Ordering;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

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
        let io = TokioIo::new(WriteIdle::new(tcp, limits.send_idle_timeout));
        let conn = graceful.watch(http.serve_connection(io, service));
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

/// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once the peer has accepted no
/// byte for `idle`: the clock starts when a write cannot proceed and stops at the next one that
/// does, so a response of any size to a reader that keeps reading is never cut off.
struct WriteIdle<T> {
    io: T,
    idle: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteIdle<T> {
    fn new(io: T, idle: Duration) -> Self {
        Self {
            io,
            idle,
            stalled: None,
        }
    }

    /// Passes a finished write through (clearing the clock); for one that cannot proceed, starts
    /// the clock or fails once it has run out.
    fn watch<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let idle = self.idle;
        let clock = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match clock.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client accepted nothing for {idle:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteIdle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteIdle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_fails_the_write_and_one_that_reads_does_not() {
        // A pipe with a small buffer stands in for a socket whose peer stopped reading.
        let (a, b) = tokio::io::duplex(1024);
        let mut w = WriteIdle::new(a, Duration::from_millis(200));
        let data = vec![7u8; 64 * 1024];
        let err = tokio::time::timeout(Duration::from_secs(60), w.write_all(&data))
            .await
            .expect("the write gives up by itself")
            .expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(b);

        // A slow but steady reader (more often than the idle bound) gets everything.
        let (a, mut b2) = tokio::io::duplex(1024);
        let mut w = WriteIdle::new(a, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                match b2.read(&mut buf).await.expect("read") {
                    0 => return got.len(),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        w.write_all(&data).await.expect("steady reader");
        w.shutdown().await.expect("shutdown");
        assert_eq!(reader.await.expect("reader"), data.len());
    }
}
