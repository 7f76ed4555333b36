//! Where the memory's vectors live: one interface ([`Store`]) over two engines: Qdrant's
//! engine embedded in the hub (`qdrant-edge`, a directory under the hub's data directory), the
//! default, and a Qdrant server through `qdrant-client` (gRPC), for farms that outgrow one
//! machine. Every point is one piece of one remembered item, its payload the fields searches
//! filter on ([`Filter`]: in Qdrant's JSON filter language for the embedded engine by
//! [`qdrant_filter`], in its gRPC types for a server by `server::grpc_filter`, both pure).
//!
//! The embedded engine is synchronous; each call runs on the blocking pool, one at a time (the
//! shard flushes when dropped and wants no other user then).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qdrant_edge::{
    CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeVectorParamsBuilder, FieldIndexOperations, PayloadFieldSchema, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, ScrollRequest, SearchRequest,
    UpdateOperation, WithPayloadInterface,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::sources::Kind;

/// What a point carries besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// The item's key (`outcome:12`).
    pub key: String,
    pub kind: Kind,
    /// Which piece of the item (0 for the first).
    pub chunk: u32,
    pub title: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub printer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub material: Option<String>,
    pub at: i64,
    pub link: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    /// The item's hash when it was indexed.
    pub hash: String,
}

/// A point to store.
#[derive(Debug, Clone)]
pub struct Point {
    pub vector: Vec<f32>,
    pub payload: Payload,
}

/// The point's id: the same item and piece always land on the same point.
pub fn point_id(key: &str, chunk: u32) -> u64 {
    let digest = Sha256::digest(format!("{key}#{chunk}").as_bytes());
    // Qdrant's numeric ids are u64; keep them below 2^63 for clients that read them signed.
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) >> 1
}

/// A search's hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub score: f32,
    pub payload: Payload,
}

/// What a search is limited to. Printer and material keep what names them or names none
/// (a manual for every printer still answers a question about one); the period applies to
/// what happened (outcomes, events, conversations), not to documents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only these kinds (empty: all).
    pub kinds: Vec<Kind>,
    pub printer: Option<String>,
    pub material: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Whose conversations may be found: none when `None`.
    pub viewer: Option<String>,
}

fn matches(field: &str, value: &str) -> Value {
    json!({"key": field, "match": {"value": value}})
}

fn this_or_none(field: &str, value: &str) -> Value {
    json!({"should": [matches(field, value), {"is_empty": {"key": field}}]})
}

/// `filter` in Qdrant's filter language (the JSON its REST API and the edge engine read).
pub fn qdrant_filter(filter: &Filter) -> Value {
    let mut must = Vec::new();
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
        must.push(json!({"key": "kind", "match": {"any": kinds}}));
    }
    if let Some(printer) = &filter.printer {
        must.push(this_or_none("printer", printer));
    }
    if let Some(material) = &filter.material {
        must.push(this_or_none("material", &super::sources::normal_material(material)));
    }
    if filter.since.is_some() || filter.until.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(since) = filter.since {
            range.insert("gte".into(), json!(since));
        }
        if let Some(until) = filter.until {
            range.insert("lt".into(), json!(until));
        }
        must.push(json!({"should": [
            matches("kind", Kind::Document.as_str()),
            {"key": "at", "range": range},
        ]}));
    }
    // Every kind but conversations, named (not `except`: qdrant-edge 0.7.2's estimate of an
    // `except` on a keyword index trips its own debug assertion when the excluded value is
    // the only other one).
    let public: Vec<&str> =
        Kind::ALL.into_iter().filter(|k| *k != Kind::Conversation).map(Kind::as_str).collect();
    let public = json!({"key": "kind", "match": {"any": public}});
    let private = match &filter.viewer {
        Some(viewer) => json!({"should": [public, matches("owner", viewer)]}),
        None => public,
    };
    must.push(private);
    json!({"must": must})
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the memory's store at {path}: {message}")]
    Edge { path: PathBuf, message: String },
    #[error("the memory's Qdrant server ({url}): {message}")]
    Server { url: String, message: String },
    #[error("the memory's store is not usable: {0}")]
    Broken(String),
}

/// The memory's vectors.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    Embedded(Arc<Edge>),
    Server(Arc<server::Server>),
}

#[derive(Debug)]
struct Edge {
    path: PathBuf,
    /// `None` only while being dropped.
    shard: Mutex<Option<EdgeShard>>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        // The engine flushes when dropped and panics when it cannot (a data directory gone,
        // a full disk): that is logged here, not a crash on the way out.
        let shard = self.shard.get_mut().map_or_else(|p| p.into_inner().take(), Option::take);
        if let Some(shard) = shard
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shard))).is_err()
        {
            tracing::error!(path = %self.path.display(), "The memory's store could not flush.");
        }
    }
}

/// Payload fields that get an index (searches filter on them).
const KEYWORDS: &[&str] = &["key", "kind", "printer", "material", "owner"];
const INTEGERS: &[&str] = &["at", "chunk"];

impl Store {
    /// The embedded engine at `path`, created when it holds none, for `dimensions`-long
    /// vectors compared by cosine.
    pub fn open_embedded(path: &Path, dimensions: usize) -> Result<Store, StoreError> {
        let error = |e: &dyn std::fmt::Display| StoreError::Edge {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(|e| error(&e))?;
        let existing = path.join("edge_config.json").exists();
        let shard = if existing {
            EdgeShard::load(path, None).map_err(|e| error(&e))?
        } else {
            let config = EdgeConfigBuilder::new()
                .vector(
                    DEFAULT_VECTOR_NAME,
                    EdgeVectorParamsBuilder::new(dimensions, Distance::Cosine).build(),
                )
                .on_disk_payload(false)
                .build();
            EdgeShard::new(path, config).map_err(|e| error(&e))?
        };
        let stored = shard.config().vectors.get(DEFAULT_VECTOR_NAME).map(|v| v.size);
        if stored != Some(dimensions) {
            return Err(error(&format_args!(
                "it holds vectors of {stored:?} dimensions, the embedding model makes {dimensions}; \
                 move the directory away to index again"
            )));
        }
        if !existing {
            for (fields, kind) in
                [(KEYWORDS, PayloadSchemaType::Keyword), (INTEGERS, PayloadSchemaType::Integer)]
            {
                for field in fields {
                    let index = CreateIndex {
                        field_name: field.parse().map_err(|_| error(&format_args!("{field}")))?,
                        field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                    };
                    shard
                        .update(UpdateOperation::FieldIndexOperation(
                            FieldIndexOperations::CreateIndex(index),
                        ))
                        .map_err(|e| error(&e))?;
                }
            }
        }
        let edge = Edge { path: path.to_owned(), shard: Mutex::new(Some(shard)) };
        Ok(Store { inner: Engine::Embedded(Arc::new(edge)) })
    }

    /// The collection `collection` of the Qdrant server at `url` (gRPC), created when
    /// missing, for `dimensions`-long vectors compared by cosine.
    pub async fn open_server(
        url: &str,
        api_key: Option<String>,
        collection: &str,
        dimensions: usize,
    ) -> Result<Store, StoreError> {
        let server = server::Server::open(url, api_key, collection, dimensions).await?;
        Ok(Store { inner: Engine::Server(Arc::new(server)) })
    }

    /// Which engine, for the dashboard.
    pub fn engine(&self) -> &'static str {
        match &self.inner {
            Engine::Embedded(_) => "embedded",
            Engine::Server(_) => "qdrant server",
        }
    }

    /// The server's engine, when it is one.
    fn server(&self) -> Option<&server::Server> {
        match &self.inner {
            Engine::Server(server) => Some(server),
            Engine::Embedded(_) => None,
        }
    }

    /// Removes the server's collection (the tests' clean-up); nothing for the embedded one.
    pub async fn drop_collection(&self) -> Result<(), StoreError> {
        match self.server() {
            Some(server) => server.drop_collection().await,
            None => Ok(()),
        }
    }

    /// Runs `work` on the embedded engine's shard (callers answer for a server first).
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&EdgeShard) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Engine::Embedded(inner) = &self.inner else {
            return Err(StoreError::Broken("not the embedded engine".into()));
        };
        let inner = inner.clone();
        let path = inner.path.clone();
        let done = tokio::task::spawn_blocking(move || {
            // A call that panicked (the engine's own assertions) left the shard as it was:
            // the next one goes on with it.
            let shard = inner.shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match shard.as_ref() {
                Some(shard) => work(shard),
                None => Err("the store is closing".to_owned()),
            }
        })
        .await;
        match done {
            Ok(result) => result.map_err(|message| StoreError::Edge { path, message }),
            Err(join) => Err(StoreError::Broken(format!("a store call failed: {join}"))),
        }
    }

    /// Stores `points` (replacing any with the same item and piece).
    pub async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        if let Some(server) = self.server() {
            return server.upsert(points).await;
        }
        let mut list = Vec::with_capacity(points.len());
        for point in points {
            let id = point_id(&point.payload.key, point.payload.chunk);
            let payload = serde_json::to_value(&point.payload)
                .map_err(|e| StoreError::Broken(e.to_string()))?;
            list.push(PointStruct::new(id, point.vector, payload).into());
        }
        self.with(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(list),
                )))
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Removes every piece of the items with these keys.
    pub async fn remove(&self, keys: Vec<String>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(server) = self.server() {
            return server.remove(keys).await;
        }
        let filter = parse_filter(json!({"must": [{"key": "key", "match": {"any": keys}}]}))?;
        self.with(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(
                    filter,
                )))
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// The `limit` closest pieces to `vector` that pass `filter`, closest first.
    pub async fn search(
        &self,
        vector: Vec<f32>,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError> {
        if let Some(server) = self.server() {
            return server.search(vector, filter, limit).await;
        }
        let filter = parse_filter(qdrant_filter(filter))?;
        let request = SearchRequest {
            query: vector.into(),
            filter: Some(filter),
            params: None,
            limit,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: None,
            score_threshold: None,
        };
        let points =
            self.with(move |shard| shard.search(request).map_err(|e| e.to_string())).await?;
        Ok(points
            .into_iter()
            .filter_map(|p| {
                let payload = p.payload?;
                let payload: Payload = serde_json::from_value(Value::Object(payload.0)).ok()?;
                Some(Found { score: p.score, payload })
            })
            .collect())
    }

    /// Every indexed item's key and hash (from its first piece).
    pub async fn ledger(&self) -> Result<Vec<(String, String)>, StoreError> {
        if let Some(server) = self.server() {
            return server.ledger().await;
        }
        let filter = parse_filter(json!({"must": [{"key": "chunk", "match": {"value": 0}}]}))?;
        self.with(move |shard| {
            let mut out = Vec::new();
            let mut offset: Option<PointId> = None;
            loop {
                let request = ScrollRequest {
                    offset,
                    limit: Some(1000),
                    filter: Some(filter.clone()),
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    ..ScrollRequest::default()
                };
                let (records, next) = shard.scroll(request).map_err(|e| e.to_string())?;
                for record in records {
                    let payload = record.payload.map(|p| p.0).unwrap_or_default();
                    if let (Some(Value::String(key)), Some(Value::String(hash))) =
                        (payload.get("key"), payload.get("hash"))
                    {
                        out.push((key.clone(), hash.clone()));
                    }
                }
                match next {
                    Some(next) => offset = Some(next),
                    None => return Ok(out),
                }
            }
        })
        .await
    }

    /// How many pieces are stored.
    pub async fn count(&self) -> Result<usize, StoreError> {
        if let Some(server) = self.server() {
            return server.count().await;
        }
        self.with(|shard| Ok(shard.info().points_count)).await
    }

    /// Builds the search index over what was added (the engine does not in the background).
    /// (A server indexes by itself.)
    pub async fn optimize(&self) -> Result<(), StoreError> {
        if self.server().is_some() {
            return Ok(());
        }
        self.with(|shard| shard.optimize().map(drop).map_err(|e| e.to_string())).await
    }
}

mod server;

fn parse_filter(value: Value) -> Result<qdrant_edge::Filter, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Broken(format!("a filter Qdrant does not read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_parses_as_qdrants_and_keeps_conversations_private() {
        let full = Filter {
            kinds: vec![Kind::Outcome, Kind::Document],
            printer: Some("p7".into()),
            material: Some("petg".into()),
            since: Some(1),
            until: Some(2),
            viewer: Some("otto".into()),
        };
        for filter in [Filter::default(), full.clone()] {
            parse_filter(qdrant_filter(&filter)).unwrap();
        }
        let text = qdrant_filter(&full).to_string();
        assert!(text.contains(r#""value":"PETG""#), "{text}");
        assert!(text.contains(r#""value":"otto""#), "{text}");
        let anonymous = qdrant_filter(&Filter::default()).to_string();
        assert!(anonymous.contains(r#""any":["outcome","document","events"]"#), "{anonymous}");
        assert!(!anonymous.contains("owner"), "{anonymous}");
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn point(key: &str, kind: Kind, chunk: u32, vector: &[f32]) -> Point {
        Point {
            vector: unit(vector),
            payload: Payload {
                key: key.into(),
                kind,
                chunk,
                title: key.into(),
                text: format!("{key} piece {chunk}"),
                printer: None,
                material: None,
                at: 0,
                link: format!("/{key}"),
                owner: None,
                hash: "h1".into(),
            },
        }
    }

    fn keys(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.payload.key.as_str()).collect()
    }

    /// What every engine must do: store, find by closeness within filters, keep
    /// conversations to their person, replace, remove, list what it holds.
    async fn behaves(store: &Store) {
        let mut p7_petg = point("outcome:1", Kind::Outcome, 0, &[1.0, 0.0, 0.0]);
        p7_petg.payload.printer = Some("p7".into());
        p7_petg.payload.material = Some("PETG".into());
        p7_petg.payload.at = 1_000;
        let mut p3_pla = point("outcome:2", Kind::Outcome, 0, &[0.9, 0.1, 0.0]);
        p3_pla.payload.printer = Some("p3".into());
        p3_pla.payload.material = Some("PLA".into());
        p3_pla.payload.at = 5_000;
        let manual = point("document:m", Kind::Document, 0, &[0.8, 0.2, 0.0]);
        let manual_2 = point("document:m", Kind::Document, 1, &[0.0, 0.0, 1.0]);
        let mut otto = point("conversation:c1", Kind::Conversation, 0, &[1.0, 0.0, 0.01]);
        otto.payload.owner = Some("otto".into());
        store.upsert(vec![p7_petg, p3_pla, manual, manual_2, otto]).await.unwrap();
        store.optimize().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 5);

        let query = unit(&[1.0, 0.0, 0.0]);
        let all = store.search(query.clone(), &Filter::default(), 10).await.unwrap();
        assert_eq!(keys(&all), ["outcome:1", "outcome:2", "document:m", "document:m"]);
        assert!(all[0].score > 0.99 && all[0].score >= all[1].score, "{all:?}");
        assert_eq!(all[0].payload.printer.as_deref(), Some("p7"));

        // Otto finds his conversation; nobody else does.
        let mine = Filter { viewer: Some("otto".into()), ..Filter::default() };
        let found = store.search(query.clone(), &mine, 1).await.unwrap();
        assert_eq!(keys(&found), ["outcome:1"]);
        let found = store.search(query.clone(), &mine, 10).await.unwrap();
        assert!(keys(&found).contains(&"conversation:c1"), "{found:?}");
        let theirs = Filter { viewer: Some("ada".into()), ..Filter::default() };
        let found = store.search(query.clone(), &theirs, 10).await.unwrap();
        assert!(!keys(&found).contains(&"conversation:c1"), "{found:?}");

        // Printer and material keep theirs and what names none; the period applies to what
        // happened, not to documents; kinds narrow.
        let p7 = Filter { printer: Some("p7".into()), ..Filter::default() };
        let found = store.search(query.clone(), &p7, 10).await.unwrap();
        assert_eq!(keys(&found), ["outcome:1", "document:m", "document:m"]);
        let pla = Filter { material: Some("pla".into()), ..Filter::default() };
        let found = store.search(query.clone(), &pla, 10).await.unwrap();
        assert_eq!(keys(&found), ["outcome:2", "document:m", "document:m"]);
        let late = Filter { since: Some(2_000), until: Some(9_000), ..Filter::default() };
        let found = store.search(query.clone(), &late, 10).await.unwrap();
        assert_eq!(keys(&found), ["outcome:2", "document:m", "document:m"]);
        let documents = Filter { kinds: vec![Kind::Document], ..Filter::default() };
        let found = store.search(query.clone(), &documents, 10).await.unwrap();
        assert_eq!(keys(&found), ["document:m", "document:m"]);

        // The ledger: one entry per item, from its first piece.
        let mut ledger = store.ledger().await.unwrap();
        ledger.sort();
        assert_eq!(
            ledger.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["conversation:c1", "document:m", "outcome:1", "outcome:2"]
        );

        // Replaced in place, and removed with all its pieces.
        let mut again = point("outcome:1", Kind::Outcome, 0, &[0.0, 1.0, 0.0]);
        again.payload.hash = "h2".into();
        store.upsert(vec![again]).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 5);
        let found = store.search(unit(&[0.0, 1.0, 0.0]), &Filter::default(), 1).await.unwrap();
        assert_eq!(
            (found[0].payload.key.as_str(), found[0].payload.hash.as_str()),
            ("outcome:1", "h2")
        );
        store.remove(vec!["document:m".into(), "outcome:9".into()]).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3);
        let found = store.search(query, &documents, 10).await.unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[tokio::test]
    async fn the_embedded_engine_behaves_and_keeps_its_points_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let store = Store::open_embedded(&path, 3).unwrap();
        behaves(&store).await;
        drop(store);
        let store = Store::open_embedded(&path, 3).unwrap();
        assert_eq!(store.count().await.unwrap(), 3);
        let found = store.search(unit(&[0.0, 1.0, 0.0]), &Filter::default(), 1).await.unwrap();
        assert_eq!(found[0].payload.key, "outcome:1");
        drop(store);
        // Another model's vectors do not go into this store.
        let error = Store::open_embedded(&path, 384).unwrap_err().to_string();
        assert!(error.contains("384"), "{error}");
    }

    /// The same behaviour from a Qdrant server, when one is named by `KITT_QDRANT_URL` (none
    /// can be installed on the machines the suite runs on; it says so).
    #[tokio::test]
    #[allow(clippy::print_stdout)]
    async fn a_qdrant_server_behaves_the_same_when_one_is_configured() {
        let Ok(url) = std::env::var("KITT_QDRANT_URL") else {
            println!("KITT_QDRANT_URL is not set: the Qdrant server engine is not exercised");
            return;
        };
        let collection = format!("kitt_test_{}", std::process::id());
        let store = Store::open_server(&url, None, &collection, 3).await.unwrap();
        behaves(&store).await;
        let again = Store::open_server(&url, None, &collection, 3).await.unwrap();
        assert_eq!(again.count().await.unwrap(), 3);
        let error = Store::open_server(&url, None, &collection, 384).await.unwrap_err();
        assert!(error.to_string().contains("384"), "{error}");
        store.drop_collection().await.unwrap();
    }

    #[test]
    fn point_ids_are_stable_and_distinct() {
        assert_eq!(point_id("outcome:1", 0), point_id("outcome:1", 0));
        assert_ne!(point_id("outcome:1", 0), point_id("outcome:1", 1));
        assert_ne!(point_id("outcome:1", 0), point_id("outcome:10", 0));
        assert!(point_id("document:x", 3) < 1 << 63);
    }
}
