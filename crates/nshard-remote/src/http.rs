//! The HTTP remote: a client of `nshard serve` (protocol v1) over `http://` or `https://` (rustls).
//!
//! - `missing` queries go in batches of at most the server's `max_batch` (learned from
//!   `GET /v1/health` when the remote is opened, which also checks that the URL is an nshard server
//!   speaking protocol 1).
//! - Objects travel in their encoded form; `PUT` bodies are verified by the server before they become
//!   visible, `GET` bodies are bounded by the server's object limit and verified by the caller.
//! - Failures that may pass (connection refused or reset, timeouts, 5xx, 429) are
//!   [`RemoteError::Transient`](nshard_core::RemoteError::Transient), which the transfer engine retries with backoff; the rest (a refused
//!   token, an object the server rejects, a bad request) fail at once with the server's message.
//! - The bearer token is sent in the `Authorization` header only; it is never part of a URL, an
//!   error message or a `Debug` output.
//! - Records are sent without their writer (`SPACE/KEY/STAMP`): the server names the writer after
//!   the token. Listing and deleting objects and deleting records need a token with the server's
//!   admin scope; a 403 there says so.
//! - Delta encodings (`/v1/deltas/…`, see [`deltas`]) are used only with a server that announces
//!   them in its health answer.

mod deltas;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{header, Client, Response, StatusCode};

use nshard_core::backend::{
    DeltaName, ObjectCheck, RecordName, StoredDelta, StoredObject, DELETE_BATCH, MAX_RECORD_BYTES,
    MISSING_BATCH,
};
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::protocol::{
    self, DeleteObjects, DeleteRecords, Deleted, ErrorBody, Health, MissingRequest,
    MissingResponse, ObjectPage, RecordList, RecordPut, CORRUPT_OBJECT, NO_SUCH_RECORD,
    OBJECT_PAGE_LIMIT, PROTOCOL_VERSION,
};
use nshard_core::{Corruption, Error, ObjectId, RemoteFailure, Result, Retry, Store};

use crate::{error_chain as chain, OpenOptions};
use nshard_core::{RemoteError, StoreError};

/// What a server that is not a NeuroShard server said, for a person: an HTML page's title (or
/// "an HTML page"), else the start of its text, never cut in the middle of a word.
fn foreign_message(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.trim_start().starts_with('<') {
        let title = lower
            .find("<title>")
            .and_then(|a| lower[a + 7..].find("</title>").map(|b| (a + 7, a + 7 + b)))
            .map(|(a, b)| text[a..b].split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!(
                "an HTML page titled {:?} (not a NeuroShard server?)",
                t.chars().take(120).collect::<String>()
            ),
            None => "an HTML page (not a NeuroShard server?)".to_string(),
        };
    }
    let t = text.trim();
    if t.chars().count() <= 300 {
        return t.to_string();
    }
    let cut: String = t.chars().take(300).collect();
    match cut.rfind(char::is_whitespace) {
        Some(i) => format!("{}…", &cut[..i]),
        None => format!("{cut}…"),
    }
}

/// Largest answer read from a health check or an object check (they are a few hundred bytes).
const SMALL_ANSWER_CAP: usize = 64 * 1024;
/// Most bytes of an error answer kept for the message.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Largest record listing read (about 1.5 million names of at most 84 bytes in JSON).
const RECORD_LIST_CAP: usize = 128 << 20;
/// Largest page of the object listing read ([`OBJECT_PAGE_LIMIT`] entries of at most about 130
/// bytes in JSON, with room to spare).
const OBJECT_PAGE_CAP: usize = SMALL_ANSWER_CAP + OBJECT_PAGE_LIMIT * 200;
/// Most pages an object listing follows (a billion objects): a server whose listing never ends
/// gets an error, not an endless loop.
const MAX_OBJECT_PAGES: usize = 100_000;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may stay silent in the middle of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A bearer token, redacted in `Debug`.
#[derive(Clone)]
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A NeuroShard server used as a remote.
#[derive(Clone, Debug)]
pub struct HttpStore {
    base: String,
    client: Client,
    token: Option<Token>,
    max_batch: usize,
    max_object_bytes: u64,
    /// The server hashes its own copies on request (`POST /v1/objects/{id}/verify`).
    verifies: bool,
    /// The server stores float objects (object format 4).
    float_objects: bool,
    /// The server keeps delta encodings (`/v1/deltas/…`).
    deltas: bool,
    /// The server holds deltas but takes no new ones ([`protocol::FEATURE_DELTAS_FROZEN`]).
    deltas_frozen: bool,
}

impl HttpStore {
    /// Connects to the server at `base` (`http(s)://host[:port][/path]`, no trailing slash) and
    /// checks that it speaks protocol v1.
    pub async fn connect(base: &str, opts: &OpenOptions) -> Result<HttpStore> {
        crate::install_tls_provider();
        // Every request says this client reads delta encodings itself (see DELTAS_HEADER).
        let mut headers = header::HeaderMap::new();
        headers.insert(
            protocol::DELTAS_HEADER,
            header::HeaderValue::from_static("1"),
        );
        let client = Client::builder()
            .user_agent(concat!("nshard/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                Error::Remote(RemoteError::Failed {
                    remote: base.to_string(),
                    kind: RemoteFailure::Other,
                    reason: format!("cannot set up the HTTP client: {}", chain(&e)),
                })
            })?;
        let mut store = HttpStore {
            base: base.to_string(),
            client,
            token: opts.token.clone().map(Token),
            max_batch: MISSING_BATCH,
            max_object_bytes: MAX_OBJECT_SIZE + 4096,
            verifies: false,
            float_objects: false,
            deltas: false,
            deltas_frozen: false,
        };
        // A busy or restarting server at connect time is retried like any other request.
        let (resp, _) = Retry::default()
            .run(|| async {
                let resp = store
                    .send(store.client.get(store.url(protocol::HEALTH)))
                    .await?;
                store.check(resp, "health check").await
            })
            .await;
        let body = store
            .body_capped(resp?, SMALL_ANSWER_CAP, "health check")
            .await?;
        let health: Health = serde_json::from_slice(&body).map_err(|e| {
            Error::Remote(RemoteError::Failed {
                remote: store.base.clone(),
                kind: RemoteFailure::Incompatible,
                reason: format!(
                    "does not look like a NeuroShard server (GET {}: {e})",
                    protocol::HEALTH,
                ),
            })
        })?;
        if health.protocol != PROTOCOL_VERSION {
            return Err(Error::Remote(RemoteError::Failed {
                remote: store.base.clone(),
                kind: RemoteFailure::Incompatible,
                reason: format!(
                    "the server speaks protocol {}, this nshard speaks {PROTOCOL_VERSION}; upgrade the older side",
                    health.protocol
                ),
            }));
        }
        store.verifies = health
            .features
            .iter()
            .any(|f| f == protocol::FEATURE_VERIFY);
        store.float_objects = health
            .features
            .iter()
            .any(|f| f == protocol::FEATURE_FLOAT_OBJECTS);
        store.deltas = health
            .features
            .iter()
            .any(|f| f == protocol::FEATURE_DELTAS);
        store.deltas_frozen = health
            .features
            .iter()
            .any(|f| f == protocol::FEATURE_DELTAS_FROZEN);
        if let Some(l) = health.limits {
            if let Some(b) = l.max_batch.filter(|&b| b > 0) {
                store.max_batch = b.min(MISSING_BATCH);
            }
            if let Some(m) = l.max_object_bytes {
                store.max_object_bytes = m.min(MAX_OBJECT_SIZE + 4096);
            }
        }
        Ok(store)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn object_url(&self, id: &ObjectId) -> String {
        self.url(&protocol::object_path(id))
    }

    /// Sends a request with the token; connection-level failures are transient.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(&t.0),
            None => req,
        };
        req.send().await.map_err(|e| self.transport(e))
    }

    fn transport(&self, e: reqwest::Error) -> Error {
        let e = e.without_url();
        let text = chain(&e);
        // https:// to a server that answers in plain HTTP: the TLS handshake reads an HTTP
        // answer as a corrupt record. Retrying cannot help, and "nothing answered" would mislead.
        if self.base.starts_with("https://")
            && (text.contains("InvalidContentType") || text.contains("corrupt message"))
        {
            return Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Incompatible,
                reason: format!(
                    "{text}\nhint: the server at {} answers without TLS: use http:// for a plain `nshard serve`, or put it behind a TLS proxy",
                    self.base
                ),
            });
        }
        if e.is_connect() {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!(
                    "{}\nhint: nothing answered at {}: is the server running (`nshard serve`) and are the host and port right?",
                    chain(&e),
                    self.base
                ),
            })
        } else if e.is_builder() {
            Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Other,
                reason: chain(&e),
            })
        } else {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: chain(&e),
            })
        }
    }

    /// The body of `resp`, at most `cap` bytes: a server answering with more (a hostile or
    /// misconfigured one sending gigabytes) gets an error instead of all of it buffered.
    async fn body_capped(&self, mut resp: Response, cap: usize, what: &str) -> Result<Vec<u8>> {
        let too_big = || {
            Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Incompatible,
                reason: format!("{what}: the answer is larger than {cap} bytes"),
            })
        };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if out.len() + chunk.len() > cap {
                return Err(too_big());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The text of an error answer (at most [`ERROR_BODY_CAP`] bytes of it).
    async fn error_text(&self, resp: Response) -> String {
        let mut resp = resp;
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = ERROR_BODY_CAP.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= ERROR_BODY_CAP {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Turns a non-success status into an error carrying the server's message.
    async fn check(&self, resp: Response, what: &str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = self.error_text(resp).await;
        Err(self.status_error(status, &text, what))
    }

    /// The error for a non-success `status` with body `text`.
    fn status_error(&self, status: StatusCode, text: &str, what: &str) -> Error {
        let message = serde_json::from_str::<ErrorBody>(text)
            .map(|b| b.error)
            .unwrap_or_else(|_| foreign_message(text));
        let reason = match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => format!(
                "{what}: the server needs a token (401: {message})\nhint: store one with `nshard login {}` (sent to this server whatever config names it); NSHARD_TOKEN and NSHARD_TOKEN_<REMOTE NAME> go only to a URL given with --remote or a remote defined in your own config (`nshard remote add --local`), never to one whose URL comes from the committed .shard/config.toml", self.base
            ),
            StatusCode::UNAUTHORIZED => format!(
                "{what}: the server refused the token (401: {message})\nhint: check the token stored with `nshard login {}`, or NSHARD_TOKEN (or NSHARD_TOKEN_<REMOTE NAME>)", self.base
            ),
            StatusCode::FORBIDDEN => format!(
                "{what}: the token is not allowed to do this (403: {message})"
            ),
            _ => format!("{what}: {status}: {message}"),
        };
        let kind = match status {
            StatusCode::UNAUTHORIZED => RemoteFailure::Unauthorized,
            StatusCode::FORBIDDEN => RemoteFailure::Forbidden,
            s if s.is_client_error() => RemoteFailure::Refused,
            _ => RemoteFailure::Other,
        };
        let transient = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        if transient {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason,
            })
        } else {
            Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind,
                reason,
            })
        }
    }

    /// Posts one batch of a deletion (an admin route) and reads its `{"deleted": n}` answer.
    async fn post_deletion(
        &self,
        path: &str,
        what: &str,
        body: serde_json::Result<Vec<u8>>,
    ) -> Result<()> {
        let body = body.map_err(|e| self.incompatible(format!("{what}: {e}")))?;
        let req = self
            .client
            .post(self.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.send(req).await?;
        let resp = self.check_records(resp, what, true).await?;
        let _: Deleted = self
            .json_answer(resp, SMALL_ANSWER_CAP, what, |b| serde_json::from_slice(b))
            .await?;
        Ok(())
    }

    /// Like [`HttpStore::check`] for the record and admin routes: a 404 or 405 means a server
    /// without them (an older `nshard serve`), and a 403 on an admin route (`admin`) says which
    /// token is needed.
    async fn check_records(&self, resp: Response, what: &str, admin: bool) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = self.error_text(resp).await;
        Err(self.records_error(status, &text, what, admin))
    }

    /// The error for a non-success answer of a record or admin route (see
    /// [`HttpStore::check_records`]).
    fn records_error(&self, status: StatusCode, text: &str, what: &str, admin: bool) -> Error {
        let e = self.status_error(status, text, what);
        let Error::Remote(RemoteError::Failed {
            remote,
            kind,
            reason,
        }) = e
        else {
            return e;
        };
        let (kind, hint) = match status {
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => (
                RemoteFailure::Incompatible,
                "hint: the server does not store records (an `nshard serve` older than this nshard?): upgrade it".to_string(),
            ),
            StatusCode::FORBIDDEN if admin => (
                kind,
                format!(
                    "hint: this needs a token with the admin scope (the server's token file: admin:<token>); store one with `nshard login {}`",
                    self.base
                ),
            ),
            _ => {
                return Error::Remote(RemoteError::Failed {
                    remote,
                    kind,
                    reason,
                })
            }
        };
        Error::Remote(RemoteError::Failed {
            remote,
            kind,
            reason: format!("{reason}\n{hint}"),
        })
    }

    /// A JSON answer of at most `cap` bytes, read with `parse` (`|b| serde_json::from_slice(b)`).
    /// One that does not parse is transient, like every other bad answer of this client (a proxy
    /// in between may have cut it).
    async fn json_answer<T>(
        &self,
        resp: Response,
        cap: usize,
        what: &str,
        parse: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T> {
        let body = self.body_capped(resp, cap, what).await?;
        parse(&body).map_err(|e| {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!("{what}: bad answer: {e}"),
            })
        })
    }

    /// A permanent error for an answer that breaks the protocol.
    fn incompatible(&self, reason: String) -> Error {
        Error::Remote(RemoteError::Failed {
            remote: self.base.clone(),
            kind: RemoteFailure::Incompatible,
            reason,
        })
    }

    /// One page of the object listing: the objects after `after`, and where the next page starts.
    async fn objects_page(&self, after: Option<&ObjectId>) -> Result<ObjectPage> {
        let what = "listing objects";
        let url = self.url(&protocol::objects_page_path(after, OBJECT_PAGE_LIMIT));
        let resp = self.send(self.client.get(url)).await?;
        let resp = self.check_records(resp, what, true).await?;
        let page: ObjectPage = self
            .json_answer(resp, OBJECT_PAGE_CAP, what, |b| serde_json::from_slice(b))
            .await?;
        // Ascending, after `after`, and `next` past them all: the listing makes progress and
        // lists no object twice.
        let mut last = after.copied();
        for o in &page.objects {
            if last.is_some_and(|l| o.id <= l) {
                return Err(
                    self.incompatible(format!("{what}: the server listed {} out of order", o.id))
                );
            }
            last = Some(o.id);
        }
        if let Some(next) = page.next {
            if last.is_some_and(|l| next < l) || after.is_some_and(|a| next <= *a) {
                return Err(self.incompatible(format!(
                    "{what}: the server's next page ({next}) does not follow its last one"
                )));
            }
        }
        Ok(page)
    }

    /// The encoded bytes at `url` (object or delta encoding `subject`, decoding to `id`): a 404
    /// is [`StoreError::ObjectMissing`], a copy the server found corrupt a corruption of `id`
    /// (not worth a retry), a body over the server's object limit refused.
    async fn download(
        &self,
        url: String,
        id: &ObjectId,
        what: &str,
        subject: &str,
    ) -> Result<Vec<u8>> {
        let resp = self.send(self.client.get(url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::Store(StoreError::ObjectMissing(*id)));
        }
        if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
            // Not worth a retry when the server found its copy corrupt (it moved it aside).
            let status = resp.status();
            let text = self.error_text(resp).await;
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) if b.code == CORRUPT_OBJECT => Error::corrupt(
                    *id,
                    Corruption::RemoteCopy,
                    format!("the server says: {}", b.error),
                ),
                _ => self.status_error(status, &text, what),
            });
        }
        let mut resp = self.check(resp, what).await?;
        let limit = self.max_object_bytes;
        let too_big = || {
            Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Refused,
                reason: format!("{subject} is larger than the {limit}-byte limit"),
            })
        };
        let declared = resp.content_length();
        if declared.is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(too_big());
            }
            out.extend_from_slice(&chunk);
        }
        if declared.is_some_and(|n| n != out.len() as u64) {
            return Err(Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!("download of {subject} ended early"),
            }));
        }
        Ok(out)
    }

    async fn missing_batch(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let body = MissingRequest {
            ids: ids.iter().map(ObjectId::to_hex).collect(),
        };
        let resp = self
            .send(self.client.post(self.url(protocol::MISSING)).json(&body))
            .await?;
        let resp = self.check(resp, "asking which objects it lacks").await?;
        // The answer lists at most the ids asked about.
        let cap = SMALL_ANSWER_CAP + 80 * ids.len();
        let body = self
            .body_capped(resp, cap, "asking which objects it lacks")
            .await?;
        let m: MissingResponse = serde_json::from_slice(&body).map_err(|e| {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!("asking which objects it lacks: bad answer: {e}"),
            })
        })?;
        Ok(m.missing)
    }
}

#[async_trait]
impl Store for HttpStore {
    fn display_url(&self) -> String {
        self.base.clone()
    }

    fn stores_float_objects(&self) -> bool {
        self.float_objects
    }

    async fn health(&self) -> Result<()> {
        let resp = self
            .send(self.client.get(self.url(protocol::HEALTH)))
            .await?;
        self.check(resp, "health check").await?;
        Ok(())
    }

    async fn size(&self, id: &ObjectId) -> Result<Option<u64>> {
        let resp = self.send(self.client.head(self.object_url(id))).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &format!("asking for {id}")).await?;
        // The header itself: reqwest's `content_length()` is the (empty) body's for a HEAD.
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        len.map(Some).ok_or_else(|| {
            Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Incompatible,
                reason: format!("HEAD of {id} answered without a length"),
            })
        })
    }

    async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for batch in ids.chunks(self.max_batch) {
            out.extend(self.missing_batch(batch).await?);
        }
        Ok(out)
    }

    async fn put(&self, id: &ObjectId, encoded: Vec<u8>) -> Result<bool> {
        if encoded.len() as u64 > self.max_object_bytes {
            return Err(Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Refused,
                reason: format!(
                    "object {id} is {} bytes, over the server's limit of {} bytes",
                    encoded.len(),
                    self.max_object_bytes
                ),
            }));
        }
        let req = self
            .client
            .put(self.object_url(id))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(encoded);
        let resp = self.send(req).await?;
        let resp = self.check(resp, &format!("uploading {id}")).await?;
        // 201: this upload wrote it; 200: the server already had it.
        Ok(resp.status() == StatusCode::CREATED)
    }

    async fn check_object(&self, id: &ObjectId) -> Result<ObjectCheck> {
        if !self.verifies {
            return nshard_core::backend::check_by_download(self, id).await;
        }
        let url = self.url(&protocol::verify_path(id));
        let resp = self.send(self.client.post(url)).await?;
        let resp = self.check(resp, &format!("verifying {id}")).await?;
        let body = self
            .body_capped(resp, SMALL_ANSWER_CAP, &format!("verifying {id}"))
            .await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!("verifying {id}: bad answer: {e}"),
            })
        })
    }

    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let what = format!("downloading {id}");
        self.download(self.object_url(id), id, &what, &format!("object {id}"))
            .await
    }

    async fn put_record(&self, name: &RecordName, bytes: Vec<u8>) -> Result<RecordName> {
        let what = format!("storing record {}", name.unwritten());
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Refused,
                reason: format!(
                    "{what}: {} bytes is over the {MAX_RECORD_BYTES}-byte limit of records",
                    bytes.len()
                ),
            }));
        }
        let req = self
            .client
            .put(self.url(&protocol::record_path(&name.unwritten())))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.clone());
        let bytes_again = bytes;
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::CONFLICT {
            // Names carry a nanosecond stamp and a random part: a record there with the same
            // bytes is this caller's own, from an attempt whose answer was lost (a retry).
            let stored = self
                .list_records()
                .await?
                .into_iter()
                .find(|n| n.unwritten() == name.unwritten());
            if let Some(stored) = stored {
                if self.get_record(&stored).await?.as_deref() == Some(&bytes_again[..]) {
                    return Ok(stored);
                }
            }
        }
        // Only admin tokens write into gc's own spaces.
        let resp = self.check_records(resp, &what, name.is_reserved()).await?;
        let put: RecordPut = self
            .json_answer(resp, SMALL_ANSWER_CAP, &what, |b| serde_json::from_slice(b))
            .await?;
        match RecordName::parse(&put.name) {
            Some(stored) if stored.unwritten() == name.unwritten() => Ok(stored),
            _ => Err(self.incompatible(format!(
                "{what}: the server answered with the name {:?}",
                put.name.chars().take(120).collect::<String>()
            ))),
        }
    }

    async fn list_records(&self) -> Result<Vec<RecordName>> {
        let what = "listing records";
        let resp = self
            .send(self.client.get(self.url(protocol::RECORDS)))
            .await?;
        let resp = self.check_records(resp, what, false).await?;
        let list: RecordList = self
            .json_answer(resp, RECORD_LIST_CAP, what, |b| serde_json::from_slice(b))
            .await?;
        // A name this client cannot read is an error, never skipped: gc must see every root.
        let mut names = list
            .records
            .iter()
            .map(|n| {
                RecordName::parse(n).ok_or_else(|| {
                    self.incompatible(format!(
                        "{what}: the server listed an invalid record name {:?}",
                        n.chars().take(120).collect::<String>()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    async fn get_record(&self, name: &RecordName) -> Result<Option<Vec<u8>>> {
        let what = format!("reading record {name}");
        let url = self.url(&protocol::record_path(&name.to_string()));
        let resp = self.send(self.client.get(url)).await?;
        let status = resp.status();
        if !status.is_success() {
            let text = self.error_text(resp).await;
            // Only the server's own "no such record" is an absent record: an older server's
            // "no such endpoint" is not.
            if status == StatusCode::NOT_FOUND
                && serde_json::from_str::<ErrorBody>(&text).is_ok_and(|b| b.code == NO_SUCH_RECORD)
            {
                return Ok(None);
            }
            return Err(self.records_error(status, &text, &what, false));
        }
        let declared = resp.content_length();
        let bytes = self
            .body_capped(resp, MAX_RECORD_BYTES as usize, &what)
            .await?;
        if declared.is_some_and(|n| n != bytes.len() as u64) {
            return Err(Error::Remote(RemoteError::Transient {
                remote: self.base.clone(),
                reason: format!("{what}: the answer ended early"),
            }));
        }
        Ok(Some(bytes))
    }

    async fn list_objects(&self) -> Result<Vec<StoredObject>> {
        let mut out = Vec::new();
        let mut after: Option<ObjectId> = None;
        for _ in 0..MAX_OBJECT_PAGES {
            let page = self.objects_page(after.as_ref()).await?;
            out.extend(page.objects.iter().map(|o| StoredObject {
                id: o.id,
                size: o.size,
                modified: o.modified,
            }));
            match page.next {
                None => return Ok(out),
                Some(next) => after = Some(next),
            }
        }
        Err(self.incompatible(format!(
            "listing objects: the listing did not end after {MAX_OBJECT_PAGES} pages"
        )))
    }

    async fn delete_objects(&self, ids: &[ObjectId]) -> Result<()> {
        for batch in ids.chunks(DELETE_BATCH) {
            let body = DeleteObjects {
                ids: batch.iter().map(ObjectId::to_hex).collect(),
            };
            let what = format!("deleting {} objects", batch.len());
            self.post_deletion(protocol::DELETE_OBJECTS, &what, serde_json::to_vec(&body))
                .await?;
        }
        Ok(())
    }

    fn stores_deltas(&self) -> bool {
        self.deltas
    }

    fn takes_deltas(&self) -> bool {
        self.deltas && !self.deltas_frozen
    }

    async fn put_delta(&self, name: &DeltaName, encoded: Vec<u8>) -> Result<bool> {
        self.upload_delta(name, encoded).await
    }

    async fn get_delta(&self, name: &DeltaName) -> Result<Vec<u8>> {
        self.download_delta(name).await
    }

    async fn deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        self.ask_deltas_of(ids).await
    }

    async fn list_deltas(&self) -> Result<Vec<StoredDelta>> {
        self.list_all_deltas().await
    }

    async fn delete_deltas(&self, names: &[DeltaName]) -> Result<()> {
        self.delete_some_deltas(names).await
    }

    async fn delete_records(&self, names: &[RecordName]) -> Result<()> {
        for batch in names.chunks(DELETE_BATCH) {
            let body = DeleteRecords {
                names: batch.iter().map(RecordName::to_string).collect(),
            };
            let what = format!("deleting {} records", batch.len());
            self.post_deletion(protocol::DELETE_RECORDS, &what, serde_json::to_vec(&body))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let t = Token("super-secret-token-value".into());
        assert!(!format!("{t:?}").contains("super-secret"));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transient_error_naming_the_url() {
        // Port 9 (discard) on loopback is closed on any sane test machine.
        let err = HttpStore::connect("http://127.0.0.1:9", &OpenOptions::default())
            .await
            .expect_err("nothing listens there");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
    }
}
