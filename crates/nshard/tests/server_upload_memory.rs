//! Upload memory: concurrent large PUTs stream to staging files, so the server's peak RSS stays
//! within [`RSS_LIMIT`] whatever their number and size (Linux: the peak is read from
//! `/proc/PID/status`).

mod common;

use std::io::Read;
use std::time::Duration;

use common::s3::S3Env;
use common::serve::Served;
use nshard_core::format::{
    OBJECT_FORMAT_VERSION as FORMAT_VERSION, OBJECT_HEADER_LEN as HEADER_LEN, OBJECT_MAGIC as MAGIC,
};
use nshard_core::ObjectId;

/// The bound the server must hold.
const RSS_LIMIT: u64 = 256 << 20;

/// A raw-codec object of `len` bytes generated on the fly: a 1 MiB block stamped with the seed and
/// the block number, so no two blocks (or objects) are alike.
struct Gen {
    base: Vec<u8>,
    seed: u64,
    len: u64,
    pos: u64,
}

impl Gen {
    fn new(len: u64, seed: u64) -> Gen {
        Gen {
            base: common::random_bytes(1 << 20, 77),
            seed,
            len,
            pos: 0,
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
        h.extend_from_slice(&self.len.to_le_bytes());
        h
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let block = self.pos >> 20;
        let off = (self.pos & ((1 << 20) - 1)) as usize;
        let n = buf.len().min((1 << 20) - off).min(left as usize);
        buf[..n].copy_from_slice(&self.base[off..off + n]);
        // Stamp the first 16 bytes of each block.
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = off + i;
            if at >= 16 {
                break;
            }
            let stamp = if at < 8 { self.seed } else { block };
            *b ^= stamp.to_le_bytes()[at % 8];
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn object_id(len: u64, seed: u64) -> ObjectId {
    let mut g = Gen::new(len, seed);
    let mut h = nshard_core::format::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = g.read(&mut buf).expect("gen");
        if n == 0 {
            return h.finish();
        }
        h.update(&buf[..n]);
    }
}

/// Peak resident set of `pid` in bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// `n` concurrent PUTs of `len`-byte objects; all must be stored.
fn upload_concurrently(server: &Served, n: u64, len: u64) {
    nshard_remote::install_tls_provider();
    let threads: Vec<_> = (0..n)
        .map(|seed| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let id = object_id(len, seed);
                let g = Gen::new(len, seed);
                let body = std::io::Cursor::new(g.header()).chain(g);
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(600))
                    .build()
                    .expect("client");
                let resp = client
                    .put(format!("{url}/v1/objects/{id}"))
                    .header("content-length", (len + HEADER_LEN as u64).to_string())
                    .body(reqwest::blocking::Body::sized(
                        body,
                        len + HEADER_LEN as u64,
                    ))
                    .send()
                    .expect("put");
                assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("upload thread");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn eight_concurrent_120_mib_uploads_stay_under_256_mib() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    upload_concurrently(&server, 8, 120 << 20);
    let peak = peak_rss(server.pid());
    eprintln!("server peak RSS: {} MiB", peak >> 20);
    assert!(
        peak <= RSS_LIMIT,
        "server peak RSS {} MiB > {} MiB",
        peak >> 20,
        RSS_LIMIT >> 20
    );
    assert_eq!(server.object_files().len(), 8);
}

#[cfg(target_os = "linux")]
#[test]
fn s3_backed_server_streams_large_uploads_too() {
    let Some(env) = S3Env::get() else { return };
    let d = tempfile::tempdir().expect("tmp");
    let vars = env.vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Served::start_store(
        &d.path().join("server"),
        &env.fresh_url("upload-memory"),
        &[],
        &envs,
    );
    // Over the 16 MiB multipart threshold; smaller than the directory case to spare the test
    // server's disk.
    upload_concurrently(&server, 4, 64 << 20);
    let peak = peak_rss(server.pid());
    eprintln!("server peak RSS: {} MiB", peak >> 20);
    assert!(
        peak <= RSS_LIMIT,
        "server peak RSS {} MiB > {} MiB",
        peak >> 20,
        RSS_LIMIT >> 20
    );
}

/// Many readers that stop reading: only `--max-downloads` objects are held in memory at once,
/// the others wait for a turn, and the server's peak RSS stays within [`RSS_LIMIT`].
#[cfg(target_os = "linux")]
#[test]
fn stalled_downloads_hold_at_most_max_downloads_objects_in_memory() {
    use std::io::Write;
    const N: u64 = 32;
    const LEN: u64 = 12 << 20;
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &["--max-downloads", "4"], &[]);
    upload_concurrently(&server, N, LEN);
    // Forget the uploads' peak (writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "5").expect("clear_refs");
    let readers: Vec<_> = (0..N)
        .map(|seed| {
            let mut c = common::serve::raw_connect(&server.addr);
            let head = format!(
                "GET /v1/objects/{} HTTP/1.1\r\nHost: {}\r\n\r\n",
                object_id(LEN, seed),
                server.addr
            );
            c.write_all(head.as_bytes()).expect("GET head");
            c // never read: the response stalls in the socket
        })
        .collect();
    // Four objects are served (and stall); the others wait for a slot. Wait (bounded) until four
    // are loaded, then until every GET has reached the server: four holding a slot and the rest
    // waiting for one, so that a server that would load more than four has done so.
    let four = 4 * (LEN + HEADER_LEN as u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while common::serve::metric_value(&server.metrics(), "nshard_sent_bytes_total").unwrap_or(0)
        < four
    {
        assert!(
            std::time::Instant::now() < deadline,
            "four GETs never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = server.metrics();
        let gauge = |name| common::serve::metric_value(&m, name);
        if gauge("nshard_downloads_in_flight") == Some(4)
            && gauge("nshard_downloads_waiting") == Some(N - 4)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the GETs never settled to 4 served and {} waiting:\n{m}",
            N - 4
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let peak = peak_rss(server.pid());
    eprintln!(
        "server peak RSS with {N} stalled readers: {} MiB",
        peak >> 20
    );
    assert!(
        peak <= RSS_LIMIT,
        "server peak RSS {} MiB > {} MiB",
        peak >> 20,
        RSS_LIMIT >> 20
    );
    drop(readers);
    // The slots come back: an ordinary GET is answered.
    let id = object_id(LEN, 0);
    let got = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .get(format!("{}/v1/objects/{id}", server.url))
        .send()
        .expect("GET after the stalled readers left");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(
        got.bytes().expect("body").len() as u64,
        LEN + HEADER_LEN as u64
    );
}
