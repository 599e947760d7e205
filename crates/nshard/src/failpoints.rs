//! Crash points for the crash-test suite (built only with the `failpoints` feature).
//!
//! `NSHARD_FAILPOINTS=name[@N][,…]` makes the process stop for good the N-th time (default: the
//! first) it reaches the crash point `name`, after printing `nshard-failpoint: name reached` on
//! stderr; the test then kills it with SIGKILL, exactly as a crash or `kill -9` would. With
//! `NSHARD_FAILPOINT_RESUME=FILE` it goes on instead once FILE exists (a race made deterministic).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads `NSHARD_FAILPOINTS` and arms the points it names.
pub fn setup() {
    let Ok(spec) = std::env::var("NSHARD_FAILPOINTS") else {
        return;
    };
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, nth) = match item.split_once('@') {
            Some((n, k)) => (n.to_string(), k.parse::<usize>().unwrap_or(1).max(1)),
            None => (item.to_string(), 1),
        };
        let hits = Arc::new(AtomicUsize::new(0));
        let label = name.clone();
        let armed = fail::cfg_callback(name, move || {
            if hits.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "nshard-failpoint: {label} reached");
                let _ = err.flush();
                drop(err);
                // With NSHARD_FAILPOINT_RESUME=FILE the process goes on once FILE exists (a test
                // changes the world under it first); at most two minutes.
                if let Some(resume) = std::env::var_os("NSHARD_FAILPOINT_RESUME") {
                    let resume = std::path::PathBuf::from(resume);
                    let until = std::time::Instant::now() + Duration::from_secs(120);
                    while !resume.exists() && std::time::Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        });
        if let Err(e) = armed {
            eprintln!("nshard-failpoint: cannot arm {item}: {e}");
        }
    }
}
