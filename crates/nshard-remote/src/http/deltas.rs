//! The delta routes of protocol v1 on the client side: what [`HttpStore`]'s delta methods send,
//! for a server that announces [`protocol::FEATURE_DELTAS`] in `/v1/health`. Against any other
//! server (an older one, one over a store without deltas, or one started with
//! `--max-object-format 1`) they fail at once, as the trait says, without asking.
//!
//! Errors map as for objects: 5xx, 429 and dropped connections are transient; a refused upload is
//! permanent and names the delta (its id first); a refusal for a missing base is
//! [`StoreError::BaseMissing`], so that the caller sends the base first.

use std::collections::HashSet;

use reqwest::{header, StatusCode};

use nshard_core::backend::{DeltaName, StoredDelta, DELETE_BATCH};
use nshard_core::protocol::{
    self, DeleteDeltas, DeltaPage, DeltasOfRequest, DeltasOfResponse, ErrorBody, BASE_MISSING,
    DELTA_PAGE_LIMIT,
};
use nshard_core::{Error, ObjectId, RemoteError, RemoteFailure, Result, StoreError};

use super::{HttpStore, MAX_OBJECT_PAGES, SMALL_ANSWER_CAP};

/// Bytes of one delta name in a JSON answer: 129 characters, quotes, a comma.
const NAME_BYTES: usize = 132;
/// Delta encodings per id a `deltas/of` answer may list on average (a chunk has a few at most:
/// one per base a writer encoded it against).
const DELTAS_PER_ID: usize = 64;
/// Largest page of the delta listing read ([`DELTA_PAGE_LIMIT`] entries of about 190 bytes in
/// JSON, with room to spare).
const DELTA_PAGE_CAP: usize = SMALL_ANSWER_CAP + DELTA_PAGE_LIMIT * 260;

impl HttpStore {
    /// The error of a delta method on a server that keeps no delta encodings.
    fn no_deltas(&self) -> Error {
        Error::Remote(RemoteError::Failed {
            remote: self.base.clone(),
            kind: RemoteFailure::Refused,
            reason: "this server keeps no delta encodings (an `nshard serve` older than them, one whose store keeps none, or one started with --max-object-format 1)".into(),
        })
    }

    /// A delta name the server answered with, parsed; one this client cannot read is an error.
    fn answered_name(&self, what: &str, s: &str) -> Result<DeltaName> {
        DeltaName::parse(s).filter(|n| n.key() == s).ok_or_else(|| {
            self.incompatible(format!(
                "{what}: the server answered with an invalid delta name {:?}",
                s.chars().take(140).collect::<String>()
            ))
        })
    }

    /// `PUT /v1/deltas/{id}.{base}`: 201 written, 200 there already.
    pub(super) async fn upload_delta(&self, name: &DeltaName, encoded: Vec<u8>) -> Result<bool> {
        if !self.deltas {
            return Err(self.no_deltas());
        }
        let key = name.key();
        if encoded.len() as u64 > self.max_object_bytes {
            return Err(Error::Remote(RemoteError::Failed {
                remote: self.base.clone(),
                kind: RemoteFailure::Refused,
                reason: format!(
                    "delta {key} is {} bytes, over the server's limit of {} bytes",
                    encoded.len(),
                    self.max_object_bytes
                ),
            }));
        }
        let what = format!("uploading delta {key}");
        let req = self
            .client
            .put(self.url(&protocol::delta_path(&key)))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(encoded);
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::UNPROCESSABLE_ENTITY {
            let status = resp.status();
            let text = self.error_text(resp).await;
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) if b.code == BASE_MISSING => Error::Store(StoreError::BaseMissing {
                    id: name.id,
                    base: name.base,
                }),
                _ => self.status_error(status, &text, &what),
            });
        }
        let resp = self.check(resp, &what).await?;
        Ok(resp.status() == StatusCode::CREATED)
    }

    /// `GET /v1/deltas/{id}.{base}`: 404 is [`StoreError::ObjectMissing`] of the id.
    pub(super) async fn download_delta(&self, name: &DeltaName) -> Result<Vec<u8>> {
        if !self.deltas {
            return Err(self.no_deltas());
        }
        let key = name.key();
        let url = self.url(&protocol::delta_path(&key));
        let what = format!("downloading delta {key}");
        self.download(url, &name.id, &what, &format!("delta {key}"))
            .await
    }

    /// `POST /v1/deltas/of`, in batches of at most the server's `max_batch` ids.
    pub(super) async fn ask_deltas_of(&self, ids: &[ObjectId]) -> Result<Vec<DeltaName>> {
        if !self.deltas {
            return Err(self.no_deltas());
        }
        let what = "asking which delta encodings it holds";
        let mut out = Vec::new();
        for batch in ids.chunks(self.max_batch) {
            let body = DeltasOfRequest {
                ids: batch.iter().map(ObjectId::to_hex).collect(),
            };
            let req = self.client.post(self.url(protocol::DELTAS_OF)).json(&body);
            let resp = self.send(req).await?;
            let resp = self.check(resp, what).await?;
            let cap = SMALL_ANSWER_CAP + NAME_BYTES * DELTAS_PER_ID * batch.len();
            let answer: DeltasOfResponse = self
                .json_answer(resp, cap, what, |b| serde_json::from_slice(b))
                .await?;
            let asked: HashSet<&ObjectId> = batch.iter().collect();
            for s in &answer.deltas {
                let name = self.answered_name(what, s)?;
                if !asked.contains(&name.id) {
                    return Err(self.incompatible(format!(
                        "{what}: the server answered with {s}, of an id not asked about"
                    )));
                }
                out.push(name);
            }
        }
        Ok(out)
    }

    /// `GET /v1/deltas`, a page after the other (admin scope).
    pub(super) async fn list_all_deltas(&self) -> Result<Vec<StoredDelta>> {
        if !self.deltas {
            return Err(self.no_deltas());
        }
        let what = "listing deltas";
        let mut out: Vec<StoredDelta> = Vec::new();
        let mut after: Option<DeltaName> = None;
        for _ in 0..MAX_OBJECT_PAGES {
            let key = after.map(|a| a.key());
            let url = self.url(&protocol::deltas_page_path(
                key.as_deref(),
                DELTA_PAGE_LIMIT,
            ));
            let resp = self.send(self.client.get(url)).await?;
            let resp = self.check_records(resp, what, true).await?;
            let page: DeltaPage = self
                .json_answer(resp, DELTA_PAGE_CAP, what, |b| serde_json::from_slice(b))
                .await?;
            // Ascending, after `after`, and `next` past them all: the listing makes progress and
            // lists no delta twice.
            let mut last = after;
            for d in &page.deltas {
                let name = self.answered_name(what, &d.name)?;
                if last.is_some_and(|l| name <= l) {
                    return Err(self.incompatible(format!(
                        "{what}: the server listed {} out of order",
                        d.name
                    )));
                }
                last = Some(name);
                out.push(StoredDelta {
                    name,
                    size: d.size,
                    modified: d.modified,
                });
            }
            let Some(next) = page.next else {
                return Ok(out);
            };
            let next = self.answered_name(what, &next)?;
            if last.is_some_and(|l| next < l) || after.is_some_and(|a| next <= a) {
                return Err(self.incompatible(format!(
                    "{what}: the server's next page ({}) does not follow its last one",
                    next.key()
                )));
            }
            after = Some(next);
        }
        Err(self.incompatible(format!(
            "{what}: the listing did not end after {MAX_OBJECT_PAGES} pages"
        )))
    }

    /// `POST /v1/deltas/delete`, in batches of [`DELETE_BATCH`] (admin scope).
    pub(super) async fn delete_some_deltas(&self, names: &[DeltaName]) -> Result<()> {
        if !self.deltas {
            return Err(self.no_deltas());
        }
        for batch in names.chunks(DELETE_BATCH) {
            let body = DeleteDeltas {
                names: batch.iter().map(DeltaName::key).collect(),
            };
            let what = format!("deleting {} deltas", batch.len());
            self.post_deletion(protocol::DELETE_DELTAS, &what, serde_json::to_vec(&body))
                .await?;
        }
        Ok(())
    }
}
