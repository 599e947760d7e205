//! Connections held open beside the load (idle and trickling), and samples of the server
//! process's memory and file descriptors from /proc.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a trickling connection sends one more header line.
const TRICKLE_EVERY: Duration = Duration::from_secs(2);
/// Pause before a held connection that the server closed is opened again.
const REOPEN_AFTER: Duration = Duration::from_millis(200);

/// `n` connections to `addr` held open until [`Held::stop`]: even-numbered ones connect and
/// send nothing, odd-numbered ones send a request head one header line every [`TRICKLE_EVERY`].
/// One the server closes (its header timeout) is opened again, as a patient attacker would.
pub struct Held {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Connections open right now (client side).
    pub open: Arc<AtomicI64>,
    /// Connections opened in all, reopenings included.
    pub opened: Arc<AtomicU64>,
    /// Connections the server closed.
    pub closed_by_server: Arc<AtomicU64>,
}

impl Held {
    pub fn start(addr: SocketAddr, n: usize) -> Held {
        let (stop, rx) = watch::channel(false);
        let open = Arc::new(AtomicI64::new(0));
        let opened = Arc::new(AtomicU64::new(0));
        let closed_by_server = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|i| {
                let (mut rx, open, opened, closed) = (
                    rx.clone(),
                    open.clone(),
                    opened.clone(),
                    closed_by_server.clone(),
                );
                tokio::spawn(async move {
                    while !*rx.borrow() {
                        let conn = tokio::select! {
                            c = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)) => c,
                            _ = rx.changed() => break,
                        };
                        if let Ok(Ok(tcp)) = conn {
                            opened.fetch_add(1, Ordering::Relaxed);
                            open.fetch_add(1, Ordering::Relaxed);
                            let by_server = if i % 2 == 0 {
                                idle(tcp, &mut rx).await
                            } else {
                                trickle(tcp, &mut rx).await
                            };
                            open.fetch_sub(1, Ordering::Relaxed);
                            if by_server {
                                closed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::select! {
                            () = tokio::time::sleep(REOPEN_AFTER) => {}
                            _ = rx.changed() => break,
                        }
                    }
                })
            })
            .collect();
        Held {
            stop,
            tasks,
            open,
            opened,
            closed_by_server,
        }
    }

    /// Closes every held connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Sends nothing; returns true when the server closed the connection.
async fn idle(mut tcp: TcpStream, rx: &mut watch::Receiver<bool>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = rx.changed() => return false,
        }
    }
}

/// Sends a request head one line at a time, never finishing it; returns true when the server
/// closed the connection.
async fn trickle(mut tcp: TcpStream, rx: &mut watch::Receiver<bool>) -> bool {
    if tcp
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .is_err()
    {
        return true;
    }
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            () = tokio::time::sleep(TRICKLE_EVERY) => {
                if tcp.write_all(b"x-trickle: 1\r\n").await.is_err() {
                    return true;
                }
            }
            _ = rx.changed() => return false,
        }
    }
}

/// What the sampler saw of the server process.
#[derive(Clone, Copy, Default)]
pub struct ProcStats {
    pub samples: u64,
    pub rss_max_kib: u64,
    pub hwm_kib: u64,
    pub fd_first: u64,
    pub fd_min: u64,
    pub fd_max: u64,
    pub fd_last: u64,
}

impl ProcStats {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "rss_max_mib": mib(self.rss_max_kib),
            "hwm_mib": mib(self.hwm_kib),
            "fd_first": self.fd_first,
            "fd_min": self.fd_min,
            "fd_max": self.fd_max,
            "fd_last": self.fd_last,
        })
    }
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// One reading of /proc/PID: (VmRSS KiB, VmHWM KiB, open file descriptors).
pub fn read_proc(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((field("VmRSS:")?, field("VmHWM:")?, fds))
}

/// Samples /proc/PID every `every` until the returned sender is sent `true`.
pub fn sample(pid: u32, every: Duration) -> (watch::Sender<bool>, JoinHandle<ProcStats>) {
    let (tx, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut s = ProcStats {
            fd_min: u64::MAX,
            ..ProcStats::default()
        };
        loop {
            if let Some((rss, hwm, fds)) = read_proc(pid) {
                if s.samples == 0 {
                    s.fd_first = fds;
                }
                s.samples += 1;
                s.rss_max_kib = s.rss_max_kib.max(rss);
                s.hwm_kib = hwm;
                s.fd_min = s.fd_min.min(fds);
                s.fd_max = s.fd_max.max(fds);
                s.fd_last = fds;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = rx.changed() => break,
            }
        }
        if s.samples == 0 {
            s.fd_min = 0;
        }
        s
    });
    (tx, task)
}
