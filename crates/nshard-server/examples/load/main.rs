//! Load client for `nshard serve` (used by `bench/server.sh`): N concurrent clients doing protocol v1
//! requests against a running server, bounded in count and time, loopback only.
//!
//! ```text
//! cargo run --release -p nshard-server --example load -- URL [--clients 64] [--objects 256]
//!     [--object-size 4194304] [--batch 1000] [--seconds 10] [--max-requests 20000]
//!     [--phases get,missing,mix] [--mix-clients 256] [--mix-seconds 30] [--put-share 0.2]
//!     [--hold 500] [--server-pid PID]
//! ```
//!
//! Phases, each reported as requests/s, MB/s, p50/p99/max latency and failures:
//! 1. `put`: every client uploads distinct pre-encoded objects until all `--objects` are stored
//!    (each must answer 201);
//! 2. `get`: clients download random stored objects (compared byte for byte) for `--seconds` or
//!    `--max-requests`;
//! 3. `missing`: clients send batches of `--batch` ids (half stored, half absent) for the same bound,
//!    and the answer must list exactly the absent ones;
//! 4. `mix` (when listed in `--phases`): `--mix-clients` connections doing GETs of the stored
//!    objects and PUTs of new ones (`--put-share` of the requests) for `--mix-seconds` or
//!    `--max-requests`; then, when `--hold N` is given, the same mix again while N more
//!    connections are held open (half idle, half trickling a request head), and the p99 of each
//!    run with held connections as a ratio to the run without.
//!
//! With `--server-pid`, the server's VmRSS/VmHWM and open file descriptors are sampled from /proc
//! every 100 ms during the mixed runs, and once more after their connections have closed.
//! A 429 (upload slots full) is counted as throttled, not as a failure; a 5xx is a failure.
//! Exits non-zero if any request failed. A bearer token can be given in NSHARD_TOKEN.

mod hold;
mod mix;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nshard_core::format::{DataHint, Encoder};
use nshard_core::ObjectId;
use reqwest::{Client, StatusCode};

struct Opts {
    url: String,
    clients: usize,
    objects: usize,
    object_size: usize,
    batch: usize,
    seconds: f64,
    max_requests: usize,
    phases: Vec<String>,
    mix_clients: usize,
    mix_seconds: f64,
    put_share: f64,
    hold: usize,
    server_pid: Option<u32>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        url: String::new(),
        clients: 64,
        objects: 256,
        object_size: 4 << 20,
        batch: 1000,
        seconds: 10.0,
        max_requests: 20_000,
        phases: vec!["get".into(), "missing".into()],
        mix_clients: 256,
        mix_seconds: 30.0,
        put_share: 0.2,
        hold: 0,
        server_pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--clients" => o.clients = num(&val("--clients")?)?,
            "--objects" => o.objects = num(&val("--objects")?)?,
            "--object-size" => o.object_size = num(&val("--object-size")?)?,
            "--batch" => o.batch = num(&val("--batch")?)?,
            "--seconds" => {
                o.seconds = val("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--max-requests" => o.max_requests = num(&val("--max-requests")?)?,
            "--phases" => {
                o.phases = val("--phases")?.split(',').map(str::to_string).collect();
                if let Some(p) = o
                    .phases
                    .iter()
                    .find(|p| !["get", "missing", "mix"].contains(&p.as_str()))
                {
                    return Err(format!("unknown phase {p:?} (get, missing, mix)"));
                }
            }
            "--mix-clients" => o.mix_clients = num(&val("--mix-clients")?)?,
            "--mix-seconds" => {
                o.mix_seconds = val("--mix-seconds")?
                    .parse()
                    .map_err(|e| format!("--mix-seconds: {e}"))?
            }
            "--put-share" => {
                o.put_share = val("--put-share")?
                    .parse()
                    .map_err(|e| format!("--put-share: {e}"))?
            }
            "--hold" => o.hold = num(&val("--hold")?)?,
            "--server-pid" => {
                o.server_pid = Some(
                    val("--server-pid")?
                        .parse()
                        .map_err(|e| format!("--server-pid: {e}"))?,
                )
            }
            u if o.url.is_empty() && !u.starts_with('-') => o.url = u.trim_end_matches('/').into(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let host = o
        .url
        .strip_prefix("http://")
        .ok_or("URL must be http://127.0.0.1:PORT")?;
    if !(host.starts_with("127.0.0.1:")
        || host.starts_with("[::1]:")
        || host.starts_with("localhost:"))
    {
        return Err("the load client only talks to loopback addresses".into());
    }
    if o.clients == 0 || o.objects == 0 || o.batch == 0 || !(o.seconds > 0.0 && o.seconds <= 600.0)
    {
        return Err("--clients, --objects, --batch must be > 0 and --seconds in (0, 600]".into());
    }
    if o.mix_clients == 0
        || !(o.mix_seconds > 0.0 && o.mix_seconds <= 600.0)
        || !(0.0..=1.0).contains(&o.put_share)
        || o.hold > 10_000
    {
        return Err(
            "--mix-clients must be > 0, --mix-seconds in (0, 600], --put-share in [0, 1], \
             --hold at most 10000"
                .into(),
        );
    }
    Ok(o)
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
use nshard_remote::testing::random_bytes;

#[derive(Default, Clone)]
struct Tally {
    latencies: Vec<Duration>,
    bytes: u64,
    failures: Vec<String>,
    /// 429 answers (upload slots full): the client would retry; not a failure.
    throttled: u64,
    /// 5xx answers (also counted as failures).
    server_errors: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies.extend(o.latencies);
        self.bytes += o.bytes;
        self.failures.extend(o.failures);
        self.throttled += o.throttled;
        self.server_errors += o.server_errors;
    }

    /// Records an answer that was not the expected success.
    fn status(&mut self, what: &str, s: StatusCode) {
        if s == StatusCode::TOO_MANY_REQUESTS {
            self.throttled += 1;
            return;
        }
        if s.is_server_error() {
            self.server_errors += 1;
        }
        self.failures.push(format!("{what}: {s}"));
    }

    fn report(mut self, phase: &str, elapsed: Duration) -> serde_json::Value {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
                self.latencies[i].as_secs_f64() * 1000.0
            }
        };
        let secs = elapsed.as_secs_f64();
        let r = serde_json::json!({
            "phase": phase,
            "requests": n,
            "failures": self.failures.len(),
            "throttled_429": self.throttled,
            "server_errors_5xx": self.server_errors,
            "seconds": round(secs),
            "requests_per_s": round(n as f64 / secs),
            "mb_per_s": round(self.bytes as f64 / 1e6 / secs),
            "p50_ms": round(pct(0.50)),
            "p99_ms": round(pct(0.99)),
            "max_ms": round(pct(1.0)),
        });
        for f in self.failures.iter().take(5) {
            eprintln!("{phase}: failure: {f}");
        }
        r
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn authed(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("NSHARD_TOKEN") {
        Ok(t) if !t.is_empty() => req.bearer_auth(t),
        _ => req,
    }
}

#[tokio::main]
async fn main() {
    let o = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    nshard_remote::install_tls_provider();
    let client = Client::builder()
        .pool_max_idle_per_host(o.clients)
        .tcp_nodelay(true)
        .build()
        .expect("HTTP client");

    eprintln!(
        "load: encoding {} objects of {} bytes…",
        o.objects, o.object_size
    );
    let objects: Arc<Vec<(ObjectId, bytes::Bytes)>> = Arc::new(
        (0..o.objects)
            .map(|i| {
                let raw = random_bytes(o.object_size, 0x5eed_0000 + i as u64);
                let enc = Encoder::new().encode(&raw, DataHint::Unknown);
                (ObjectId::of(&raw), bytes::Bytes::from(enc))
            })
            .collect(),
    );
    let mut results = Vec::new();
    let mut failed = 0;

    // 1. PUT every object once, `clients` at a time.
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let tallies = run_clients(o.clients, |_| {
        let (client, objects, next, o) = (client.clone(), objects.clone(), next.clone(), o.clone());
        async move {
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, enc)) = objects.get(i) else {
                    break;
                };
                let start = Instant::now();
                let req = client
                    .put(format!("{}/v1/objects/{id}", o.url))
                    .body(enc.clone());
                match authed(req).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let _ = r.bytes().await;
                        t.bytes += enc.len() as u64;
                    }
                    // Every object must be stored for the later phases: a 429 fails here too.
                    Ok(r) => {
                        t.status(&format!("PUT {id}"), r.status());
                        if r.status() == StatusCode::TOO_MANY_REQUESTS {
                            t.failures.push(format!("PUT {id}: 429"));
                        }
                    }
                    Err(e) => t.failures.push(format!("PUT {id}: {}", chain(&e))),
                }
                t.latencies.push(start.elapsed());
            }
            t
        }
    })
    .await;
    let r = tallies.report("put", t0.elapsed());
    failed += r["failures"].as_u64().unwrap_or(0);
    results.push(r);

    // 2. GET random objects (compared byte for byte).
    if o.phases.iter().any(|p| p == "get") {
        let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
        let budget = Arc::new(AtomicUsize::new(o.max_requests));
        let t0 = Instant::now();
        let tallies = run_clients(o.clients, |c| {
            let (client, objects, budget, o) =
                (client.clone(), objects.clone(), budget.clone(), o.clone());
            async move {
                let mut t = Tally::default();
                let mut k = c as u64 + 1;
                while Instant::now() < deadline && take(&budget) {
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let (id, enc) = &objects[(k >> 33) as usize % objects.len()];
                    let start = Instant::now();
                    let req = client.get(format!("{}/v1/objects/{id}", o.url));
                    match authed(req).send().await {
                        Ok(r) if r.status() == StatusCode::OK => match r.bytes().await {
                            Ok(b) if b == *enc => t.bytes += b.len() as u64,
                            Ok(_) => t.failures.push(format!("GET {id}: wrong bytes")),
                            Err(e) => t.failures.push(format!("GET {id}: {}", chain(&e))),
                        },
                        Ok(r) => t.status(&format!("GET {id}"), r.status()),
                        Err(e) => t.failures.push(format!("GET {id}: {}", chain(&e))),
                    }
                    t.latencies.push(start.elapsed());
                }
                t
            }
        })
        .await;
        let r = tallies.report("get", t0.elapsed());
        failed += r["failures"].as_u64().unwrap_or(0);
        results.push(r);
    }

    // 3. missing batches: half stored ids, half absent ones; the answer must be exactly the absent.
    if o.phases.iter().any(|p| p == "missing") {
        let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
        let budget = Arc::new(AtomicUsize::new(o.max_requests));
        let t0 = Instant::now();
        let tallies = run_clients(o.clients, |c| {
            let (client, objects, budget, o) =
                (client.clone(), objects.clone(), budget.clone(), o.clone());
            async move {
                let mut t = Tally::default();
                let mut round = 0u64;
                while Instant::now() < deadline && take(&budget) {
                    round += 1;
                    let mut ids = Vec::with_capacity(o.batch);
                    let mut absent = Vec::new();
                    for j in 0..o.batch {
                        if j % 2 == 0 {
                            ids.push(objects[(j / 2 + c) % objects.len()].0);
                        } else {
                            let id = ObjectId::of(format!("absent {c} {round} {j}").as_bytes());
                            ids.push(id);
                            absent.push(id);
                        }
                    }
                    let body =
                        serde_json::to_vec(&serde_json::json!({ "ids": ids })).expect("json");
                    let len = body.len() as u64;
                    let start = Instant::now();
                    let req = client
                        .post(format!("{}/v1/objects/missing", o.url))
                        .header("content-type", "application/json")
                        .body(body);
                    match authed(req).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            match r.json::<serde_json::Value>().await {
                                Ok(v) => {
                                    let got: Vec<ObjectId> =
                                        serde_json::from_value(v["missing"].clone())
                                            .unwrap_or_default();
                                    if got == absent {
                                        t.bytes += len;
                                    } else {
                                        t.failures.push(format!(
                                            "missing: {} ids answered, {} expected",
                                            got.len(),
                                            absent.len()
                                        ));
                                    }
                                }
                                Err(e) => t.failures.push(format!("missing: {}", chain(&e))),
                            }
                        }
                        Ok(r) => t.status("missing", r.status()),
                        Err(e) => t.failures.push(format!("missing: {}", chain(&e))),
                    }
                    t.latencies.push(start.elapsed());
                }
                t
            }
        })
        .await;
        let r = tallies.report("missing", t0.elapsed());
        failed += r["failures"].as_u64().unwrap_or(0);
        results.push(r);
    }

    // 4. The 80/20 mix, without and then with held connections.
    let mut mixed = serde_json::Value::Null;
    if o.phases.iter().any(|p| p == "mix") {
        drop(client);
        let (report, mix_failed) = mix::phases(&o, objects.clone()).await;
        failed += mix_failed;
        mixed = report;
    }

    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "clients": o.clients,
            "objects": o.objects,
            "object_size": o.object_size,
            "batch": o.batch,
            "phases": results,
            "mix": mixed,
        }))
        .expect("json")
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

async fn run_clients<F, Fut>(n: usize, make: F) -> Tally
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|c| tokio::spawn(make(c))).collect();
    let mut all = Tally::default();
    for h in handles {
        match h.await {
            Ok(t) => all.merge(t),
            Err(e) => all.failures.push(format!("client task: {e}")),
        }
    }
    all
}

/// An error with its sources ("error sending request: connection closed before …").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
