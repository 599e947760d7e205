//! The accept loop: HTTP/1.1 connections with a header-read timeout, under a connection cap.
//!
//! A client that connects and sends nothing, sends half a header, or keeps an idle keep-alive
//! connection open is disconnected after [`Limits::header_timeout`] (hyper's header-read timer runs
//! from the moment the server waits for a request head, including between keep-alive requests).
//! Bodies and whole requests have their own limits, applied as layers in [`crate::app`]. At most
//! [`Limits::max_connections`] connections are open at once, so a flood of connections cannot
//! exhaust file descriptors. A new connection at the cap takes the slot of the connection that has
//! waited longest for a request head (a slowloris client, or an idle keep-alive connection), so
//! half-open connections cannot lock real clients out; connections with a request in progress are
//! never shed, and when every connection has one, new connections wait until one closes.
//!
//! Writes have their own bound: a client that stops reading a response (or reads it so slowly
//! that the server cannot send anything for [`Limits::send_idle_timeout`]) has its connection
//! closed, so it cannot hold a connection slot forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes, HttpBody};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Sleep;

use crate::{AppState, Limits};

/// Most bytes a connection buffers on either side: what hyper reads ahead of the handler (a
/// request head, or body bytes not yet taken) and what it queues for the socket (response frames).
/// hyper's default (~400 KiB) is sized for throughput on few connections; here hundreds of
/// connections may be open and each one's buffers, once grown, come back to the allocator in
/// pieces it does not return to the system. 64 KiB keeps a body read and a response write at one
/// system call per 64 KiB (uploads and downloads run as fast on loopback in `bench/load.sh`) and
/// is far above any request head the protocol needs.
pub(crate) const CONN_BUF_MAX: usize = 64 << 10;

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
        .max_buf_size(CONN_BUF_MAX)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let conns = Arc::new(Conns::default());
    loop {
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
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: shed the connection that has waited longest for a request head.
                if conns.shed_longest_waiting() {
                    state
                        .metrics
                        .connections_shed
                        .fetch_add(1, Ordering::Relaxed);
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        // Small JSON answers should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let info = conns.add();
        let service = {
            let app = app.clone();
            let info = info.clone();
            tower::ServiceExt::map_response(
                tower::ServiceExt::map_request(app, {
                    let info = info.clone();
                    move |req| {
                        info.begin();
                        req
                    }
                }),
                move |resp: axum::response::Response| {
                    let guard = RequestGuard(info.clone());
                    resp.map(|b| {
                        Body::new(Tracked {
                            inner: b,
                            _guard: guard,
                        })
                    })
                },
            )
        };
        let service = TowerToHyperService::new(service);
        let io = TokioIo::new(WriteIdle::new(tcp, limits.send_idle_timeout));
        let conn = graceful.watch(http.serve_connection(io, service));
        let state = state.clone();
        let conns = conns.clone();
        state.metrics.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!("connection closed: {e}");
                },
                () = info.shed.notified() => tracing::debug!("connection shed at the cap while it waited for a request head"),
            }
            conns.remove(&info);
            state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The open connections, for shedding at the cap.
#[derive(Default)]
struct Conns {
    open: Mutex<Vec<Arc<ConnInfo>>>,
}

/// One connection: since when it has waited for a request head (`None` while a request is in
/// progress: from its head until its response body is finished or dropped).
struct ConnInfo {
    waiting_since: Mutex<Option<Instant>>,
    in_progress: Mutex<usize>,
    shed: Notify,
}

impl ConnInfo {
    fn begin(&self) {
        let mut n = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *self.waiting_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn end(&self) {
        let mut n = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            *self.waiting_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }
}

impl Conns {
    fn add(&self) -> Arc<ConnInfo> {
        let info = Arc::new(ConnInfo {
            waiting_since: Mutex::new(Some(Instant::now())),
            in_progress: Mutex::new(0),
            shed: Notify::new(),
        });
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.clone());
        info
    }

    fn remove(&self, info: &Arc<ConnInfo>) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !Arc::ptr_eq(c, info));
    }

    /// Tells the connection that has waited longest for a request head to close (it is taken
    /// off the list at once, so it is shed only once). Returns whether there was one.
    fn shed_longest_waiting(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let victim = open
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let w = *c.waiting_since.lock().unwrap_or_else(|e| e.into_inner());
                w.map(|t| (t, i))
            })
            .min();
        match victim {
            Some((_, i)) => {
                let c = open.swap_remove(i);
                c.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks the end of a request when dropped (with the response body it travels in).
struct RequestGuard(Arc<ConnInfo>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its connection marked busy until it is finished or dropped.
struct Tracked {
    inner: Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
