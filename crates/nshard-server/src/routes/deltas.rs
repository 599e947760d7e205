//! The delta routes: encodings of an object against another one, kept beside whole objects
//! (`deltas/<id>.<base>` in the store, see [`DeltaName`]). Offered when the server's store keeps
//! them; `/v1/health` then lists [`protocol::FEATURE_DELTAS`]. Uploads are taken when its
//! `--max-object-format` reaches the delta format (3); below it, `/v1/health` also lists
//! [`protocol::FEATURE_DELTAS_FROZEN`] and the deltas the store holds are served, listed and
//! deleted, never added to.
//!
//! An upload travels like an object's (the same body limit, staging file, upload and commit slots
//! and timeouts) and is verified against its base as the store holds it before it becomes
//! visible ([`verify_delta`]): a delta whose base the store lacks is refused naming the base
//! (422 [`protocol::BASE_MISSING`]), one that does not decode to its id naming the id (422
//! `object_rejected`). A download is the delta as stored, its header checked: readers verify the
//! bytes they resolve, which takes the base.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nshard_core::backend::{check_delta_header, verify_delta, DeltaName, StagedUpload};
use nshard_core::format::{DELTA_FORMAT_VERSION, MAX_OBJECT_SIZE};
use nshard_core::protocol::{
    self, DeleteDeltas, Deleted, DeltaPage, DeltaPut, DeltasOfRequest, DeltasOfResponse,
    ListedDelta,
};
use nshard_core::{Error as CoreError, StoreError};

use super::{
    authorize, deletion_entries, download_slot, id_batch, move_aside, octet_stream, page_limit,
    receive_upload, rejected, store_error, upload_status, PageQuery, Upload,
};
use crate::auth::Scope;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::AppState;

/// Whether the server keeps delta encodings (and announces them): its store does. Whatever its
/// `--max-object-format`, it serves those it holds (see [`takes_deltas`]).
pub fn deltas_kept(state: &AppState) -> bool {
    state.store.stores_deltas()
}

/// Whether the server takes new delta encodings: it keeps them and its `--max-object-format`
/// reaches the delta format (below it, `/v1/health` lists [`protocol::FEATURE_DELTAS_FROZEN`]).
pub fn takes_deltas(state: &AppState) -> bool {
    deltas_kept(state) && state.limits.max_object_format >= DELTA_FORMAT_VERSION
}

/// The 404 of a delta route on a server whose store keeps no delta encodings (an S3 store of a
/// version without them). Uploads get a 422 instead (see [`put_delta`]).
fn no_deltas() -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "no_deltas",
        "this server's store keeps no delta encodings",
    )
}

/// Parses a delta name from a path or a body: `<id>.<base>`, two different ids of 64 lowercase
/// hex characters each (so nothing else ever reaches a store path).
fn parse_delta_name(s: &str) -> Result<DeltaName, AppError> {
    DeltaName::parse(s)
        .filter(|n| n.key() == s)
        .ok_or_else(|| {
            let shown: String = s.chars().take(140).collect();
            AppError::bad_request(
                "invalid_delta_name",
                format!(
                    "invalid delta name {shown:?}: expected <id>.<base>, two different ids of 64 lowercase hex characters"
                ),
            )
        })
}

fn path_delta(p: Result<Path<String>, PathRejection>) -> Result<DeltaName, AppError> {
    let Path(s) = p.map_err(|e| AppError::bad_request("invalid_delta_name", e.body_text()))?;
    parse_delta_name(&s)
}

/// `PUT /v1/deltas/{id}.{base}`: verify against the base as the store holds it, then store if
/// absent. 201 when written, 200 when already there; 422 [`protocol::BASE_MISSING`] when the
/// store holds the base neither whole nor as a delta, 422 `object_rejected` when the body is not a
/// delta against `base` decoding to `id` (or the server keeps no deltas). Write scope.
pub async fn put_delta(
    State(state): State<Arc<AppState>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Write)?;
    let name = path_delta(p)?;
    let key = name.key();
    // Unlike an object, a delta is held to `--max-object-format` whatever its format.
    let upload = Upload {
        kind: "delta",
        name: &key,
        checked_from: 0,
        clients_then: "nshard clients send such objects whole",
    };
    let (staged, _slot) = receive_upload(&state, &headers, body, &upload).await?;
    let len = staged.len();
    if !takes_deltas(&state) {
        return Err(rejected(
            &state,
            &upload,
            &"this server's store keeps no delta encodings; nshard clients send such objects whole",
        ));
    }
    // Verifying holds the base's and the delta's bytes: a few at a time, like objects.
    let _commit = state
        .commits
        .acquire()
        .await
        .map_err(|e| AppError::internal("storing a delta", &e))?;
    let enc = nshard_core::backend::blocking("reading an upload", move || read_staged(staged))
        .await
        .and_then(|r| r)
        .map_err(|e| AppError::internal("reading an upload", &e))?;
    let result = if state.store_verifies_deltas {
        // A directory store checks presence and verifies the delta itself.
        state.store.put_delta(&name, enc).await
    } else {
        store_verified(&state, &name, enc).await
    };
    match result {
        Ok(stored) => {
            let status = upload_status(&state, len, stored, &state.metrics.deltas_stored);
            let put = DeltaPut { name: key, stored };
            Ok((status, Json(put)).into_response())
        }
        Err(CoreError::Store(StoreError::BaseMissing { id, base })) => {
            Metrics::add(&state.metrics.objects_rejected, 1);
            let why = if id == name.id {
                format!("its base {base} is not on this server (neither whole nor as a delta); upload the base first")
            } else {
                format!(
                    "its base {} is on this server as a delta whose chain breaks: {base}, the base of {id}, is missing; upload {} whole",
                    name.base, name.base
                )
            };
            Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                protocol::BASE_MISSING,
                format!("{upload} refused, nothing was stored: {why}"),
            ))
        }
        Err(CoreError::Store(StoreError::CorruptObject { id, reason, .. })) => {
            if id == name.id {
                return Err(rejected(&state, &upload, &reason));
            }
            // The base (or a link of its chain) is corrupt in the store, not the upload: moved
            // aside where the store can, so that a retry finds the base missing and says so.
            let moved = move_aside(&state, &id, &format!("object {id} is corrupt: {reason}")).await;
            let then = if moved {
                " (moved aside: a retry reads it as missing)"
            } else {
                ""
            };
            Err(AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                protocol::CORRUPT_OBJECT,
                format!("{upload} not stored: its base on this server is corrupt at {id}{then}"),
            ))
        }
        Err(e @ CoreError::Store(StoreError::UnsupportedFormat { .. })) => {
            Err(rejected(&state, &upload, &e))
        }
        Err(e) => Err(store_error(&format!("storing {upload}"), &e)),
    }
}

/// The bytes of a staged upload (at most the server's body limit; read under a commit slot).
fn read_staged(staged: StagedUpload) -> Result<Vec<u8>, CoreError> {
    let mut data = vec![0u8; staged.len() as usize];
    nshard_core::backend::read_exact_at(staged.file(), &mut data, 0)
        .map_err(CoreError::io("reading", staged.path()))?;
    Ok(data)
}

/// Stores `enc` as `name` if absent, verified against its base first, for a store that does not
/// verify deltas itself (S3): a delta the store has is a cheap success.
async fn store_verified(
    state: &AppState,
    name: &DeltaName,
    enc: Vec<u8>,
) -> Result<bool, CoreError> {
    if state.store.deltas_of(&[name.id]).await?.contains(name) {
        return Ok(false);
    }
    verify_delta(state.store.as_ref(), name, &enc).await?;
    state.store.put_delta(name, enc).await
}

/// `GET /v1/deltas/{id}.{base}`: the delta as stored (its header checked), or 404. Read scope.
pub async fn get_delta(
    State(state): State<Arc<AppState>>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let name = path_delta(p)?;
    if !state.store.stores_deltas() {
        return Err(no_deltas());
    }
    let permit = download_slot(&state).await?;
    let enc = match state.store.get_delta(&name).await {
        Ok(enc) => enc,
        Err(CoreError::Store(StoreError::ObjectMissing(_))) => {
            return Err(AppError::not_found(format!(
                "delta {} is not on this server",
                name.key()
            )))
        }
        Err(e) => return Err(store_error(&format!("reading delta {}", name.key()), &e)),
    };
    if let Err(e) = check_delta_header(&name, &enc, MAX_OBJECT_SIZE) {
        Metrics::add(&state.metrics.objects_corrupt, 1);
        tracing::error!("delta {}: {e}", name.key());
        return Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            protocol::CORRUPT_OBJECT,
            format!("delta {} is corrupt in the server's store", name.key()),
        ));
    }
    Metrics::add(&state.metrics.bytes_out, enc.len() as u64);
    Ok(octet_stream(enc, permit))
}

/// `POST /v1/deltas/of` `{"ids": […]}`: the delta encodings the store holds of those ids
/// (at most the server's `max_batch`), `{"deltas": ["<id>.<base>", …]}`. Read scope.
pub async fn deltas_of(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DeltasOfResponse>, AppError> {
    authorize(&state, &headers, Scope::Read)?;
    let ids = id_batch(&state, &headers, body, |r: DeltasOfRequest| r.ids).await?;
    if !state.store.stores_deltas() {
        return Err(no_deltas());
    }
    let names = state
        .store
        .deltas_of(&ids)
        .await
        .map_err(|e| store_error("asking for delta encodings", &e))?;
    Ok(Json(DeltasOfResponse {
        deltas: names.iter().map(DeltaName::key).collect(),
    }))
}

/// `GET /v1/deltas?after=<id>.<base>&limit=<n>`: a page of delta encodings in name order, with
/// where the next page starts (admin scope). Like the object listing, each page lists the store
/// anew.
pub async fn list_deltas(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<DeltaPage>, AppError> {
    authorize(&state, &headers, Scope::Admin)?;
    let Query(q) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let after = q.after.as_deref().map(parse_delta_name).transpose()?;
    let limit = page_limit(q.limit.as_deref(), protocol::DELTA_PAGE_LIMIT)?;
    if !state.store.stores_deltas() {
        return Err(no_deltas());
    }
    let mut all = state
        .store
        .list_deltas()
        .await
        .map_err(|e| store_error("listing deltas", &e))?;
    all.sort_unstable_by_key(|d| d.name);
    let start = after.map_or(0, |a| all.partition_point(|d| d.name <= a));
    let end = start.saturating_add(limit).min(all.len());
    let deltas: Vec<ListedDelta> = all[start..end]
        .iter()
        .map(|d| ListedDelta {
            name: d.name.key(),
            size: d.size,
            modified: d.modified,
        })
        .collect();
    let next = (end < all.len())
        .then(|| deltas.last().map(|d| d.name.clone()))
        .flatten();
    Ok(Json(DeltaPage { deltas, next }))
}

/// `POST /v1/deltas/delete` `{"names": […]}`: deletes up to
/// [`DELETE_BATCH`](nshard_core::backend::DELETE_BATCH) delta encodings (absent ones are no
/// error) and answers `{"deleted": n}` (admin scope).
pub async fn delete_deltas(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Deleted>, AppError> {
    // A name is 129 characters; quotes, a comma and spaces.
    let shape = (140, "{\"names\": [\"<id>.<base>\", …]}", "names");
    let names = deletion_entries(
        &state,
        &headers,
        body,
        shape,
        |r: DeleteDeltas| r.names,
        parse_delta_name,
    )
    .await?;
    if !state.store.stores_deltas() {
        return Err(no_deltas());
    }
    state
        .store
        .delete_deltas(&names)
        .await
        .map_err(|e| store_error("deleting deltas", &e))?;
    Metrics::add(&state.metrics.deltas_deleted, names.len() as u64);
    tracing::info!("deleted {} delta(s)", names.len());
    Ok(Json(Deleted {
        deleted: names.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessPolicy, Limits, Tokens};
    use nshard_core::format::{encode_delta, DataHint, Encoder};
    use nshard_core::{ObjectId, RemoteUrl};
    use nshard_remote::testing::random_bytes;

    async fn put(
        state: &Arc<AppState>,
        name: &DeltaName,
        body: Vec<u8>,
    ) -> Result<StatusCode, AppError> {
        let r = put_delta(
            State(state.clone()),
            Ok(Path(name.key())),
            HeaderMap::new(),
            Body::from(body),
        )
        .await?;
        Ok(r.status())
    }

    /// What a server over a store that does not verify deltas itself (S3) does: it verifies them
    /// first. Run over a directory told it does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_verifies_deltas_for_a_store_that_does_not() {
        let d = tempfile::tempdir().expect("tmp");
        let url = RemoteUrl::Dir(d.path().join("store"));
        let policy = AccessPolicy {
            tokens: Tokens::new(),
            anonymous: Some(Scope::Write),
        };
        let options = nshard_remote::OpenOptions::default();
        let mut state = AppState::open(&url, &options, None, policy, Limits::default())
            .await
            .expect("open");
        assert!(
            state.store_verifies_deltas,
            "a directory verifies deltas itself"
        );
        state.store_verifies_deltas = false;
        let state = Arc::new(state);

        let raw_a = random_bytes(100_000, 7);
        let a = ObjectId::of(&raw_a);
        let mut raw_x = raw_a.clone();
        for i in (0..raw_x.len()).step_by(997) {
            raw_x[i] ^= 3;
        }
        let x = ObjectId::of(&raw_x);
        let dx = encode_delta(&raw_x, &raw_a, &a, 2, 1).expect("a delta");
        let nx = DeltaName { id: x, base: a };

        let e = put(&state, &nx, dx.clone()).await.expect_err("no base");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNPROCESSABLE_ENTITY, protocol::BASE_MISSING)
        );
        assert!(e.message.contains(&a.to_hex()), "{}", e.message);
        let enc_a = Encoder::new().encode(&raw_a, DataHint::Unknown);
        state.store.put(&a, enc_a).await.expect("put a");

        let liar = DeltaName {
            id: ObjectId::of(b"a lie"),
            base: a,
        };
        let e = put(&state, &liar, dx.clone()).await.expect_err("a lie");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNPROCESSABLE_ENTITY, "object_rejected")
        );
        assert!(e.message.contains(&liar.id.to_hex()), "{}", e.message);
        assert!(state
            .store
            .deltas_of(&[liar.id])
            .await
            .expect("deltas_of")
            .is_empty());

        assert_eq!(
            put(&state, &nx, dx.clone()).await.expect("put"),
            StatusCode::CREATED
        );
        assert_eq!(
            put(&state, &nx, dx.clone()).await.expect("re-put"),
            StatusCode::OK
        );
        assert_eq!(
            state.store.deltas_of(&[x]).await.expect("deltas_of"),
            vec![nx]
        );
    }

    #[test]
    fn delta_names_are_canonical_or_refused() {
        let a = nshard_core::ObjectId::of(b"a");
        let b = nshard_core::ObjectId::of(b"b");
        let key = DeltaName { id: a, base: b }.key();
        assert_eq!(
            parse_delta_name(&key).expect("canonical"),
            DeltaName { id: a, base: b }
        );
        for bad in [
            key.to_uppercase(),
            format!("{}.{}", a.to_hex(), a.to_hex()),
            a.to_hex(),
            format!("{key}.x"),
            format!("../{key}"),
            String::new(),
        ] {
            let e = parse_delta_name(&bad).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.code, "invalid_delta_name");
        }
    }
}
