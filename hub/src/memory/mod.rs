//! The assistant's memory (issue 20): the farm's history as vectors, searched by meaning with
//! filters (printer, material, period), each hit a citation with a link into the dashboard.
//!
//! What is remembered ([`sources`]): outcomes with their reviews, documents an operator adds
//! (Markdown, text, PDF), conversations (each found only by its own person), and each
//! printer's notable events of a day. The database is the source of truth; a sync
//! ([`Memory::sync`]) compares every item's hash with what the store holds, embeds and stores
//! what is new or changed, and removes what is gone. It runs when the hub starts, after a
//! document or a review changes, after a conversation's turn, and every `SYNC_EVERY` for the
//! rest (events, outcomes as prints end).

pub mod documents;
pub mod sources;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::assistant::embed::Embedder;
use crate::db::Db;
use sources::{Item, Kind};
use store::{Filter, Found, Payload, Point, Store};

/// How often the memory looks for what changed without being told.
pub const SYNC_EVERY: Duration = Duration::from_secs(30);

/// How far back the events are remembered.
const EVENTS_DAYS: i64 = 400;

/// Pieces embedded per model call.
const BATCH: usize = 32;

/// The memory.
#[derive(Debug, Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    embedder: Embedder,
    store: Store,
    /// What the store holds: item key → hash. Loaded from the store at the first sync; held
    /// for a whole sync, so syncs run one at a time.
    ledger: tokio::sync::Mutex<Option<HashMap<String, String>>>,
    /// Moves whenever the store's contents change (the semantic cache's scope).
    generation: AtomicU64,
    last: std::sync::Mutex<Option<SyncReport>>,
    /// Items held by kind, as of the last sync (read without waiting for a sync under way).
    counts: std::sync::Mutex<HashMap<Kind, usize>>,
    wake: tokio::sync::Notify,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Pieces embedded and stored.
    pub pieces: usize,
    pub took_ms: u64,
    /// When it ended, Unix ms.
    pub at: i64,
    /// Why it stopped short, if it did.
    pub error: Option<String>,
}

/// A search's hit: one remembered item, by its closest piece.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hit {
    /// `outcome`, `document`, `conversation` or `events`.
    pub kind: String,
    /// The item's key (`outcome:12`).
    pub key: String,
    pub title: String,
    /// The piece that matched.
    pub text: String,
    /// Where the dashboard shows it.
    pub link: String,
    pub printer: Option<String>,
    pub material: Option<String>,
    pub at: i64,
    /// Cosine similarity to the question.
    pub score: f32,
}

impl From<Found> for Hit {
    fn from(found: Found) -> Hit {
        let Payload { key, kind, title, text, link, printer, material, at, .. } = found.payload;
        Hit {
            kind: kind.as_str().to_owned(),
            key,
            title,
            text,
            link,
            printer,
            material,
            at,
            score: found.score,
        }
    }
}

/// Why the memory failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("the embedding model failed: {0}")]
    Embed(String),
}

fn now_ms() -> i64 {
    proto::UnixMillis::now().0
}

impl Memory {
    /// The memory over `store`, its vectors made by `embedder`.
    pub fn new(db: Db, embedder: Embedder, store: Store) -> Memory {
        Memory {
            inner: Arc::new(Inner {
                db,
                embedder,
                store,
                ledger: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                last: std::sync::Mutex::new(None),
                counts: std::sync::Mutex::new(HashMap::new()),
                wake: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Moves whenever what the memory holds changes.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The last sync's report.
    pub fn last_sync(&self) -> Option<SyncReport> {
        self.inner.last.lock().ok().and_then(|last| last.clone())
    }

    /// Asks the background task to sync soon (something it remembers changed).
    pub fn changed(&self) {
        self.inner.wake.notify_one();
    }

    /// Syncs at once, then whenever told or every [`SYNC_EVERY`], until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.sync().await {
                tracing::warn!(%error, "The memory's sync failed; it tries again.");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
    }

    /// Makes the next sync embed every item again (each counts as updated).
    pub async fn forget_hashes(&self) {
        let mut ledger = self.inner.ledger.lock().await;
        if ledger.is_none() {
            match self.inner.store.ledger().await {
                Ok(held) => *ledger = Some(held.into_iter().collect()),
                Err(error) => tracing::warn!(%error, "Cannot read what the memory holds."),
            }
        }
        for hash in ledger.iter_mut().flat_map(|l| l.values_mut()) {
            hash.clear();
        }
    }

    /// Everything the memory should hold now, from the database.
    async fn items(&self) -> Result<Vec<Item>, MemoryError> {
        let db = &self.inner.db;
        let mut items = Vec::new();
        for row in db.outcomes(None, i64::MIN, i64::MAX).await? {
            items.push(sources::outcome(&row));
        }
        for row in db.documents().await? {
            items.push(sources::document(&row));
        }
        for (row, said) in db.conversations_said().await? {
            if said.iter().any(|(speaker, _)| speaker == "assistant") {
                items.push(sources::conversation(&row, &said));
            }
        }
        let since = now_ms() - EVENTS_DAYS * sources::DAY_MS;
        let events = db.events_of_kinds(sources::NOTABLE_EVENTS, since).await?;
        let mut days: HashMap<(String, i64), Vec<sources::Event>> = HashMap::new();
        for (printer, at, kind, body) in events {
            let day = at - at.rem_euclid(sources::DAY_MS);
            days.entry((printer, day)).or_default().push((at, kind, body));
        }
        for ((printer, day), events) in days {
            items.push(sources::events_day(&printer, day, &events));
        }
        Ok(items)
    }

    /// Brings the store up to date with the database: embeds and stores what is new or
    /// changed, removes what is gone.
    pub async fn sync(&self) -> Result<SyncReport, MemoryError> {
        let started = Instant::now();
        let mut ledger = self.inner.ledger.lock().await;
        if ledger.is_none() {
            *ledger = Some(self.inner.store.ledger().await?.into_iter().collect());
        }
        let held = ledger.get_or_insert_with(HashMap::new);
        let items = self.items().await?;
        let mut report = SyncReport::default();
        let present: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
        let gone: Vec<String> =
            held.keys().filter(|k| !present.contains(k.as_str())).cloned().collect();
        let mut changed = Vec::new();
        for item in &items {
            let hash = item.hash();
            match held.get(&item.key) {
                Some(old) if *old == hash => report.unchanged += 1,
                Some(_) => {
                    report.updated += 1;
                    changed.push((item, hash));
                }
                None => {
                    report.added += 1;
                    changed.push((item, hash));
                }
            }
        }
        report.removed = gone.len();
        let result = self.apply(held, gone, changed, &mut report).await;
        let mut counts: HashMap<Kind, usize> = Kind::ALL.into_iter().map(|k| (k, 0)).collect();
        for key in held.keys() {
            if let Some(kind) = key.split(':').next().and_then(Kind::parse) {
                *counts.entry(kind).or_default() += 1;
            }
        }
        if let Ok(mut shown) = self.inner.counts.lock() {
            *shown = counts;
        }
        report.took_ms = started.elapsed().as_millis() as u64;
        report.at = now_ms();
        if let Err(error) = &result {
            report.error = Some(error.to_string());
        }
        if report.added + report.updated + report.removed > 0 {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(
                added = report.added,
                updated = report.updated,
                removed = report.removed,
                pieces = report.pieces,
                took_ms = report.took_ms,
                "The memory synced."
            );
        }
        if let Ok(mut last) = self.inner.last.lock() {
            *last = Some(report.clone());
        }
        result.map(|()| report)
    }

    async fn apply(
        &self,
        held: &mut HashMap<String, String>,
        gone: Vec<String>,
        changed: Vec<(&Item, String)>,
        report: &mut SyncReport,
    ) -> Result<(), MemoryError> {
        let store = &self.inner.store;
        store.remove(gone.clone()).await?;
        for key in &gone {
            held.remove(key);
        }
        // Item by item (a few at a time): a sync cut short keeps what it finished.
        for group in changed.chunks(16) {
            let keys: Vec<String> = group.iter().map(|(item, _)| item.key.clone()).collect();
            store.remove(keys).await?;
            let mut payloads = Vec::new();
            for (item, hash) in group {
                for (n, text) in sources::chunks(item).into_iter().enumerate() {
                    payloads.push(Payload {
                        key: item.key.clone(),
                        kind: item.kind,
                        chunk: n as u32,
                        title: item.title.clone(),
                        text,
                        printer: item.printer.clone(),
                        material: item.material.clone(),
                        at: item.at,
                        link: item.link.clone(),
                        owner: item.owner.clone(),
                        hash: hash.clone(),
                    });
                }
            }
            let mut points = Vec::with_capacity(payloads.len());
            for batch in payloads.chunks(BATCH) {
                let texts = batch.iter().map(|p| p.text.clone()).collect();
                let vectors = self.inner.embedder.embed(texts).await.map_err(MemoryError::Embed)?;
                for (vector, payload) in vectors.into_iter().zip(batch) {
                    points.push(Point { vector, payload: payload.clone() });
                }
            }
            report.pieces += points.len();
            store.upsert(points).await?;
            for (item, hash) in group {
                held.insert(item.key.clone(), hash.clone());
            }
        }
        if report.added + report.updated > 0 {
            store.optimize().await?;
        }
        Ok(())
    }

    /// The `limit` items closest in meaning to `question` that pass `filter`, closest first.
    pub async fn search(
        &self,
        question: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Hit>, MemoryError> {
        let mut vectors = self
            .inner
            .embedder
            .embed(vec![question.to_owned()])
            .await
            .map_err(MemoryError::Embed)?;
        let vector = vectors.pop().ok_or_else(|| MemoryError::Embed("no vector".into()))?;
        // More pieces than items wanted: several may be of one item.
        let found = self.inner.store.search(vector, filter, limit * 4).await?;
        let mut seen = HashSet::new();
        Ok(found
            .into_iter()
            .filter(|f| seen.insert(f.payload.key.clone()))
            .take(limit)
            .map(Hit::from)
            .collect())
    }

    /// How many items of each kind the memory held after its last sync (none before the
    /// first), and pieces stored now.
    pub async fn counts(&self) -> Result<(HashMap<Kind, usize>, usize), MemoryError> {
        let mut counts: HashMap<Kind, usize> = Kind::ALL.into_iter().map(|k| (k, 0)).collect();
        if let Ok(shown) = self.inner.counts.lock() {
            counts.extend(shown.iter().map(|(k, n)| (*k, *n)));
        }
        Ok((counts, self.inner.store.count().await?))
    }
}
