//! Protocol v1 between `nshard` and `nshard serve`: the routes and the JSON bodies, defined once
//! and used by both the server and the HTTP client, so the two cannot drift apart.
//!
//! | method | path | body → answer |
//! | --- | --- | --- |
//! | `GET` | [`HEALTH`] | → [`Health`] (no token needed) |
//! | `POST` | [`MISSING`] | [`MissingRequest`] → [`MissingResponse`] |
//! | `HEAD` | [`object_path`] | → 200 with the encoded length, or 404 |
//! | `GET` | [`object_path`] | → the encoded object |
//! | `PUT` | [`object_path`] | the encoded object → [`PutResponse`] |
//! | `POST` | [`verify_path`] | → [`ObjectCheck`]: the server hashes its own copy (offered when [`Health::features`] lists [`FEATURE_VERIFY`]) |
//! | `GET` | [`RECORDS`] | → [`RecordList`] (read scope) |
//! | `GET` | [`record_path`] | → the record's bytes, or 404 with code [`NO_SUCH_RECORD`] (read scope) |
//! | `PUT` | [`record_path`] (without the writer) | the record's bytes → [`RecordPut`], 201; 409 when the name exists (write scope; the server sets the writer) |
//! | `POST` | [`DELETE_RECORDS`] | [`DeleteRecords`] → [`Deleted`] (admin scope) |
//! | `GET` | [`OBJECTS`]`?after=ID&limit=N` | → [`ObjectPage`] (admin scope) |
//! | `POST` | [`DELETE_OBJECTS`] | [`DeleteObjects`] → [`Deleted`] (admin scope) |
//! | `PUT` | [`delta_path`] | a delta object (format 3) → [`DeltaPut`]: 201 written, 200 there already; 422 with code [`BASE_MISSING`] when the server lacks its base (write scope; offered when [`Health::features`] lists [`FEATURE_DELTAS`]) |
//! | `GET` | [`delta_path`] | → the delta's bytes, or 404 (read scope) |
//! | `POST` | [`DELTAS_OF`] | [`DeltasOfRequest`] → [`DeltasOfResponse`] (read scope) |
//! | `GET` | [`DELTAS`]`?after=NAME&limit=N` | → [`DeltaPage`] (admin scope) |
//! | `POST` | [`DELETE_DELTAS`] | [`DeleteDeltas`] → [`Deleted`] (admin scope) |
//!
//! Every error answer has an [`ErrorBody`]. A `GET` of an object the server finds corrupt in its
//! store is answered 500 with code [`CORRUPT_OBJECT`] (the server moves the copy aside).
//!
//! Record names travel as strings (`SPACE/KEY/STAMP.WRITER`, see
//! [`RecordName`](crate::backend::RecordName)), and so do delta names (`<id hex>.<base hex>`, see
//! [`DeltaName`](crate::backend::DeltaName)); each side parses them before use.

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;

/// The protocol version (`/v1/…`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Path of the health check.
pub const HEALTH: &str = "/v1/health";

/// Path of the batched existence check.
pub const MISSING: &str = "/v1/objects/missing";

/// Route pattern of one object (axum's syntax).
pub const OBJECT_ROUTE: &str = "/v1/objects/{id}";

/// Path of the object `id`.
pub fn object_path(id: &ObjectId) -> String {
    format!("/v1/objects/{id}")
}

/// Route pattern of the server-side check of one object (axum's syntax).
pub const VERIFY_ROUTE: &str = "/v1/objects/{id}/verify";

/// Path of the server-side check of object `id`.
pub fn verify_path(id: &ObjectId) -> String {
    format!("/v1/objects/{id}/verify")
}

/// Path of the record listing (and the prefix of every record's path).
pub const RECORDS: &str = "/v1/records";

/// Route pattern of one record (axum's syntax): `GET` names it with its writer
/// (`SPACE/KEY/STAMP.WRITER`), `PUT` without (`SPACE/KEY/STAMP`: the server sets the writer).
/// The whole rest of the path is the name, so that a name with too many or too few segments is
/// refused as a name (400), not as an unknown endpoint.
pub const RECORD_ROUTE: &str = "/v1/records/{*name}";

/// Path of record `name` (`SPACE/KEY/STAMP.WRITER` to read it, `SPACE/KEY/STAMP` to write it).
/// Names are checked by their parser before they get here: no character in them needs escaping.
pub fn record_path(name: &str) -> String {
    format!("{RECORDS}/{name}")
}

/// Path of the batched record deletion (admin scope).
pub const DELETE_RECORDS: &str = "/v1/records/delete";

/// Path of the object listing (admin scope), paged: `?after=<id>&limit=<n>`.
pub const OBJECTS: &str = "/v1/objects";

/// The most (and default) objects in one page of [`OBJECTS`].
pub const OBJECT_PAGE_LIMIT: usize = 10_000;

/// Path of one page of the object listing: the objects after `after` (from the first when
/// `None`), at most `limit`.
pub fn objects_page_path(after: Option<&ObjectId>, limit: usize) -> String {
    match after {
        Some(id) => format!("{OBJECTS}?after={id}&limit={limit}"),
        None => format!("{OBJECTS}?limit={limit}"),
    }
}

/// Path of the batched object deletion (admin scope).
pub const DELETE_OBJECTS: &str = "/v1/objects/delete";

/// Path of the delta listing (admin scope), paged: `?after=<id>.<base>&limit=<n>`; also the
/// prefix of every delta's path.
pub const DELTAS: &str = "/v1/deltas";

/// Route pattern of one delta encoding (axum's syntax): `{name}` is `<id hex>.<base hex>`.
pub const DELTA_ROUTE: &str = "/v1/deltas/{name}";

/// Path of the delta encoding `key` (`<id hex>.<base hex>`, as
/// [`DeltaName::key`](crate::backend::DeltaName::key) writes it).
pub fn delta_path(key: &str) -> String {
    format!("{DELTAS}/{key}")
}

/// Path of the batched "which delta encodings do you hold of these ids" query (read scope).
pub const DELTAS_OF: &str = "/v1/deltas/of";

/// Path of the batched delta deletion (admin scope).
pub const DELETE_DELTAS: &str = "/v1/deltas/delete";

/// The most (and default) deltas in one page of [`DELTAS`].
pub const DELTA_PAGE_LIMIT: usize = 10_000;

/// Path of one page of the delta listing: the deltas whose names (`<id>.<base>`) come after
/// `after` (from the first when `None`), at most `limit`.
pub fn deltas_page_path(after: Option<&str>, limit: usize) -> String {
    match after {
        Some(key) => format!("{DELTAS}?after={key}&limit={limit}"),
        None => format!("{DELTAS}?limit={limit}"),
    }
}

/// The [`Health::features`] entry of a server that answers [`verify_path`].
pub const FEATURE_VERIFY: &str = "verify";

/// The [`Health::features`] entry of a server that stores float objects (object format 4).
/// Clients send a server without it (older, or started with `--max-object-format 1`) those chunks
/// in format 1.
pub const FEATURE_FLOAT_OBJECTS: &str = "float-objects";

/// The [`Health::features`] entry of a server that keeps delta encodings beside whole objects
/// (the delta routes: [`delta_path`], [`DELTAS_OF`], [`DELTAS`], [`DELETE_DELTAS`]). A server
/// without it (older, or over a store that keeps none) has no delta routes; one that also lists
/// [`FEATURE_DELTAS_FROZEN`] serves, lists and deletes the deltas it holds but takes no new ones.
pub const FEATURE_DELTAS: &str = "deltas";

/// The [`Health::features`] entry, beside [`FEATURE_DELTAS`], of a server whose
/// `--max-object-format` is below the delta format (3): it refuses delta uploads, and clients
/// keep the whole copies it holds (no delta is let stand for one), so that its store stays
/// readable by nshard binaries older than deltas. The deltas it already holds are served and
/// their bases kept like anywhere else.
pub const FEATURE_DELTAS_FROZEN: &str = "deltas-frozen";

/// The request header (value `1`) with which a client says it reads delta encodings itself
/// (every nshard since remote deltas sends it). A request without it comes from an older client,
/// which reads `objects/` only: for it the server counts an object held only as deltas as present
/// in `missing` answers, and `GET /v1/objects/{id}` resolves the chain and sends the object
/// encoded on its own.
pub const DELTAS_HEADER: &str = "x-nshard-deltas";

/// The error code of a delta upload refused because the server holds its base neither whole nor
/// as a delta (the client sends the base first).
pub const BASE_MISSING: &str = "base_missing";

/// The error code of a 404 for a record the server does not have (any other 404, such as an
/// older server's "no such endpoint", is not "no such record").
pub const NO_SUCH_RECORD: &str = "no_such_record";

/// The error code of a `GET` answer for an object the server found corrupt in its store.
pub const CORRUPT_OBJECT: &str = "corrupt_object";

/// Answer of [`HEALTH`]. Fields a client does not need to connect are optional, so that a client
/// can talk to an older or a newer server of the same protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// `"ok"`.
    #[serde(default)]
    pub status: String,
    /// The protocol version the server speaks.
    pub protocol: u64,
    /// `nshard/<version>`.
    #[serde(default)]
    pub server: String,
    /// The server's limits.
    #[serde(default)]
    pub limits: Option<HealthLimits>,
    /// What a client without a token may do (`"read"`, `"write"`), or null: nothing.
    #[serde(default)]
    pub anonymous: Option<String>,
    /// Optional endpoints the server offers ([`FEATURE_VERIFY`]); older servers send none.
    #[serde(default)]
    pub features: Vec<String>,
}

impl Health {
    /// The answer of a server speaking this protocol.
    pub fn new(server: String, limits: HealthLimits, anonymous: Option<String>) -> Health {
        Health {
            status: "ok".into(),
            protocol: PROTOCOL_VERSION,
            server,
            limits: Some(limits),
            anonymous,
            features: vec![FEATURE_VERIFY.into()],
        }
    }
}

/// The limits a server announces in [`Health`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthLimits {
    /// Largest encoded object a `PUT` may carry.
    pub max_object_bytes: Option<u64>,
    /// Most ids in one [`MissingRequest`].
    pub max_batch: Option<usize>,
    /// Uploads the server accepts at once before answering 429.
    pub max_concurrent_uploads: Option<usize>,
}

impl HealthLimits {
    /// All three limits.
    pub fn new(max_object_bytes: u64, max_batch: usize, max_concurrent_uploads: usize) -> Self {
        HealthLimits {
            max_object_bytes: Some(max_object_bytes),
            max_batch: Some(max_batch),
            max_concurrent_uploads: Some(max_concurrent_uploads),
        }
    }
}

/// Body of [`MISSING`]. The server checks each id itself, so that a bad one gets an error
/// naming it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// Object ids (64 lowercase hex characters each).
    pub ids: Vec<String>,
}

/// Answer of [`MISSING`]: the requested ids the server does not have, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingResponse {
    /// Ids not present.
    pub missing: Vec<ObjectId>,
}

/// Answer of a successful `PUT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutResponse {
    /// The object id.
    pub id: ObjectId,
    /// `true` when this upload wrote the object, `false` when it was already there.
    pub stored: bool,
}

/// Answer of [`RECORDS`]: every record name on the server, sorted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordList {
    /// `SPACE/KEY/STAMP.WRITER` names.
    pub records: Vec<String>,
}

/// Answer of a record `PUT` (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPut {
    /// The name as stored (`SPACE/KEY/STAMP.WRITER`, the writer set by the server).
    pub name: String,
}

/// One object of an [`ObjectPage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedObject {
    /// Its id.
    pub id: ObjectId,
    /// Its stored (encoded) size.
    pub size: u64,
    /// When it was stored (seconds since the epoch; 0 when the store cannot say).
    pub modified: u64,
}

/// Answer of [`OBJECTS`]: a page of objects in id order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectPage {
    /// Objects with ids after the page's `after`, ascending.
    pub objects: Vec<ListedObject>,
    /// Where the next page starts (its `after`), or null after the last page.
    pub next: Option<ObjectId>,
}

/// Body of [`DELETE_OBJECTS`]: at most [`DELETE_BATCH`](crate::backend::DELETE_BATCH) ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteObjects {
    /// Object ids (64 lowercase hex characters each).
    pub ids: Vec<String>,
}

/// Body of [`DELETE_RECORDS`]: at most [`DELETE_BATCH`](crate::backend::DELETE_BATCH) names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRecords {
    /// `SPACE/KEY/STAMP.WRITER` names.
    pub names: Vec<String>,
}

/// Answer of a deletion: how many ids or names it covered (absent ones count too: deleting is
/// idempotent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    /// Ids or names processed.
    pub deleted: usize,
}

/// Answer of a successful delta `PUT` ([`delta_path`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaPut {
    /// The delta's name (`<id>.<base>`).
    pub name: String,
    /// `true` when this upload wrote the delta (201), `false` when it was already there (200).
    pub stored: bool,
}

/// Body of [`DELTAS_OF`]: at most the server's `max_batch` ids. The server checks each id
/// itself, so that a bad one gets an error naming it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltasOfRequest {
    /// Object ids (64 lowercase hex characters each).
    pub ids: Vec<String>,
}

/// Answer of [`DELTAS_OF`]: the delta encodings the server holds of the requested ids (any
/// order; none for an id it holds none of).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltasOfResponse {
    /// `<id>.<base>` names.
    pub deltas: Vec<String>,
}

/// One delta encoding of a [`DeltaPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedDelta {
    /// Its name (`<id>.<base>`).
    pub name: String,
    /// Its stored size.
    pub size: u64,
    /// When it was stored (seconds since the epoch; 0 when the store cannot say).
    pub modified: u64,
}

/// Answer of [`DELTAS`]: a page of delta encodings in name order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaPage {
    /// Deltas whose names come after the page's `after`, ascending.
    pub deltas: Vec<ListedDelta>,
    /// Where the next page starts (its `after`), or null after the last page.
    pub next: Option<String>,
}

/// Body of [`DELETE_DELTAS`]: at most [`DELETE_BATCH`](crate::backend::DELETE_BATCH) names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteDeltas {
    /// `<id>.<base>` names.
    pub names: Vec<String>,
}

/// What a store found when it checked its copy of an object: the answer of [`verify_path`], and
/// what [`Store::check_object`](crate::Store::check_object) returns for every backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ObjectCheck {
    /// Present, and decodes to bytes hashing to its id.
    Intact {
        /// The encoded size.
        size: u64,
    },
    /// Present but corrupt.
    Corrupt {
        /// What is wrong with it.
        reason: String,
        /// Whether the store already moved the copy aside (a server does, when it finds one).
        moved_aside: bool,
    },
    /// Not in the store.
    Missing,
}

/// Body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A message for a person.
    pub error: String,
    /// A stable machine-readable code (`unauthorized`, `not_found`, [`CORRUPT_OBJECT`], …).
    #[serde(default)]
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_and_tolerates_missing_fields() {
        let h = Health::new(
            "nshard/x".into(),
            HealthLimits::new(1, 2, 3),
            Some("read".into()),
        );
        let text = serde_json::to_string(&h).expect("serialize");
        let back: Health = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.protocol, PROTOCOL_VERSION);
        assert_eq!(back.limits.expect("limits").max_batch, Some(2));
        let minimal: Health = serde_json::from_str(r#"{"protocol":1}"#).expect("minimal");
        assert!(minimal.limits.is_none());
        assert!(
            minimal.features.is_empty(),
            "an older server offers nothing optional"
        );
        assert_eq!(back.features, vec![FEATURE_VERIFY.to_string()]);
    }

    #[test]
    fn object_path_matches_the_route() {
        let id = ObjectId::of(b"x");
        assert_eq!(object_path(&id), OBJECT_ROUTE.replace("{id}", &id.to_hex()));
        assert_eq!(verify_path(&id), VERIFY_ROUTE.replace("{id}", &id.to_hex()));
        assert_eq!(
            record_path("s/k/n"),
            RECORD_ROUTE.replace("{*name}", "s/k/n")
        );
        assert_eq!(
            objects_page_path(Some(&id), 5),
            format!("{OBJECTS}?after={}&limit=5", id.to_hex())
        );
        let key = format!("{}.{}", id.to_hex(), ObjectId::of(b"y").to_hex());
        assert_eq!(delta_path(&key), DELTA_ROUTE.replace("{name}", &key));
        assert_eq!(
            deltas_page_path(Some(&key), 7),
            format!("{DELTAS}?after={key}&limit=7")
        );
        assert_eq!(deltas_page_path(None, 7), format!("{DELTAS}?limit=7"));
    }
}
