//! The server's memory under load with its defaults (issue 26, case 13). glibc gives every thread
//! that allocates an arena of its own and keeps freed object buffers in it, so the server's
//! resident memory followed the number of threads that ever held an object: tokio's blocking
//! pool started one per blocking task in flight (30 to 60 in `bench/load.sh`, 530 MiB peak). The
//! server now runs its blocking work on two threads per core plus one per commit slot, whatever
//! the number of requests; `bench/load.sh` checks the resident memory itself (<= 256 MiB).

mod common;

#[cfg(target_os = "linux")]
#[test]
fn a_burst_of_gets_and_puts_runs_on_a_bounded_number_of_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use common::serve::{client, object, Served};

    /// The server's threads now (`Threads:` of /proc/PID/status).
    fn threads(pid: u32) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()
    }

    const STORED: u64 = 16;
    const CLIENTS: u64 = 64;
    const LEN: usize = 2 << 20;
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    let stored: Arc<Vec<_>> = Arc::new((0..STORED).map(|s| object(LEN, s)).collect());
    let http = client();
    for (id, _, enc) in stored.iter() {
        let r = http
            .put(server.at(&format!("/v1/objects/{id}")))
            .body(enc.clone())
            .send()
            .expect("put");
        assert_eq!(r.status().as_u16(), 201);
    }

    let pid = server.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(threads(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    // Every client GETs stored objects and PUTs a new one, all at once: far more blocking work
    // in flight (reads, verifications, staging writes, fsyncs) than the pool has threads.
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, stored) = (server.url.clone(), stored.clone());
            std::thread::spawn(move || {
                let http = client();
                for k in 0..3 {
                    let (id, _, enc) = &stored[((c + k) % STORED) as usize];
                    let r = http
                        .get(format!("{url}/v1/objects/{id}"))
                        .send()
                        .expect("get");
                    assert_eq!(r.status().as_u16(), 200);
                    assert!(r.bytes().expect("body") == enc[..], "GET {id}: wrong bytes");
                }
                let (id, _, enc) = object(LEN, 1000 + c);
                let r = http
                    .put(format!("{url}/v1/objects/{id}"))
                    .body(enc)
                    .send()
                    .expect("put");
                // 429 (all upload slots busy) is a fine answer here; anything else is not.
                assert!(
                    matches!(r.status().as_u16(), 201 | 429),
                    "PUT {id}: {}",
                    r.status()
                );
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
    stop.store(true, Ordering::Relaxed);
    let most = sampler.join().expect("sampler");

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // The main thread, one async worker per core, and the blocking pool: two per core plus the
    // 4 commit slots.
    let bound = 1 + cores + (2 * cores + 4);
    eprintln!("server threads: at most {most} (bound {bound})");
    assert!(
        most <= bound,
        "the server ran {most} threads under the burst, more than {bound}"
    );
}
