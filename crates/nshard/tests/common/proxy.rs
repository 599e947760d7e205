//! A TCP proxy on 127.0.0.1 in front of a real `nshard serve` that injects the faults a network
//! and a busy server produce: error statuses (429, 5xx) and connections dropped mid-response.
//! Faults are applied by count, never by timing: the proxy serves one request per connection (it
//! asks the server to close after answering, and the client sees that), so "the next
//! connections" are "the next requests".

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to one connection.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Relays the request and its response untouched.
    Pass,
    /// Reads the request (head and body) and answers with this status, then closes.
    Status(u16),
    /// Relays the request, and the response up to this many bytes, then drops the connection.
    CutResponseAfter(usize),
}

struct State {
    upstream: String,
    /// Faults for the next connections, in order; then connections are relayed untouched.
    plan: Mutex<VecDeque<Fault>>,
    /// Bytes of responses left before every connection is cut (None: unlimited).
    budget: Mutex<Option<usize>>,
    /// Faults applied so far.
    served: AtomicUsize,
    /// Answer conditional writes (`If-None-Match`) with 501, as a store without them does.
    refuse_conditional: AtomicBool,
    /// Conditional writes refused so far.
    refused: AtomicUsize,
    /// The body to answer `GET /v1/health` with instead of the server's (a server of another
    /// version).
    health: Mutex<Option<String>>,
    stop: AtomicBool,
}

/// A running proxy; stops accepting when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: String,
    state: Arc<State>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`) applying `plan` to its first connections.
    pub fn start(upstream: &str, plan: &[Fault]) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            plan: Mutex::new(plan.iter().copied().collect()),
            budget: Mutex::new(None),
            served: AtomicUsize::new(0),
            refuse_conditional: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            health: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || handle(&st, conn));
            }
        });
        FaultProxy {
            url: format!("http://{addr}"),
            addr,
            state,
        }
    }

    /// From now on, relays at most `bytes` more bytes of responses in all, then cuts every
    /// connection (a network that goes down mid-transfer).
    pub fn cut_all_after(&self, bytes: usize) {
        *self.state.budget.lock().expect("lock") = Some(bytes);
    }

    /// From now on, answers every request carrying `If-None-Match` with `501 Not Implemented`
    /// (an S3-compatible store without conditional writes) and relays the others.
    pub fn refuse_conditional_writes(&self) {
        self.state.refuse_conditional.store(true, Ordering::SeqCst);
    }

    /// From now on, answers `GET /v1/health` with `body` (JSON) and relays the other requests:
    /// the server then looks like one of another version.
    pub fn answer_health_with(&self, body: &str) {
        *self.state.health.lock().expect("lock") = Some(body.to_string());
    }

    /// How many conditional writes were refused.
    pub fn conditional_writes_refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// How many planned faults were applied.
    pub fn faults_served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn handle(st: &State, client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let fault = st.plan.lock().expect("lock").pop_front();
    match fault {
        Some(Fault::Status(code)) => {
            if read_request(&client).is_some() {
                st.served.fetch_add(1, Ordering::SeqCst);
                let body = format!("{{\"error\":\"injected {code}\",\"code\":\"injected\"}}");
                let resp = format!(
                    "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\nretry-after: 0\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut c = &client;
                let _ = c.write_all(resp.as_bytes());
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::CutResponseAfter(n)) => {
            st.served.fetch_add(1, Ordering::SeqCst);
            relay(st, client, Some(n));
        }
        Some(Fault::Pass) | None => relay(st, client, None),
    }
}

/// Reads one request's head and its Content-Length body, and returns it asking the server to
/// close the connection after answering; None if the client went away.
fn read_request(mut c: &TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    let head = String::from_utf8_lossy(&head[..head.len() - 2]).into_owned();
    let mut out: Vec<u8> = head
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<String>()
        .into_bytes();
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

/// Answers the request on `client` with `status` and `body` itself, then closes.
fn answer(client: &TcpStream, status: &str, content_type: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut c = client;
    let _ = c.write_all(resp.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}

/// Relays one request to upstream and its response (until the server closes) back, cutting the
/// response after `limit` bytes or when the proxy's budget runs out.
fn relay(st: &State, client: TcpStream, limit: Option<usize>) {
    let Some(request) = read_request(&client) else {
        return;
    };
    if let Some(body) = st.health.lock().expect("lock").clone() {
        if request.starts_with(b"GET /v1/health ") {
            answer(&client, "200 OK", "application/json", &body);
            return;
        }
    }
    if st.refuse_conditional.load(Ordering::SeqCst) {
        let head_end = request
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(request.len());
        let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
        if head.lines().any(|l| l.starts_with("if-none-match:")) {
            st.refused.fetch_add(1, Ordering::SeqCst);
            let body =
                "<Error><Code>NotImplemented</Code><Message>conditional writes</Message></Error>";
            answer(&client, "501 Not Implemented", "application/xml", body);
            return;
        }
    }
    let Ok(up) = TcpStream::connect(&st.upstream) else {
        return;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    if (&up).write_all(&request).is_err() {
        return;
    }
    let mut up_in = &up;
    let mut c_out = &client;
    let mut buf = [0u8; 8192];
    let mut sent = 0usize;
    while let Ok(n) = up_in.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut allowed = limit.map_or(n, |l| n.min(l.saturating_sub(sent)));
        {
            let mut budget = st.budget.lock().expect("lock");
            if let Some(b) = budget.as_mut() {
                allowed = allowed.min(*b);
                *b -= allowed;
            }
        }
        if c_out.write_all(&buf[..allowed]).is_err() {
            break;
        }
        sent += allowed;
        if allowed < n {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}
