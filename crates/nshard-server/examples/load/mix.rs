//! The mixed phase: `clients` connections each doing GETs of stored objects and PUTs of new
//! ones (a share `put_share` of the requests) for a bounded time and request count.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::{Client, StatusCode};

use crate::{authed, chain, hold, take, Tally};

/// Bounds and shape of one mixed run.
pub struct Mix {
    pub clients: usize,
    pub seconds: f64,
    pub max_requests: usize,
    pub put_share: f64,
    pub object_size: usize,
    /// Distinguishes the objects uploaded by different runs (every PUT stores a new object).
    pub salt: u64,
}

thread_local! {
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
}

/// A new object: `base` with its first 24 bytes replaced by (salt, client, counter).
fn fresh_object(base: &[u8], salt: u64, client: usize, n: u64) -> (ObjectId, Bytes) {
    let mut raw = base.to_vec();
    for (i, v) in [salt, client as u64, n].into_iter().enumerate() {
        raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    let enc = ENCODER.with(|e| e.borrow_mut().encode(&raw, DataHint::Unknown));
    (ObjectId::of(&raw), Bytes::from(enc))
}

/// Runs the mix; returns the GET and PUT tallies and the elapsed time.
pub async fn run(
    url: &str,
    objects: Arc<Vec<(ObjectId, Bytes)>>,
    m: &Mix,
) -> (Tally, Tally, Duration) {
    let client = Client::builder()
        .pool_max_idle_per_host(m.clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client");
    let base = Arc::new(crate::random_bytes(m.object_size.max(24), 0xba5e ^ m.salt));
    let deadline = Instant::now() + Duration::from_secs_f64(m.seconds);
    let budget = Arc::new(AtomicUsize::new(m.max_requests));
    let put_per_mille = (m.put_share * 1000.0).round() as u64;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..m.clients)
        .map(|c| {
            let (client, objects, budget, base) = (
                client.clone(),
                objects.clone(),
                budget.clone(),
                base.clone(),
            );
            let (url, salt) = (url.to_string(), m.salt);
            tokio::spawn(async move {
                let (mut get, mut put) = (Tally::default(), Tally::default());
                let mut k = (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
                let mut n = 0u64;
                while Instant::now() < deadline && take(&budget) {
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if (k >> 33) % 1000 < put_per_mille {
                        n += 1;
                        let base = base.clone();
                        let (id, enc) =
                            tokio::task::spawn_blocking(move || fresh_object(&base, salt, c, n))
                                .await
                                .expect("encoding task");
                        let len = enc.len() as u64;
                        let start = Instant::now();
                        let req = client.put(format!("{url}/v1/objects/{id}")).body(enc);
                        match authed(req).send().await {
                            Ok(r) if r.status() == StatusCode::CREATED => {
                                let _ = r.bytes().await;
                                put.bytes += len;
                            }
                            Ok(r) => put.status(&format!("PUT {id}"), r.status()),
                            Err(e) => put.failures.push(format!("PUT {id}: {}", chain(&e))),
                        }
                        put.latencies.push(start.elapsed());
                    } else {
                        let (id, enc) = &objects[(k >> 20) as usize % objects.len()];
                        let start = Instant::now();
                        let req = client.get(format!("{url}/v1/objects/{id}"));
                        match authed(req).send().await {
                            Ok(r) if r.status() == StatusCode::OK => match r.bytes().await {
                                Ok(b) if b == *enc => get.bytes += b.len() as u64,
                                Ok(_) => get.failures.push(format!("GET {id}: wrong bytes")),
                                Err(e) => get.failures.push(format!("GET {id}: {}", chain(&e))),
                            },
                            Ok(r) => get.status(&format!("GET {id}"), r.status()),
                            Err(e) => get.failures.push(format!("GET {id}: {}", chain(&e))),
                        }
                        get.latencies.push(start.elapsed());
                    }
                }
                (get, put)
            })
        })
        .collect();
    let (mut get, mut put) = (Tally::default(), Tally::default());
    for h in handles {
        match h.await {
            Ok((g, p)) => {
                get.merge(g);
                put.merge(p);
            }
            Err(e) => get.failures.push(format!("client task: {e}")),
        }
    }
    (get, put, t0.elapsed())
}

/// One mixed run with the server sampled: its report, the p99 of GET, PUT and both, failures.
async fn one_run(
    o: &crate::Opts,
    objects: &Arc<Vec<(ObjectId, Bytes)>>,
    m: &Mix,
) -> (serde_json::Value, [f64; 3], u64) {
    let before = o.server_pid.and_then(hold::read_proc);
    let sampler = o
        .server_pid
        .map(|pid| hold::sample(pid, Duration::from_millis(100)));
    let (get, put, elapsed) = run(&o.url, objects.clone(), m).await;
    let server = match sampler {
        Some((stop, task)) => {
            let _ = stop.send(true);
            task.await.ok().map(|s| s.json())
        }
        None => None,
    };
    // The client's connections are closed now: the server's descriptors should come back to
    // where they were before the run (polled for up to 10 s).
    let mut fds_after = None;
    if let (Some(pid), Some((_, _, fds_before))) = (o.server_pid, before) {
        let t = Instant::now();
        loop {
            let now = hold::read_proc(pid).map(|(_, _, f)| f);
            fds_after = now;
            if now.is_none_or(|f| f <= fds_before) || t.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut all = get.clone();
    all.merge(put.clone());
    let failures = (get.failures.len() + put.failures.len()) as u64;
    let (g, p, a) = (
        get.report("mix-get", elapsed),
        put.report("mix-put", elapsed),
        all.report("mix-all", elapsed),
    );
    let p99 = [&g, &p, &a].map(|r| r["p99_ms"].as_f64().unwrap_or(0.0));
    let report = serde_json::json!({
        "get": g, "put": p, "all": a,
        "server": server,
        "fds_before": before.map(|b| b.2),
        "fds_after_close": fds_after,
    });
    (report, p99, failures)
}

/// The mix without held connections, then (with `--hold N`) with them; the p99 ratios.
pub async fn phases(
    o: &crate::Opts,
    objects: Arc<Vec<(ObjectId, Bytes)>>,
) -> (serde_json::Value, u64) {
    let mut m = Mix {
        clients: o.mix_clients,
        seconds: o.mix_seconds,
        max_requests: o.max_requests,
        put_share: o.put_share,
        object_size: o.object_size,
        salt: 1,
    };
    eprintln!(
        "load: mix of {} clients for {} s without held connections…",
        m.clients, m.seconds
    );
    let (plain, p99_plain, mut failed) = one_run(o, &objects, &m).await;
    let mut out = serde_json::json!({
        "clients": m.clients,
        "seconds": m.seconds,
        "put_share": m.put_share,
        "without_held": plain,
    });
    if o.hold > 0 {
        let host = o.url.trim_start_matches("http://");
        let addr: SocketAddr = match host.replace("localhost:", "127.0.0.1:").parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("load: cannot hold connections to {host}: {e}");
                return (out, failed + 1);
            }
        };
        eprintln!(
            "load: the same mix while {} connections are held open…",
            o.hold
        );
        m.salt = 2;
        let held = hold::Held::start(addr, o.hold);
        let t = Instant::now();
        while held.open.load(Ordering::Relaxed) < o.hold as i64
            && t.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open_at_start = held.open.load(Ordering::Relaxed);
        let (mut with, p99_with, f) = one_run(o, &objects, &m).await;
        failed += f;
        with["held"] = serde_json::json!({
            "requested": o.hold,
            "open_at_start": open_at_start,
            "open_at_end": held.open.load(Ordering::Relaxed),
            "opened": held.opened.load(Ordering::Relaxed),
            "closed_by_server": held.closed_by_server.load(Ordering::Relaxed),
        });
        held.stop().await;
        let ratio = |i: usize| {
            if p99_plain[i] > 0.0 {
                ((p99_with[i] / p99_plain[i]) * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        out["with_held"] = with;
        out["p99_ratio"] = serde_json::json!({ "get": ratio(0), "put": ratio(1), "all": ratio(2) });
    }
    (out, failed)
}
