//! Protocol v1 handlers.
//!
//! Every request path or body is validated before it touches the store: ids must be 64 lowercase hex
//! characters (so `../` and friends never reach the filesystem), bodies are read up to a limit, JSON
//! is parsed strictly. Uploads stream to a staging file (see [`crate::upload`]), are verified from
//! it with bounded memory, and only then go into the store's put-if-absent; a body that does not
//! hash to its id leaves nothing behind.
//!
//! Records (gc's roots, see [`nshard_core::backend::RecordName`]) are named by the client but
//! written under the writer name of the caller's token ([`Access::writer`]), never one the client
//! chose; only admin tokens write into gc's own spaces, list objects or delete anything.
//!
//! The routes of delta encodings kept beside whole objects are in [`deltas`].

pub mod deltas;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use nshard_core::backend::{RecordName, StagedUpload, DELETE_BATCH, MAX_RECORD_BYTES};
use nshard_core::format::MAX_OBJECT_SIZE;
use nshard_core::{Error as CoreError, ObjectId, RemoteError, RemoteFailure, StoreError};

use crate::auth::{Access, Denied, Scope};
use crate::body::{body_too_large, declared_length, drain, DRAIN_MAX_BYTES};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::AppState;
use nshard_core::protocol::{
    self, DeleteObjects, DeleteRecords, Deleted, Health, HealthLimits, ListedObject,
    MissingRequest, MissingResponse, ObjectCheck, ObjectPage, PutResponse, RecordList, RecordPut,
};

/// Checks the request's token against `need`; says who the caller is.
fn authorize(state: &AppState, headers: &HeaderMap, need: Scope) -> Result<Access, AppError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    state.policy.access(value, need).map_err(|d| match d {
        Denied::Unauthenticated(why) => {
            AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
        }
        Denied::Forbidden {
            need: Scope::Admin,
            have,
        } => needs_admin(&format!("this token has {} scope", have.name())),
        Denied::Forbidden { have, .. } => AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token has {} scope; uploading needs a write token",
                have.name()
            ),
        ),
    })
}

/// 403 for a request only an admin token may make.
fn needs_admin(what: &str) -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{what}; this request needs a token with the admin scope (the server's token file: admin:<token>)"),
    )
}

/// Parses a path or body id: exactly 64 lowercase hex characters.
fn parse_id(s: &str) -> Result<ObjectId, AppError> {
    let shown: String = s.chars().take(80).collect();
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(AppError::bad_request(
            "invalid_id",
            format!("invalid object id {shown:?}: ids are lowercase hex"),
        ));
    }
    ObjectId::parse(s).map_err(|_| {
        AppError::bad_request(
            "invalid_id",
            format!("invalid object id {shown:?}: expected 64 lowercase hex characters"),
        )
    })
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<ObjectId, AppError> {
    let Path(s) = p.map_err(|e| AppError::bad_request("invalid_id", e.body_text()))?;
    parse_id(&s)
}

/// The 429 for an upload (of an object or a record) beyond the server's limit. The body is read
/// (and discarded, within bounds) first, as for a 413: a refusal sent while the client is still
/// sending reaches it as "broken pipe" or a closed connection, not as the 429 that tells it to
/// retry.
async fn too_many_uploads(state: &AppState, body: Body) -> AppError {
    let drained = drain(body, DRAIN_MAX_BYTES).await;
    let mut e = AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_uploads",
        format!(
            "the server is already receiving {} uploads; retry shortly",
            state.limits.max_concurrent_uploads
        ),
    );
    e.retry_after = Some(1);
    e.closing_unless(drained)
}

/// Reads a body of at most `limit` bytes (see [`declared_length`]); a body that ends early or
/// breaks off is a 400.
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Vec<u8>, AppError> {
    let (declared, body) = declared_length(headers, body, limit).await?;
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AppError::bad_request(
                "incomplete_body",
                format!("the request body broke off after {} bytes: {e}", out.len()),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > limit {
                let drained = drain(body, DRAIN_MAX_BYTES).await;
                return Err(
                    body_too_large(&format!("more than {limit}"), limit).closing_unless(drained)
                );
            }
            out.extend_from_slice(&data);
        }
    }
    if let Some(n) = declared.filter(|&n| n != out.len() as u64) {
        return Err(AppError::bad_request(
            "incomplete_body",
            format!(
                "Content-Length says {n} bytes but the body has {}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// `GET /v1/health`: liveness, protocol version and limits (no token needed).
pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut h = Health::new(
        concat!("nshard/", env!("CARGO_PKG_VERSION")).to_string(),
        HealthLimits::new(
            state.limits.max_object_bytes,
            state.limits.max_batch,
            state.limits.max_concurrent_uploads,
        ),
        state.policy.anonymous.map(|s| s.name().to_string()),
    );
    if state.limits.max_object_format >= nshard_core::format::FLOAT_FORMAT_VERSION {
        h.features
            .push(nshard_core::protocol::FEATURE_FLOAT_OBJECTS.into());
    }
    if deltas::deltas_kept(&state) {
        h.features.push(protocol::FEATURE_DELTAS.into());
        if !deltas::takes_deltas(&state) {
            h.features.push(protocol::FEATURE_DELTAS_FROZEN.into());
        }
    }
    Json(h)
}

/// The ids of a batch query (`{"ids": […]}`, read with `ids`): at most the server's
/// `max_batch` (more: 413), each parsed before the store is asked.
async fn id_batch<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    ids: impl FnOnce(T) -> Vec<String>,
) -> Result<Vec<ObjectId>, AppError> {
    // 64 hex characters, quotes and a comma per id, plus room for whitespace.
    let limit = state.limits.max_batch as u64 * 80 + 4096;
    let bytes = read_body(headers, body, limit).await?;
    let req: T = serde_json::from_slice(&bytes).map_err(|e| {
        AppError::bad_request(
            "malformed_json",
            format!("body is not {{\"ids\": [\"<64 hex>\", …]}}: {e}"),
        )
    })?;
    let ids = ids(req);
    if ids.len() > state.limits.max_batch {
        return Err(AppError::too_large(
            "batch_too_large",
            format!(
                "batch of {} ids is over the server's limit of {}; split it",
                ids.len(),
                state.limits.max_batch
            ),
        ));
    }
    ids.iter().map(|s| parse_id(s)).collect()
}

/// `POST /v1/objects/missing`.
pub async fn missing(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<MissingResponse>, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let ids = id_batch(&state, &headers, body, |r: MissingRequest| r.ids).await?;
    let mut missing = state
        .store
        .missing(&ids)
        .await
        .map_err(|e| store_error("missing query", &e))?;
    if !missing.is_empty() && for_whole_reader(&state, &headers) {
        // An older client reads objects held only as deltas through `get_object`.
        let held: std::collections::HashSet<ObjectId> = state
            .store
            .deltas_of(&missing)
            .await
            .map_err(|e| store_error("missing query", &e))?
            .into_iter()
            .map(|d| d.id)
            .collect();
        missing.retain(|id| !held.contains(id));
    }
    Ok(Json(MissingResponse { missing }))
}

/// Whether the request comes from a client that reads whole objects only (one from before remote
/// deltas: it sends no [`protocol::DELTAS_HEADER`]) while this server keeps deltas.
fn for_whole_reader(state: &AppState, headers: &HeaderMap) -> bool {
    deltas::deltas_kept(state) && !headers.contains_key(protocol::DELTAS_HEADER)
}

/// `id`, held only as deltas, resolved and encoded on its own for an older client (see
/// [`for_whole_reader`]): at most the server's object format; 404 when no delta holds it either.
async fn standalone_for_whole_reader(state: &AppState, id: &ObjectId) -> Result<Vec<u8>, AppError> {
    let floats = state.limits.max_object_format >= nshard_core::format::FLOAT_FORMAT_VERSION;
    match nshard_core::backend::resolve_standalone(state.store.as_ref(), id, floats).await {
        Ok(enc) => Ok(enc),
        Err(CoreError::Store(StoreError::ObjectMissing(_) | StoreError::BaseMissing { .. })) => {
            Err(AppError::not_found(format!(
                "object {id} is not on this server"
            )))
        }
        Err(e) => Err(AppError::internal(
            &format!("resolving object {id} through its deltas"),
            &e,
        )),
    }
}

/// `HEAD /v1/objects/{id}`: 200 with the encoded length, or 404.
pub async fn head_object(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let id = path_id(id)?;
    match state.store.size(&id).await {
        Ok(Some(len)) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_LENGTH, HeaderValue::from(len)),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
            ],
        )
            .into_response()),
        Ok(None) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(e) => Err(store_error(&format!("looking up object {id}"), &e)),
    }
}

/// `GET /v1/objects/{id}`: the encoded object, verified before it is sent.
pub async fn get_object(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let id = path_id(id)?;
    // Wait for a turn: the object is held in memory from here until its body is sent.
    let permit = download_slot(&state).await?;
    let enc = match state.store.get(&id).await {
        Ok(enc) => enc,
        Err(CoreError::Store(StoreError::ObjectMissing(_)))
            if for_whole_reader(&state, &headers) =>
        {
            // Verified level by level while it was resolved.
            let enc = standalone_for_whole_reader(&state, &id).await?;
            Metrics::add(&state.metrics.bytes_out, enc.len() as u64);
            return Ok(octet_stream(enc, permit));
        }
        Err(CoreError::Store(StoreError::ObjectMissing(_))) => {
            return Err(AppError::not_found(format!(
                "object {id} is not on this server"
            )))
        }
        Err(e @ CoreError::Store(StoreError::CorruptObject { .. })) => {
            return Err(corrupt(&state, &id, &e).await)
        }
        Err(e) => return Err(store_error(&format!("reading object {id}"), &e)),
    };
    let verified = nshard_core::backend::blocking("verifying an object", move || {
        nshard_core::format::decode_verified(&id, &enc, MAX_OBJECT_SIZE).map(|_| enc)
    })
    .await
    .map_err(|e| AppError::internal("verifying an object", &e))?;
    let enc = match verified {
        Ok(enc) => enc,
        Err(e @ CoreError::Store(StoreError::CorruptObject { .. })) => {
            return Err(corrupt(&state, &id, &e).await)
        }
        Err(e) => return Err(AppError::internal(&format!("reading object {id}"), &e)),
    };
    Metrics::add(&state.metrics.bytes_out, enc.len() as u64);
    Ok(octet_stream(enc, permit))
}

/// Counts one request in a gauge for as long as it lives (also when the request is dropped while
/// it waits: its client went away).
struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Waiting<'a> {
    fn on(gauge: &'a std::sync::atomic::AtomicU64) -> Self {
        gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for a download slot ([`Limits::max_concurrent_downloads`](crate::Limits)): what a
/// download holds from reading its bytes until they are sent.
async fn download_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
    let _waiting = Waiting::on(&state.metrics.downloads_waiting);
    state
        .downloads
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| AppError::internal("waiting for a download slot", &e))
}

/// Bytes per frame of a download's body.
const SEND_FRAME: usize = 64 << 10;

/// A 200 answer carrying `data` as `application/octet-stream` ([`body_holding`]: the download
/// slot `permit` is held until the last frame is taken).
fn octet_stream(data: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(data.len())),
        ],
        body_holding(data, permit),
    )
        .into_response()
}

/// A body of `data` sent in frames of [`SEND_FRAME`] bytes, each a copy: the connection's write
/// buffer then holds a few small frames, never the whole object, and `data` and `permit` are
/// dropped together once the last frame is taken (or the connection is gone), so the download
/// slot is held exactly as long as the object is.
fn body_holding(data: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit) -> Body {
    Body::from_stream(futures::stream::unfold(
        (data, 0usize, permit),
        |(data, at, permit)| async move {
            if at >= data.len() {
                return None;
            }
            let end = (at + SEND_FRAME).min(data.len());
            let frame = axum::body::Bytes::copy_from_slice(&data[at..end]);
            Some((
                Ok::<_, std::convert::Infallible>(frame),
                (data, end, permit),
            ))
        },
    ))
}

/// What an upload carries, as [`receive_upload`] checks it and refusals name it: an object, or
/// a delta encoding (see [`deltas::put_delta`]).
struct Upload<'a> {
    /// `object`, `delta`.
    kind: &'static str,
    /// Its name in the protocol: an id, `<id>.<base>`.
    name: &'a (dyn std::fmt::Display + Sync),
    /// The oldest object format held to `--max-object-format` (0: every format); older ones are
    /// left to verification, which refuses what it cannot read.
    checked_from: u8,
    /// What nshard clients do with such an upload in a format newer than the server stores.
    clients_then: &'static str,
}

impl<'a> Upload<'a> {
    /// An object: only formats from float objects up are held to `--max-object-format` (the
    /// formats it can exclude; a delta sent as an object fails verification as one).
    fn object(id: &'a ObjectId) -> Self {
        Upload {
            kind: "object",
            name: id,
            checked_from: nshard_core::format::FLOAT_FORMAT_VERSION,
            clients_then: "nshard clients re-send such objects in format 1",
        }
    }
}

impl std::fmt::Display for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// A 422 `object_rejected` for an upload (counted): nothing was stored, `why` says why.
fn rejected(state: &AppState, upload: &Upload<'_>, why: &dyn std::fmt::Display) -> AppError {
    Metrics::add(&state.metrics.objects_rejected, 1);
    AppError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "object_rejected",
        format!("{upload} refused, nothing was stored: {why}"),
    )
}

/// The prologue of an upload, once its caller is authorized and its path parsed: an upload slot
/// (none free: 429), the body streamed to a staging file (see [`crate::upload::receive`]: 413,
/// 400), and its object format held to the server's `--max-object-format` (newer: 422
/// `object_rejected`). Returns the staged body and the slot, which the upload holds until it ends.
async fn receive_upload(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    upload: &Upload<'_>,
) -> Result<(StagedUpload, tokio::sync::OwnedSemaphorePermit), AppError> {
    let Ok(slot) = state.uploads.clone().try_acquire_owned() else {
        return Err(too_many_uploads(state, body).await);
    };
    let staged = crate::upload::receive(
        headers,
        body,
        state.limits.max_object_bytes,
        state.staging.clone(),
    )
    .await?;
    let max_format = state.limits.max_object_format;
    match staged.format_version() {
        Ok(Some(v)) if v >= upload.checked_from && v > max_format => Err(rejected(
            state,
            upload,
            &format!(
                "it is in object format {v}, and this server stores formats up to {max_format} (--max-object-format); {}",
                upload.clients_then
            ),
        )),
        Ok(_) => Ok((staged, slot)),
        Err(e) => Err(store_error(&format!("reading upload {}", upload.name), &e)),
    }
}

/// The answer to an upload of `len` bytes that went through, counted (in `stored_counter` when
/// it wrote): 201 when it wrote, 200 when the store had it already.
fn upload_status(
    state: &AppState,
    len: u64,
    stored: bool,
    stored_counter: &std::sync::atomic::AtomicU64,
) -> StatusCode {
    Metrics::add(&state.metrics.bytes_in, len);
    if stored {
        Metrics::add(stored_counter, 1);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `PUT /v1/objects/{id}`: verify, then store if absent. 201 when written, 200 when already there.
pub async fn put_object(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Write)?;
    let id = path_id(id)?;
    let upload = Upload::object(&id);
    let (staged, _slot) = receive_upload(&state, &headers, body, &upload).await?;
    let len = staged.len();
    // Verifying and storing hold memory and CPU: a few at a time, whatever the number of uploads.
    let _commit = state
        .commits
        .acquire()
        .await
        .map_err(|e| AppError::internal("storing an object", &e))?;
    // A re-upload of an object the store has is a cheap success.
    let present = state
        .store
        .size(&id)
        .await
        .map_err(|e| store_error(&format!("looking up object {id}"), &e))?;
    let result = match present {
        Some(_) => Ok(false),
        None => {
            let verified = nshard_core::backend::blocking("verifying an object", move || {
                staged.verify(&id, MAX_OBJECT_SIZE).map(|()| staged)
            })
            .await
            .map_err(|e| AppError::internal("verifying an object", &e))?;
            match verified {
                Ok(staged) => state.store.put_staged(&id, staged).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(stored) => {
            let status = upload_status(&state, len, stored, &state.metrics.objects_stored);
            Ok((status, Json(PutResponse { id, stored })).into_response())
        }
        Err(CoreError::Store(StoreError::CorruptObject { reason, .. })) => {
            Err(rejected(&state, &upload, &reason))
        }
        Err(
            e @ CoreError::Store(
                StoreError::DeltaNeedsBase { .. } | StoreError::UnsupportedFormat { .. },
            ),
        ) => {
            // Not damage: an encoding this server does not store (a delta) or read (a newer format).
            Err(rejected(&state, &upload, &e))
        }
        Err(e) => Err(store_error(&format!("storing object {id}"), &e)),
    }
}

/// An object found corrupt in the store (`e` says how): moved aside where the store can (to its
/// `corrupt/`), so that it reads as missing and the next push of a good copy restores it. The
/// answer is a 500 with code `corrupt_object`, which clients report at once instead of retrying.
async fn corrupt(state: &AppState, id: &ObjectId, e: &CoreError) -> AppError {
    let what = if move_aside(state, id, &e.to_string()).await {
        "it was moved aside and reads as missing until a push of a good copy restores it"
    } else {
        "push a good copy once it has been removed (see the server log)"
    };
    AppError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        protocol::CORRUPT_OBJECT,
        format!("object {id} is corrupt in the server's store: {what}"),
    )
}

/// Moves a corrupt object aside where the store can (it checks its copy itself first), logs and
/// counts it. Returns whether it was moved.
async fn move_aside(state: &AppState, id: &ObjectId, e: &str) -> bool {
    Metrics::add(&state.metrics.objects_corrupt, 1);
    let moved = match state.store.admin() {
        Some(admin) => admin.quarantine_corrupt(id).await,
        None => Ok(false),
    };
    match moved {
        Ok(true) => {
            tracing::error!("{e}; moved aside to corrupt/ (a push of a good copy restores it)");
            true
        }
        Ok(false) => {
            tracing::error!("{e}");
            false
        }
        Err(q) => {
            tracing::error!("{e}; moving it aside failed: {q}");
            false
        }
    }
}

/// `POST /v1/objects/{id}/verify`: the server decodes and hashes its own copy (no object bytes
/// travel) and answers `{"state": "intact", "size": N}`, `{"state": "missing"}` or
/// `{"state": "corrupt", "reason": "…", "moved_aside": true}`; a corrupt copy is moved aside as
/// a GET would. Read scope, like a GET; at most `max_concurrent_commits` at once.
pub async fn verify_object(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<ObjectCheck>, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let id = path_id(id)?;
    let _permit = state
        .commits
        .acquire()
        .await
        .map_err(|e| AppError::internal("verifying an object", &e))?;
    let check = state
        .store
        .check_object(&id)
        .await
        .map_err(|e| store_error(&format!("verifying object {id}"), &e))?;
    Ok(Json(match check {
        ObjectCheck::Corrupt { reason, .. } => {
            let e = format!("object {id} is corrupt: {reason}");
            let moved_aside = move_aside(&state, &id, &e).await;
            ObjectCheck::Corrupt {
                reason,
                moved_aside,
            }
        }
        c => c,
    }))
}

/// A failure of the store behind the server: 503 with `Retry-After` when it may pass (the bucket
/// is unreachable or busy), else 500. The details go to the log only.
fn store_error(what: &str, e: &CoreError) -> AppError {
    if e.is_transient() {
        tracing::warn!("{what}: {e}");
        let mut err = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{what}: the server's store is unavailable; retry shortly"),
        );
        err.retry_after = Some(1);
        err
    } else {
        AppError::internal(what, e)
    }
}

/// A record name from a request path (`SPACE/KEY/STAMP.WRITER`, or `SPACE/KEY/STAMP` when
/// `written` is false): anything its parser refuses (`..`, uppercase, other spaces or lengths) is
/// a 400 before the store is touched.
fn path_record(
    p: Result<Path<String>, PathRejection>,
    written: bool,
) -> Result<RecordName, AppError> {
    let Path(name) = p.map_err(|e| AppError::bad_request("invalid_record_name", e.body_text()))?;
    parse_record(&name, written)
}

/// Parses a record name from a path or a body (see [`path_record`]).
fn parse_record(s: &str, written: bool) -> Result<RecordName, AppError> {
    let parsed = if written {
        RecordName::parse(s)
    } else {
        RecordName::parse_unwritten(s)
    };
    parsed.ok_or_else(|| {
        let shown: String = s.chars().take(120).collect();
        let form = if written {
            "SPACE/KEY/STAMP.WRITER"
        } else {
            "SPACE/KEY/STAMP (the server adds the writer)"
        };
        AppError::bad_request(
            "invalid_record_name",
            format!("invalid record name {shown:?}: expected {form}"),
        )
    })
}

/// `GET /v1/records`: every record name, sorted (read scope).
pub async fn list_records(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<RecordList>, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let names = state
        .store
        .list_records()
        .await
        .map_err(|e| store_error("listing records", &e))?;
    let mut records: Vec<String> = names.iter().map(RecordName::to_string).collect();
    records.sort();
    Ok(Json(RecordList { records }))
}

/// `GET /v1/records/SPACE/KEY/STAMP.WRITER`: the record's bytes, or 404 (read scope).
pub async fn get_record(
    State(state): State<Arc<AppState>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let name = path_record(p, true)?;
    // A record (up to MAX_RECORD_BYTES) is held in memory until it is sent, like a download.
    let permit = download_slot(&state).await?;
    let bytes = match state.store.get_record(&name).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                protocol::NO_SUCH_RECORD,
                format!("record {name} is not on this server"),
            ))
        }
        Err(e) => return Err(store_error(&format!("reading record {name}"), &e)),
    };
    Ok(octet_stream(bytes, permit))
}

/// `PUT /v1/records/SPACE/KEY/STAMP`: stores the body (at most [`MAX_RECORD_BYTES`]) as a
/// new record written by the caller ([`Access::writer`]); 201 with the stored name, 409 when that
/// name exists. Write scope; gc's own spaces need the admin scope.
pub async fn put_record(
    State(state): State<Arc<AppState>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let access = authorize(&state, &headers, Scope::Write)?;
    let name = path_record(p, false)?;
    if name.is_reserved() && access.scope < Scope::Admin {
        let drained = drain(body, DRAIN_MAX_BYTES).await;
        return Err(needs_admin(&format!(
            "records in {} are gc's own and written by admins only",
            name.space()
        ))
        .closing_unless(drained));
    }
    let Ok(_permit) = state.uploads.clone().try_acquire_owned() else {
        return Err(too_many_uploads(&state, body).await);
    };
    let bytes = read_body(&headers, body, MAX_RECORD_BYTES).await?;
    let name = name
        .with_writer(access.writer())
        .expect("access writer names are valid record writers");
    match state.store.put_record(&name, bytes).await {
        Ok(stored) if stored == name => {
            Metrics::add(&state.metrics.records_stored, 1);
            Ok((
                StatusCode::CREATED,
                Json(RecordPut {
                    name: stored.to_string(),
                }),
            )
                .into_response())
        }
        Ok(stored) => {
            // The store wrote another name (a writer of its own choosing): the record must not
            // count as that writer's, so it goes again (best effort; logged either way).
            let undone = state
                .store
                .delete_records(std::slice::from_ref(&stored))
                .await;
            Err(AppError::internal(
                &format!("storing record {name}"),
                &format!(
                    "the store wrote it as {stored} (removed again: {})",
                    undone.is_ok()
                ),
            ))
        }
        Err(CoreError::Remote(RemoteError::Failed {
            kind: RemoteFailure::Refused,
            ..
        })) => Err(AppError::new(
            StatusCode::CONFLICT,
            "record_exists",
            format!("record {name} exists already (records are never replaced: write a new one)"),
        )),
        Err(e) => Err(store_error(&format!("storing record {name}"), &e)),
    }
}

/// The query of `GET /v1/objects` and `GET /v1/deltas`.
#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    /// Only objects with ids (deltas with names) after this one.
    after: Option<String>,
    /// At most this many entries (default and most: [`protocol::OBJECT_PAGE_LIMIT`],
    /// [`protocol::DELTA_PAGE_LIMIT`]).
    limit: Option<String>,
}

/// The `limit` of a page query: `most` when absent, at most `most`; anything but a number from 1
/// up is a 400.
fn page_limit(limit: Option<&str>, most: usize) -> Result<usize, AppError> {
    match limit {
        None => Ok(most),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(most)),
            _ => Err(AppError::bad_request(
                "invalid_query",
                format!("limit must be a number from 1 to {most}"),
            )),
        },
    }
}

/// `GET /v1/objects?after=<id>&limit=<n>`: a page of objects in id order, with where the next
/// page starts (admin scope). Each page lists the store anew: no state is kept between pages, so
/// a listing sees objects added or deleted while it runs as any store listing would.
pub async fn list_objects(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<ObjectPage>, AppError> {
    authorize(&state, &headers, Scope::Admin)?;
    let Query(q) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let after = q.after.as_deref().map(parse_id).transpose()?;
    let limit = page_limit(q.limit.as_deref(), protocol::OBJECT_PAGE_LIMIT)?;
    let (page, more) = state
        .store
        .list_objects_page(after, limit)
        .await
        .map_err(|e| store_error("listing objects", &e))?;
    let objects: Vec<ListedObject> = page
        .iter()
        .map(|o| ListedObject {
            id: o.id,
            size: o.size,
            modified: o.modified,
        })
        .collect();
    let next = more.then(|| objects.last().map(|o| o.id)).flatten();
    Ok(Json(ObjectPage { objects, next }))
}

/// The body limit of a deletion: [`DELETE_BATCH`] entries of at most `entry` bytes each, plus
/// room for whitespace.
fn delete_body_limit(entry: u64) -> u64 {
    DELETE_BATCH as u64 * entry + 4096
}

/// A deletion of more than [`DELETE_BATCH`] entries.
fn batch_too_large(n: usize, what: &str) -> AppError {
    AppError::bad_request(
        "batch_too_large",
        format!("a deletion of {n} {what} is over the limit of {DELETE_BATCH}; split it"),
    )
}

/// The entries of a deletion request (admin scope): a JSON body of at most [`DELETE_BATCH`]
/// entries of at most `entry` bytes each, shaped as `shape` says, each parsed with `parse`.
async fn deletion_entries<T: serde::de::DeserializeOwned, E>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    (entry, shape, what): (u64, &str, &str),
    entries: impl FnOnce(T) -> Vec<String>,
    parse: impl Fn(&str) -> Result<E, AppError>,
) -> Result<Vec<E>, AppError> {
    authorize(state, headers, Scope::Admin)?;
    let bytes = read_body(headers, body, delete_body_limit(entry)).await?;
    let req: T = serde_json::from_slice(&bytes).map_err(|e| {
        AppError::bad_request("malformed_json", format!("body is not {shape}: {e}"))
    })?;
    let list = entries(req);
    if list.len() > DELETE_BATCH {
        return Err(batch_too_large(list.len(), what));
    }
    list.iter().map(|s| parse(s)).collect()
}

/// `POST /v1/objects/delete` `{"ids": […]}`: deletes up to [`DELETE_BATCH`] objects (absent ones
/// are no error) and answers `{"deleted": n}` (admin scope).
pub async fn delete_objects(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Deleted>, AppError> {
    let shape = (80, "{\"ids\": [\"<64 hex>\", …]}", "ids");
    let ids = deletion_entries(
        &state,
        &headers,
        body,
        shape,
        |r: DeleteObjects| r.ids,
        parse_id,
    )
    .await?;
    if for_whole_reader(&state, &headers) {
        // A client from before remote deltas (its `remote gc`) does not know that an object may
        // be the base of a delta: deleting one would leave the delta without its base.
        let bases: std::collections::HashSet<ObjectId> = state
            .store
            .list_deltas()
            .await
            .map_err(|e| store_error("listing deltas", &e))?
            .into_iter()
            .map(|d| d.name.base)
            .collect();
        if let Some(base) = ids.iter().find(|id| bases.contains(id)) {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "upgrade_required",
                format!(
                    "object {base} is the base of a delta encoding this server keeps, which this \
                     client does not know about (it sends no {} header): upgrade nshard to \
                     delete objects here",
                    protocol::DELTAS_HEADER
                ),
            ));
        }
    }
    state
        .store
        .delete_objects(&ids)
        .await
        .map_err(|e| store_error("deleting objects", &e))?;
    Metrics::add(&state.metrics.objects_deleted, ids.len() as u64);
    tracing::info!("deleted {} object(s)", ids.len());
    Ok(Json(Deleted { deleted: ids.len() }))
}

/// `POST /v1/records/delete` `{"names": […]}`: deletes up to [`DELETE_BATCH`] records (absent
/// ones are no error) and answers `{"deleted": n}` (admin scope).
pub async fn delete_records(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Deleted>, AppError> {
    // A name is at most 79 characters (`_retention/KEY/STAMP.w…`); quotes, a comma and spaces.
    let shape = (100, "{\"names\": [\"SPACE/KEY/STAMP.WRITER\", …]}", "names");
    let names = deletion_entries(
        &state,
        &headers,
        body,
        shape,
        |r: DeleteRecords| r.names,
        |s| parse_record(s, true),
    )
    .await?;
    state
        .store
        .delete_records(&names)
        .await
        .map_err(|e| store_error("deleting records", &e))?;
    Metrics::add(&state.metrics.records_deleted, names.len() as u64);
    tracing::info!("deleted {} record(s)", names.len());
    Ok(Json(Deleted {
        deleted: names.len(),
    }))
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let in_flight = state.limits.max_concurrent_uploads - state.uploads.available_permits();
    let downloads =
        state.limits.max_concurrent_downloads.max(1) - state.downloads.available_permits();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(in_flight, downloads),
    )
        .into_response())
}

/// Any path that is not part of the protocol.
pub async fn not_found(State(state): State<Arc<AppState>>, method: Method, uri: Uri) -> AppError {
    state.metrics.request("unmatched", method.as_str(), 404);
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// A known path with a method it does not support.
pub async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// The largest git-lfs batch request read (a batch names at most a few hundred objects).
const LFS_BATCH_LIMIT: u64 = 1 << 20;

#[derive(serde::Deserialize)]
struct LfsBatchObject {
    oid: String,
    #[serde(default)]
    size: u64,
}

#[derive(serde::Deserialize)]
struct LfsBatchRequest {
    #[serde(default)]
    objects: Vec<LfsBatchObject>,
}

fn lfs_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.git-lfs+json"),
    );
    r
}

/// `POST /lfs/objects/batch`: git-lfs's batch API, for a clone that reaches this server
/// without `nshard lfs agent` (its `.lfsconfig` names the server as `lfs.url`). The server stores
/// LFS objects as chunks, which plain git-lfs cannot read, so every object is answered with an
/// error that says how to install the agent.
pub async fn lfs_batch(headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    let bytes = read_body(&headers, body, LFS_BATCH_LIMIT).await?;
    let req: LfsBatchRequest = serde_json::from_slice(&bytes).map_err(|e| {
        AppError::bad_request("bad_request", format!("not a git-lfs batch request: {e}"))
    })?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("this-server");
    let message = format!(
        "this object is stored by NeuroShard, which plain git-lfs cannot read: install the agent \
         in this clone with `nshard lfs install --remote http://{host}` (https:// if the server \
         is behind TLS), then run `git lfs pull`"
    );
    let objects: Vec<serde_json::Value> = req
        .objects
        .iter()
        .map(|o| {
            serde_json::json!({
                "oid": o.oid,
                "size": o.size,
                "error": {"code": 422, "message": message},
            })
        })
        .collect();
    Ok(lfs_json(
        StatusCode::OK,
        serde_json::json!({"transfer": "basic", "objects": objects}),
    ))
}

/// `POST /lfs/locks/verify`: no locks here (git-lfs asks before a push and would otherwise
/// warn on every push).
pub async fn lfs_locks_verify(headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    read_body(&headers, body, LFS_BATCH_LIMIT).await?;
    Ok(lfs_json(
        StatusCode::OK,
        serde_json::json!({"ours": [], "theirs": []}),
    ))
}
