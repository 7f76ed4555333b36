//! The memory in a Qdrant server, through `qdrant-client` (gRPC, port 6334): one collection,
//! created when missing with the payload indexes searches use; writes wait until applied, so
//! what was stored is found at once, as with the embedded engine.

use std::collections::HashMap;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter as GrpcFilter, PointId, PointStruct,
    QueryPointsBuilder, Range, ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
    vectors_config,
};
use serde_json::Value;

use super::{Filter, Found, Payload, Point, StoreError};
use crate::memory::sources::Kind;

pub(super) struct Server {
    client: Qdrant,
    url: String,
    collection: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .finish()
    }
}

/// `filter` in Qdrant's gRPC types: the same conditions as [`super::qdrant_filter`].
pub(super) fn grpc_filter(filter: &Filter) -> GrpcFilter {
    let this_or_none = |field: &str, value: String| -> Condition {
        GrpcFilter::should([Condition::matches(field, value), Condition::is_empty(field)]).into()
    };
    let mut must = Vec::new();
    if !filter.kinds.is_empty() {
        let kinds: Vec<String> = filter.kinds.iter().map(|k| k.as_str().to_owned()).collect();
        must.push(Condition::matches("kind", kinds));
    }
    if let Some(printer) = &filter.printer {
        must.push(this_or_none("printer", printer.clone()));
    }
    if let Some(material) = &filter.material {
        must.push(this_or_none("material", crate::memory::sources::normal_material(material)));
    }
    if filter.since.is_some() || filter.until.is_some() {
        let range = Range {
            gte: filter.since.map(|v| v as f64),
            lt: filter.until.map(|v| v as f64),
            ..Range::default()
        };
        must.push(
            GrpcFilter::should([
                Condition::matches("kind", Kind::Document.as_str().to_owned()),
                Condition::range("at", range),
            ])
            .into(),
        );
    }
    let public: Vec<String> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Conversation)
        .map(|k| k.as_str().to_owned())
        .collect();
    let public = Condition::matches("kind", public);
    must.push(match &filter.viewer {
        Some(viewer) => {
            GrpcFilter::should([public, Condition::matches("owner", viewer.clone())]).into()
        }
        None => public,
    });
    GrpcFilter::must(must)
}

fn key_filter(keys: Vec<String>) -> GrpcFilter {
    GrpcFilter::must([Condition::matches("key", keys)])
}

fn payload_of(fields: HashMap<String, qdrant_client::qdrant::Value>) -> Option<Payload> {
    let map: serde_json::Map<String, Value> =
        fields.into_iter().map(|(k, v)| (k, v.into_json())).collect();
    serde_json::from_value(Value::Object(map)).ok()
}

impl Server {
    fn error(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Server { url: self.url.clone(), message: error.to_string() }
    }

    pub(super) async fn open(
        url: &str,
        api_key: Option<String>,
        collection: &str,
        dimensions: usize,
    ) -> Result<Server, StoreError> {
        let error = |e: &dyn std::fmt::Display| StoreError::Server {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .skip_compatibility_check()
            .build()
            .map_err(|e| error(&e))?;
        let server = Server { client, url: url.to_owned(), collection: collection.to_owned() };
        let exists =
            server.client.collection_exists(collection).await.map_err(|e| server.error(e))?;
        if !exists {
            let vectors = VectorParamsBuilder::new(dimensions as u64, Distance::Cosine);
            server
                .client
                .create_collection(CreateCollectionBuilder::new(collection).vectors_config(vectors))
                .await
                .map_err(|e| server.error(e))?;
            let fields = [
                ("key", FieldType::Keyword),
                ("kind", FieldType::Keyword),
                ("printer", FieldType::Keyword),
                ("material", FieldType::Keyword),
                ("owner", FieldType::Keyword),
                ("at", FieldType::Integer),
                ("chunk", FieldType::Integer),
            ];
            for (field, kind) in fields {
                server
                    .client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(collection, field, kind).wait(true),
                    )
                    .await
                    .map_err(|e| server.error(e))?;
            }
        }
        let info = server.client.collection_info(collection).await.map_err(|e| server.error(e))?;
        let size = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::Params(params) => Some(params.size as usize),
                vectors_config::Config::ParamsMap(_) => None,
            });
        if size != Some(dimensions) {
            return Err(server.error(format_args!(
                "the collection {collection} holds vectors of {size:?} dimensions, the \
                 embedding model makes {dimensions}; use another collection"
            )));
        }
        Ok(server)
    }

    pub(super) async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        let mut list = Vec::with_capacity(points.len());
        for point in points {
            let id = super::point_id(&point.payload.key, point.payload.chunk);
            let payload = serde_json::to_value(&point.payload).map_err(|e| self.error(e))?;
            let payload = qdrant_client::Payload::try_from(payload).map_err(|e| self.error(e))?;
            list.push(PointStruct::new(id, point.vector, payload));
        }
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, list).wait(true))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn remove(&self, keys: Vec<String>) -> Result<(), StoreError> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection).points(key_filter(keys)).wait(true),
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) async fn search(
        &self,
        vector: Vec<f32>,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError> {
        let request = QueryPointsBuilder::new(&self.collection)
            .query(vector)
            .filter(grpc_filter(filter))
            .limit(limit as u64)
            .with_payload(true);
        let response = self.client.query(request).await.map_err(|e| self.error(e))?;
        Ok(response
            .result
            .into_iter()
            .filter_map(|p| Some(Found { score: p.score, payload: payload_of(p.payload)? }))
            .collect())
    }

    pub(super) async fn ledger(&self) -> Result<Vec<(String, String)>, StoreError> {
        let first = GrpcFilter::must([Condition::matches("chunk", 0_i64)]);
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .filter(first.clone())
                .limit(1000)
                .with_payload(true);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let page = self.client.scroll(request).await.map_err(|e| self.error(e))?;
            for point in page.result {
                if let Some(payload) = payload_of(point.payload) {
                    out.push((payload.key, payload.hash));
                }
            }
            match page.next_page_offset {
                Some(next) if next.point_id_options.is_some() => offset = Some(next),
                _ => return Ok(out),
            }
        }
    }

    pub(super) async fn count(&self) -> Result<usize, StoreError> {
        let response = self
            .client
            .count(CountPointsBuilder::new(&self.collection).exact(true))
            .await
            .map_err(|e| self.error(e))?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }

    pub(super) async fn drop_collection(&self) -> Result<(), StoreError> {
        self.client.delete_collection(&self.collection).await.map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gRPC filter says what the JSON one says (the embedded engine's tests check that).
    #[test]
    fn the_grpc_filter_has_every_condition_of_the_json_one() {
        let full = Filter {
            kinds: vec![Kind::Outcome],
            printer: Some("p7".into()),
            material: Some("petg".into()),
            since: Some(1),
            until: Some(2),
            viewer: Some("otto".into()),
        };
        let grpc = grpc_filter(&full);
        assert_eq!(grpc.must.len(), 5, "{grpc:?}");
        let text = format!("{grpc:?}");
        for needle in ["\"p7\"", "\"PETG\"", "\"otto\"", "\"printer\"", "\"at\""] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(!text.contains("\"conversation\""), "conversations by their owner only: {text}");
        let anonymous = format!("{:?}", grpc_filter(&Filter::default()));
        assert!(!anonymous.contains("owner"), "{anonymous}");
    }
}
