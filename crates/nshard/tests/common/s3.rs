//! The S3-compatible server the S3 tests run against: a real SeaweedFS on 127.0.0.1.
//!
//! `.ci/run` starts one (`.ci/seaweedfs.sh start`) and exports `AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
//! `NSHARD_TEST_S3_BUCKET` and `NSHARD_TEST_WEED` (the `weed` binary, for tests that start their
//! own instance). Without them a test prints why it skips, unless `CI` or `NSHARD_TEST_S3=1` is
//! set: then a missing server is a failure, never a silent skip.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a SeaweedFS instance gets to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the S3 test server is and how to log in.
#[derive(Clone, Debug)]
pub struct S3Env {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// An existing bucket.
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

/// Whether a missing S3 server must fail the test rather than skip it.
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("NSHARD_TEST_S3").is_ok_and(|v| v == "1")
}

fn unavailable<T>(why: &str) -> Option<T> {
    if required() {
        panic!("the S3 test server is required here (CI or NSHARD_TEST_S3=1) but {why}; start it with `.ci/seaweedfs.sh start` and export what it prints");
    }
    eprintln!("SKIPPED: no S3 test server ({why}); run `.ci/seaweedfs.sh start` and export what it prints to run this test");
    None
}

/// `host:port` of a loopback `http://` URL, or `None` for anything else (tests never leave this
/// machine).
fn loopback_authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]").then(|| rest.to_string())
}

impl S3Env {
    /// The test server from the environment (see the module doc).
    pub fn get() -> Option<S3Env> {
        let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
            return unavailable("AWS_ENDPOINT_URL is not set");
        };
        let Some(auth) = loopback_authority(&endpoint) else {
            return unavailable(&format!(
                "AWS_ENDPOINT_URL={endpoint} is not a loopback http:// URL"
            ));
        };
        if TcpStream::connect(&auth).is_err() {
            return unavailable(&format!("nothing answers at {endpoint}"));
        }
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Some(S3Env {
            endpoint,
            bucket: std::env::var("NSHARD_TEST_S3_BUCKET").unwrap_or_else(|_| "nshard-test".into()),
            key_id: var("AWS_ACCESS_KEY_ID"),
            secret: var("AWS_SECRET_ACCESS_KEY"),
        })
    }

    /// The `AWS_*` variables a client of this server needs.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// A fresh `s3://bucket/prefix` URL for one test (unique per process and call).
    pub fn fresh_url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, unique(name))
    }
}

/// `name-PID-NANOS`: a key prefix no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Five free loopback TCP ports `p` such that each `p + 10000` (SeaweedFS's gRPC port for it) is
/// free too, all ten distinct: every port stays bound until all are chosen. Another process can
/// still take one before SeaweedFS binds it; [`OwnSeaweed::start`] then tries other ports.
fn free_ports() -> [u16; 5] {
    let mut held = Vec::new();
    let mut ports = [0u16; 5];
    let mut found = 0;
    for _ in 0..200 {
        if found == ports.len() {
            return ports;
        }
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if !(20000..=55000).contains(&p) {
            continue;
        }
        if let Ok(grpc) = TcpListener::bind(("127.0.0.1", p + 10000)) {
            held.extend([l, grpc]);
            ports[found] = p;
            found += 1;
        }
    }
    assert_eq!(found, ports.len(), "no five free port pairs found");
    ports
}

/// How many sets of ports [`OwnSeaweed::start`] tries when SeaweedFS finds one taken.
const PORT_ATTEMPTS: usize = 3;

/// A SeaweedFS instance of a test's own (`weed mini` on free ports, data in a directory the test
/// owns), for tests that stop and restart the store. Killed when dropped.
pub struct OwnSeaweed {
    child: Option<Child>,
    weed: PathBuf,
    dir: PathBuf,
    ports: [u16; 5],
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub env: S3Env,
}

impl OwnSeaweed {
    /// Starts one with bucket `bucket` and data under `dir`, or `None` (after printing why, and
    /// only outside CI) when no `weed` binary is available.
    pub fn start(dir: &Path, bucket: &str) -> Option<OwnSeaweed> {
        let Some(weed) = std::env::var_os("NSHARD_TEST_WEED").map(PathBuf::from) else {
            return unavailable("NSHARD_TEST_WEED (the weed binary) is not set");
        };
        let env = S3Env::get()?;
        let mut s = OwnSeaweed {
            child: None,
            weed,
            dir: dir.to_path_buf(),
            ports: [0; 5],
            endpoint: String::new(),
            env: S3Env {
                bucket: bucket.to_string(),
                ..env
            },
        };
        // Ports are chosen free, but a process elsewhere on the machine (an outgoing connection
        // takes an ephemeral port) can bind one first: then SeaweedFS says so and other ports
        // are tried. A restart keeps its ports (clients know the endpoint).
        for attempt in 1..=PORT_ATTEMPTS {
            s.ports = free_ports();
            s.endpoint = format!("http://127.0.0.1:{}", s.ports[0]);
            s.env.endpoint = s.endpoint.clone();
            match s.launch() {
                Ok(()) => return Some(s),
                Err(Launch::PortTaken(_)) if attempt < PORT_ATTEMPTS => continue,
                Err(Launch::PortTaken(log) | Launch::Failed(log)) => {
                    panic!("SeaweedFS did not start; log:\n{log}")
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the process again (after [`OwnSeaweed::stop`]) on the same ports and waits until
    /// its S3 port answers.
    pub fn restart(&mut self) {
        if let Err(Launch::PortTaken(log) | Launch::Failed(log)) = self.launch() {
            panic!("SeaweedFS did not start; log:\n{log}");
        }
    }

    /// Starts the process and waits until its S3 port answers, or until it fails: a port taken
    /// by someone else (SeaweedFS says so in its log, then it is stopped), an exit, or
    /// [`START_TIMEOUT`].
    fn launch(&mut self) -> Result<(), Launch> {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).expect("mkdir");
        let [s3, master, volume, filer, admin] = self.ports;
        let log_path = self.dir.with_extension("log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log");
        // What this launch logs: the file also holds earlier ones.
        let log_from = log.metadata().map_or(0, |m| m.len() as usize);
        let this_log = || {
            let all = std::fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(all.get(log_from..).unwrap_or_default()).into_owned()
        };
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", self.dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-admin.port={admin}"))
            .arg(format!("-bucket={}", self.env.bucket))
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                // Tests talk to 127.0.0.1 only: no reports to SeaweedFS's telemetry service.
                "-master.telemetry=false",
            ])
            .env("AWS_ACCESS_KEY_ID", &self.env.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.env.secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/", self.endpoint);
        nshard_remote::install_tls_provider();
        loop {
            // Any HTTP answer (403 without a signature) means the S3 gateway is up.
            if reqwest::blocking::get(&url).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let log = this_log();
            if log.contains("Port allocation failed") || log.contains("address already in use") {
                self.stop();
                return Err(Launch::PortTaken(log));
            }
            if exited {
                // Reaped already: nothing to signal (its pid may belong to another process now).
                self.child = None;
                return Err(Launch::Failed(format!("(weed exited)\n{log}")));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(Launch::Failed(format!(
                    "(no answer within {START_TIMEOUT:?})\n{log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the process (SIGTERM, SIGKILL after 20 s) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Why [`OwnSeaweed::launch`] failed, with what the process logged.
enum Launch {
    PortTaken(String),
    Failed(String),
}

impl Drop for OwnSeaweed {
    fn drop(&mut self) {
        self.stop();
    }
}
