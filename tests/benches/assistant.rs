//! Assistant benchmarks. The assistant's own overhead (routing, tool dispatch, persistence,
//! streaming) with a stand-in upstream that answers at once: a stored first turn: a tool call
//! and its answer, through the service as the API calls it (target p99 ≤ 3 ms); the stand-in's
//! own time is measured alone and taken off. And the real small model on this CPU
//! (SmolLM2-135M Q4_1 through llama.cpp): time to the first token and tokens per second.
//!
//! For issue 20: a semantic-cache lookup among 100,000 entries (target p99 ≤ 1 ms) and the
//! embedding model's sentences per second.
//!
//! Reproduce with `cargo xtask bench`, or `cargo bench -p tests --bench assistant` (the model
//! from `KITT_CHAT_MODEL`, which `cargo xtask bench` sets).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use hub::assistant::llm::{ChatRequest, Chunk, Message, Speaker};
use hub::assistant::local::LocalModel;
use hub::assistant::router::Depth;
use hub::assistant::upstream::{Api, Upstream};
use hub::config::{HubConfig, Overrides, TierConfig};
use hub::service::{Principal, Role, Via};
use serde_json::json;
use tests::upstream::{Reply, StandIn};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn overhead() {
    let model = StandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().to_owned()),
        database_url: None,
        http_listen: Some("127.0.0.1:0".into()),
        sync_listen: Some("127.0.0.1:0".into()),
    };
    let mut config = HubConfig::load(None, Vec::new(), &overrides).unwrap();
    config.assistant.tiers = vec![TierConfig {
        name: "stand-in".into(),
        api: Api::OpenAi,
        url: model.base_url(),
        model: "instant".into(),
        api_key_env: None,
        paid: false,
        price_in: 0.0,
        price_out: 0.0,
        context_tokens: 100_000,
        tools: true,
        images: false,
        timeout: Duration::from_secs(10),
    }];
    let shutdown = CancellationToken::new();
    let hub = hub::app::start(config, shutdown.clone()).await.unwrap();
    let assistant = hub.state.assistant.clone();
    let person = Principal::user("bench", Role::Operator, Via::Session);

    // The stand-in alone: the same two requests (a tool call, then an answer) straight to it.
    let upstream = Upstream {
        name: "stand-in".into(),
        api: Api::OpenAi,
        base_url: model.base_url(),
        model: "instant".into(),
        api_key: None,
        timeout: Duration::from_secs(10),
    };
    let request = ChatRequest {
        messages: vec![Message::new(Speaker::User, "How is the farm?")],
        tools: Vec::new(),
        max_tokens: 100,
    };
    let mut alone = Vec::new();
    let mut turns = Vec::new();
    for round in 0..600 {
        model
            .then(Reply::Call { name: "fleet_status".into(), arguments: json!({}) })
            .then(Reply::Text("All printers are idle.".into()));
        let started = Instant::now();
        for _ in 0..2 {
            let mut stream = upstream.stream(request.clone());
            while let Some(chunk) = stream.recv().await {
                if matches!(chunk.unwrap(), Chunk::Done { .. }) {
                    break;
                }
            }
        }
        let upstream_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        // A conversation of its own (made outside the timing): a question, a tool call, its
        // result and the answer, as a first question goes.
        let conversation = assistant.create_conversation(&person, Some("bench")).await.unwrap();
        let started = Instant::now();
        assistant
            .ask(&person, &conversation.id, "How is the farm?", Depth::Normal, &tx)
            .await
            .unwrap();
        let turn_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(tx);
        drain.await.unwrap();
        if round >= 100 {
            alone.push(upstream_ms);
            turns.push(turn_ms);
        }
    }
    let mut overhead: Vec<f64> = turns.iter().zip(&alone).map(|(t, a)| (t - a).max(0.0)).collect();
    overhead.sort_by(f64::total_cmp);
    alone.sort_by(f64::total_cmp);
    turns.sort_by(f64::total_cmp);
    println!(
        "assistant turn (tool call + answer, stored): p50 {:.2} ms, p99 {:.2} ms; the stand-in \
         alone p50 {:.2} ms; overhead p50 {:.2} ms, p99 {:.2} ms",
        percentile(&turns, 0.5),
        percentile(&turns, 0.99),
        percentile(&alone, 0.5),
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99),
    );
    tests::metric("assistant_overhead_p99_ms", percentile(&overhead, 0.99));
    tests::metric("assistant_overhead_p50_ms", percentile(&overhead, 0.5));
    shutdown.cancel();
    hub.wait().await;
}

async fn small_model() {
    let Some(path) = std::env::var_os("KITT_CHAT_MODEL") else {
        println!("KITT_CHAT_MODEL is not set: the small model's figures are skipped");
        return;
    };
    let model = tokio::task::spawn_blocking(move || {
        LocalModel::load("smollm2", std::path::Path::new(&path))
    })
    .await
    .unwrap()
    .unwrap();
    let mut first = Vec::new();
    let mut rates = Vec::new();
    for n in 0..6 {
        let request = ChatRequest {
            messages: vec![
                Message::new(Speaker::System, "You are the assistant of a 3D-printing farm."),
                Message::new(Speaker::User, format!("Give {n} tips for printing PETG well.")),
            ],
            tools: Vec::new(),
            max_tokens: 128,
        };
        let started = Instant::now();
        let mut stream = model.stream(request);
        let mut first_at = None;
        let mut tokens = 0;
        while let Some(chunk) = stream.recv().await {
            match chunk.unwrap() {
                Chunk::Text(_) => {
                    first_at.get_or_insert_with(|| started.elapsed());
                }
                Chunk::Done { usage, .. } => tokens = usage.completion_tokens,
                Chunk::Call(_) => {}
            }
        }
        let total = started.elapsed();
        let first_at = first_at.unwrap_or(total);
        if n > 0 {
            first.push(first_at.as_secs_f64() * 1000.0);
            rates.push(f64::from(tokens.saturating_sub(1)) / (total - first_at).as_secs_f64());
        }
    }
    first.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    println!(
        "SmolLM2-135M Q4_1 on this CPU: time to first token p50 {:.0} ms; {:.0} tokens/s",
        percentile(&first, 0.5),
        percentile(&rates, 0.5)
    );
    tests::metric("assistant_local_ttft_ms", percentile(&first, 0.5));
    tests::metric("assistant_local_tokens_per_s", percentile(&rates, 0.5));
}

/// Issue 20: a cache lookup among 100,000 entries (the facets and scope of 2,000 distinct
/// questions, 50 answers each), and embedding throughput with the real model.
async fn memory() {
    use hub::assistant::cache::{Scope, SemanticCache, THRESHOLD};
    use hub::assistant::facets::Facets;
    let vocabulary: Vec<String> =
        ["X1C", "P1S", "A1", "PLA", "PETG", "ABS"].iter().map(|s| (*s).to_owned()).collect();
    let printers = ["X1C", "P1S", "A1"];
    let materials = ["PLA", "PETG", "ABS"];
    let scope =
        Scope { role: "operator".into(), tools: "all".into(), tier: "local".into(), facts: 1 };
    let mut cache = SemanticCache::new(THRESHOLD, i64::MAX / 2);
    let mut seed = 7_u64;
    let mut random_unit = || {
        let v: Vec<f32> = (0..384)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let question = |q: usize| {
        format!(
            "how much {} did the {} use printing at {} °C for {} hours",
            materials[q % 3],
            printers[(q / 3) % 3],
            180 + q % 60,
            q / 180
        )
    };
    for q in 0..2_000 {
        let text = question(q);
        let facets = Facets::of(&text, &vocabulary);
        for _ in 0..50 {
            cache.insert(&scope, &facets, &text, random_unit(), "answer", 0);
        }
    }
    assert_eq!(cache.len(), 100_000);
    let mut times = Vec::new();
    for q in 0..5_000 {
        let text = question(q % 2_000);
        let vector = random_unit();
        let started = Instant::now();
        let facets = Facets::of(&text, &vocabulary);
        let _ = std::hint::black_box(cache.lookup(&scope, &facets, &vector, 1));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "cache lookup among 100,000 entries (facets included): p50 {:.3} ms, p99 {:.3} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    tests::metric("cache_lookup_p99_ms", percentile(&times, 0.99));

    let Some(path) = std::env::var_os("KITT_EMBED_MODEL") else {
        println!("KITT_EMBED_MODEL is not set: embedding throughput is skipped");
        return;
    };
    let embedder = tokio::task::spawn_blocking(move || {
        hub::assistant::embed::Embedder::load(std::path::Path::new(&path))
    })
    .await
    .unwrap()
    .unwrap();
    let sentences: Vec<String> = (0..512).map(question).collect();
    embedder.embed(sentences[..16].to_vec()).await.unwrap();
    let started = Instant::now();
    embedder.embed(sentences.clone()).await.unwrap();
    let rate = sentences.len() as f64 / started.elapsed().as_secs_f64();
    println!("all-MiniLM-L6-v2 on this CPU: {rate:.0} sentences/s (batched)");
    tests::metric("embed_sentences_per_s", rate);

    // The adversarial set: the paraphrases' hit rate, and the near-misses served (none).
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/cache-adversarial.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let hub::assistant::facets::Adversarial { vocabulary, hits, misses } =
        hub::assistant::facets::parse_adversarial(&text).unwrap();
    let replay = hub::assistant::cache::replay;
    let served = replay(&embedder, &vocabulary, &hits).await.unwrap();
    let hit_rate = served.iter().filter(|h| **h).count() as f64 / served.len() as f64;
    let leaked =
        replay(&embedder, &vocabulary, &misses).await.unwrap().iter().filter(|h| **h).count();
    println!(
        "semantic cache on eval/cache-adversarial.json: {:.0}% of {} paraphrases hit, {leaked} of {} near-misses served",
        hit_rate * 100.0,
        hits.len(),
        misses.len()
    );
    tests::metric("cache_paraphrase_hit_rate_percent", hit_rate * 100.0);
    tests::metric("cache_near_miss_hits", leaked as f64);

    search(&embedder).await;
}

/// Issue 20: a memory search among 100,000 pieces in the embedded engine (Qdrant's, built
/// index), with the filters a question brings (a person's privacy always; printer, material
/// and period often), the query's embedding excluded; and one query's embedding alone.
async fn search(embedder: &hub::assistant::embed::Embedder) {
    use hub::memory::sources::Kind;
    use hub::memory::store::{Filter, Payload, Point, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(&dir.path().join("memory"), 384).unwrap();
    let mut seed = 11_u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let printers = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let materials = ["PLA", "PETG", "ABS", "PLA-CF"];
    let kinds = [Kind::Outcome, Kind::Outcome, Kind::Events, Kind::Document, Kind::Conversation];
    let day = 86_400_000_i64;
    let started = Instant::now();
    let mut batch = Vec::new();
    for n in 0..100_000_u64 {
        let v: Vec<f32> = (0..384).map(|_| (next() as f32 / (1u64 << 31) as f32) - 0.5).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let kind = kinds[(next() % 5) as usize];
        batch.push(Point {
            vector: v.into_iter().map(|x| x / norm).collect(),
            payload: Payload {
                key: format!("{}:{n}", kind.as_str()),
                kind,
                chunk: 0,
                title: format!("record {n}"),
                text: "a reviewed print that failed at the first layer".into(),
                printer: Some(printers[(next() % 6) as usize].into()),
                material: Some(materials[(next() % 4) as usize].into()),
                at: (next() % 365) as i64 * day,
                link: format!("/outcomes?id={n}"),
                owner: (kind == Kind::Conversation).then(|| format!("user{}", next() % 10)),
                hash: String::new(),
            },
        });
        if batch.len() == 2_000 {
            store.upsert(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    store.optimize().await.unwrap();
    println!(
        "memory: 100,000 pieces stored and indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(store.count().await.unwrap(), 100_000);
    let mut times = Vec::new();
    for q in 0..500_u64 {
        let v: Vec<f32> = (0..384).map(|_| (next() as f32 / (1u64 << 31) as f32) - 0.5).collect();
        let filter = Filter {
            viewer: Some("user3".into()),
            printer: (q % 2 == 0).then(|| printers[(q % 6) as usize].into()),
            material: (q % 3 == 0).then(|| materials[(q % 4) as usize].into()),
            since: (q % 4 == 0).then_some(300 * day),
            until: None,
            kinds: Vec::new(),
        };
        let started = Instant::now();
        let found = store.search(v, &filter, 20).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(found);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "memory search among 100,000 pieces (filters, embedding excluded): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    tests::metric("memory_search_p99_ms", percentile(&times, 0.99));
    let mut times = Vec::new();
    for q in 0..50 {
        let started = Instant::now();
        embedder
            .embed(vec![format!("why did PETG prints on printer {q} fail last week?")])
            .await
            .unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    tests::metric("memory_query_embed_p50_ms", percentile(&times, 0.5));
}

fn main() {
    tests::init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(overhead());
    runtime.block_on(small_model());
    runtime.block_on(memory());
}
