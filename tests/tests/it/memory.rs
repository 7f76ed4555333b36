//! The assistant's memory through the API, with the real embedding model (all-MiniLM-L6-v2)
//! and Qdrant's embedded engine: documents an admin adds are found by meaning, replaced,
//! deleted and refused when hostile; the memory outlives a restart; a question about the
//! farm's past is answered from its reviewed outcomes with the records cited and linked;
//! conversations are found only by their person.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use super::api::Api;
use super::assistant::{Wire, conversation, embed_model, events, say, tier, with_tiers};
use tests::upstream::{Reply, StandIn};

fn with_memory(config: &mut hub::config::HubConfig) {
    config.assistant.embed_model = Some(embed_model());
}

/// Uploads `bytes` as a document; answers status and body.
async fn upload(
    api: &Api,
    token: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let (status, _, body) = api.call(request.body(Body::from(bytes)).unwrap()).await;
    (status, body)
}

async fn search(api: &Api, token: &str, body: Value) -> Vec<Value> {
    let (status, found) = api.post(token, "/api/v1/memory/search", body).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["hits"].as_array().unwrap().clone()
}

fn keys(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["key"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn documents_are_found_by_meaning_replaced_deleted_kept_across_a_restart_and_hostile_ones_refused()
 {
    let api = Api::start_with(None, with_memory).await;
    let admin = api.user("ada", "admin").await;
    let viewer = api.user("vic", "viewer").await;

    let sheet = "# PETG\n\nDry PETG at 65 °C for 4 hours before printing: wet PETG strings.\n\n\
                 Print it on textured PEI; use glue stick on smooth PEI.";
    let (status, added) = upload(
        &api,
        &admin,
        "POST",
        "/api/v1/memory/documents?title=PETG%20data%20sheet&material=petg",
        Some("text/markdown"),
        sheet.into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["document"]["format"], "markdown");
    assert_eq!(added["document"]["material"], "PETG");
    assert_eq!(added["sync"]["added"], 1, "{added}");
    let sheet_id = added["document"]["id"].as_str().unwrap().to_owned();
    let guide = hub::memory::documents::minimal_pdf(&[
        "Abrasive filaments such as PLA-CF wear a stainless nozzle quickly.",
        "Fit the hardened steel nozzle before printing them.",
    ]);
    let (status, added) = upload(
        &api,
        &admin,
        "POST",
        "/api/v1/memory/documents?title=nozzle%20guide.pdf",
        None,
        guide,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["document"]["format"], "pdf", "from the name");
    let guide_id = added["document"]["id"].as_str().unwrap().to_owned();

    // Found by meaning, by anyone; linked into the dashboard.
    let hits = search(&api, &viewer, json!({"query": "how long do I dry PETG?"})).await;
    assert_eq!(hits[0]["key"], format!("document:{sheet_id}"), "{hits:#?}");
    assert_eq!(hits[0]["link"], format!("/memory?document={sheet_id}"));
    assert_eq!(hits[0]["kind"], "document");
    let hits = search(&api, &viewer, json!({"query": "which nozzle for carbon fibre?"})).await;
    assert_eq!(hits[0]["key"], format!("document:{guide_id}"), "{hits:#?}");
    assert!(hits[0]["text"].as_str().unwrap().contains("hardened steel"), "{hits:#?}");
    // Filters: another material's question leaves out the PETG sheet, not the guide (which
    // names no material); a kind leaves out the rest.
    let hits = search(&api, &viewer, json!({"query": "drying", "material": "PLA"})).await;
    assert_eq!(keys(&hits), [format!("document:{guide_id}")]);
    let hits = search(&api, &viewer, json!({"query": "drying", "kinds": ["outcome"]})).await;
    assert!(hits.is_empty(), "{hits:#?}");
    let (status, refused) = api
        .post(&viewer, "/api/v1/memory/search", json!({"query": "x", "kinds": ["spools"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (_, listed) = api.get(&viewer, "/api/v1/memory/documents").await;
    assert_eq!(listed["documents"].as_array().unwrap().len(), 2, "{listed}");
    assert!(listed["documents"][0].get("content").is_none(), "listed without their text");
    let (_, one) = api.get(&viewer, &format!("/api/v1/memory/documents/{sheet_id}")).await;
    assert!(one["content"].as_str().unwrap().contains("65 °C"), "{one}");

    // Only an admin changes the memory.
    let (status, _) = upload(
        &api,
        &viewer,
        "POST",
        "/api/v1/memory/documents?title=x.md",
        Some("text/markdown"),
        "x".into(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.delete(&viewer, &format!("/api/v1/memory/documents/{sheet_id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Hostile or broken uploads are refused with a reason, and nothing is stored.
    let refusals: Vec<(&str, Option<&str>, Vec<u8>, StatusCode)> = vec![
        (
            "bad.pdf",
            Some("application/pdf"),
            b"%PDF-1.7\n\x00\xff garbage".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "photo.png",
            Some("image/png"),
            b"\x89PNG\r\n".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("empty.md", Some("text/markdown"), Vec::new(), StatusCode::UNPROCESSABLE_ENTITY),
        ("latin1.txt", Some("text/plain"), b"caf\xe9".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "huge.txt",
            Some("text/plain"),
            vec![b'a'; 21 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (title, content_type, bytes, expected) in refusals {
        let path = format!("/api/v1/memory/documents?title={title}");
        let (status, body) = upload(&api, &admin, "POST", &path, content_type, bytes).await;
        assert_eq!(status, expected, "{title}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap_or_default().is_empty(), "{body}");
    }
    let (status, body) = upload(
        &api,
        &admin,
        "POST",
        "/api/v1/memory/documents?title=x.md&printer=no-such-printer",
        None,
        "x".into(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) =
        upload(&api, &admin, "POST", "/api/v1/memory/documents?title=&x=1", None, "x".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown parameter: {body}");
    let (_, listed) = api.get(&viewer, "/api/v1/memory/documents").await;
    assert_eq!(listed["documents"].as_array().unwrap().len(), 2, "{listed}");

    // Replaced: indexed again; the old text is no longer what is found.
    let (status, replaced) = upload(
        &api,
        &admin,
        "PUT",
        &format!(
            "/api/v1/memory/documents/{sheet_id}?title=PETG%20data%20sheet%20v2&material=PETG"
        ),
        Some("text/plain"),
        "PETG: print the first layer slowly, at 20 mm/s, with the bed at 80 °C.".into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["sync"]["updated"], 1, "{replaced}");
    let hits =
        search(&api, &viewer, json!({"query": "first layer speed for PETG", "limit": 1})).await;
    assert_eq!(hits[0]["key"], format!("document:{sheet_id}"));
    assert!(hits[0]["text"].as_str().unwrap().contains("20 mm/s"), "{hits:#?}");
    assert!(!hits[0]["text"].as_str().unwrap().contains("65 °C"), "{hits:#?}");
    assert_eq!(hits[0]["title"], "Document \"PETG data sheet v2\"");

    // Deleted: gone from the memory at once.
    let (status, report) =
        api.delete(&admin, &format!("/api/v1/memory/documents/{sheet_id}")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["removed"], 1, "{report}");
    let hits = search(&api, &viewer, json!({"query": "first layer speed for PETG"})).await;
    assert!(!keys(&hits).contains(&format!("document:{sheet_id}").as_str()), "{hits:#?}");
    let (status, _) = api.get(&viewer, &format!("/api/v1/memory/documents/{sheet_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, overview) = api.get(&viewer, "/api/v1/memory").await;
    assert_eq!(overview["engine"], "embedded", "{overview}");
    assert_eq!(overview["items"]["document"], 1, "{overview}");
    assert!(overview["pieces"].as_u64().unwrap() >= 1, "{overview}");

    // Restarted, the hub finds what it remembered without embedding it again.
    let api = api.restart(with_memory).await;
    let (status, report) = api.post(&admin, "/api/v1/memory/reindex", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["updated"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(report["unchanged"], 1, "{report}");
    let hits = search(&api, &viewer, json!({"query": "which nozzle for carbon fibre?"})).await;
    assert_eq!(hits[0]["key"], format!("document:{guide_id}"), "{hits:#?}");
    // A full re-index embeds everything again.
    let (_, report) = api.post(&admin, "/api/v1/memory/reindex", json!({"full": true})).await;
    assert_eq!(report["updated"], 1, "{report}");
    let (status, metrics) = {
        let request = Request::get("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {viewer}"))
            .body(Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(hub::api::router(api.hub.state.clone()), request)
            .await
            .unwrap();
        let status = response.status();
        let bytes =
            http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("kitt_memory_points 1"), "the guide's one piece:\n{metrics}");
    api.stop().await;
}

#[tokio::test]
async fn a_question_about_the_past_is_answered_from_reviewed_outcomes_with_their_records_cited() {
    let model = StandIn::start().await;
    let api = Api::start_with(None, |config| {
        with_tiers(vec![tier("farm-gpu", Wire::OpenAi, &model, false, 10)])(config);
        with_memory(config);
    })
    .await;
    let otto = api.user("otto", "operator").await;
    let ada = api.user("ada", "admin").await;
    let now = proto::UnixMillis::now().0;
    let seeded = hub::demo::history::seed(&api.hub.state.db, now).await.unwrap();
    assert_eq!(seeded, 20);
    let (status, report) = api.post(&ada, "/api/v1/memory/reindex", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (_, overview) = api.get(&otto, "/api/v1/memory").await;
    assert_eq!(overview["items"]["outcome"], 20, "{overview}");
    assert_eq!(overview["items"]["document"], 2, "{overview}");

    model.then(Reply::Text("The first layer lifted on smooth PEI [1].".into()));
    let c = conversation(&api, &otto).await;
    let turn = say(&api, &otto, &c, "Why did PETG prints fail last week?").await;
    // kitt looked before the model answered: the memory, then the analytics.
    let calls = events(&turn, "tool_call");
    assert_eq!(calls[0]["name"], "search_memory", "{turn:#}");
    assert_eq!(calls[1]["name"], "analytics", "{turn:#}");
    let sources = events(&turn, "sources");
    assert_eq!(sources.len(), 1, "{turn:#}");
    let citations = sources[0]["citations"].as_array().unwrap();
    assert!(!citations.is_empty() && citations.len() <= 5, "{citations:#?}");
    let week_ago = now - 7 * 86_400_000;
    for citation in citations {
        assert!(
            citation["material"].is_null() || citation["material"] == "PETG",
            "only PETG or general records: {citation:#}"
        );
        if citation["kind"] == "outcome" {
            assert!(citation["at"].as_i64().unwrap() >= week_ago, "last week only: {citation:#}");
            let id = citation["key"].as_str().unwrap().trim_start_matches("outcome:");
            assert_eq!(citation["link"], format!("/outcomes?id={id}"));
        }
    }
    let adhesion: Vec<&Value> = citations
        .iter()
        .filter(|c| {
            c["kind"] == "outcome" && c["text"].as_str().unwrap().contains("first_layer_adhesion")
        })
        .collect();
    assert!(!adhesion.is_empty(), "the reviewed adhesion failures are cited: {citations:#?}");
    // The model was given the records, numbered as cited.
    let asked = model.requests()[0].to_string();
    assert!(asked.contains("[1]") && asked.contains("glue stick"), "{asked}");
    // The answer carries its sources, streamed and stored.
    let text = turn["text"].as_str().unwrap();
    assert!(text.starts_with("The first layer lifted on smooth PEI [1]."), "{text}");
    assert!(text.contains("\n\nSources:\n[1] "), "{text}");
    assert!(text.contains(citations[0]["link"].as_str().unwrap()), "{text}");
    let (_, stored) = api.get(&otto, &format!("/api/v1/assistant/conversations/{c}")).await;
    let last = stored["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(last["content"].as_str().unwrap().contains("Sources:"), "{stored:#}");

    // A question about now is not looked up.
    model.then(Reply::Text("All idle.".into()));
    let now_turn =
        say(&api, &otto, &conversation(&api, &otto).await, "What is printing now?").await;
    assert!(events(&now_turn, "sources").is_empty(), "{now_turn:#}");
    assert!(events(&now_turn, "tool_call").is_empty(), "{now_turn:#}");

    // Otto's conversation is remembered for Otto alone.
    api.post(&ada, "/api/v1/memory/reindex", json!({})).await;
    let mine = search(
        &api,
        &otto,
        json!({"query": "why did PETG fail", "kinds": ["conversation"], "limit": 1}),
    )
    .await;
    assert_eq!(keys(&mine), [format!("conversation:{c}")], "{mine:#?}");
    assert_eq!(mine[0]["link"], format!("/assistant?c={c}"));
    let theirs =
        search(&api, &ada, json!({"query": "why did PETG fail", "kinds": ["conversation"]})).await;
    assert!(theirs.is_empty(), "{theirs:#?}");

    // The OpenAI-compatible door answers from the memory too, its sources in `kitt.sources`.
    model.then(Reply::Text("Adhesion.".into()));
    let ask = json!({"model": "kitt", "messages": [{"role": "user", "content": "Why did PETG prints fail last week?"}]});
    let request = Request::post("/openai/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {otto}"))
        .body(Body::from(ask.to_string()))
        .unwrap();
    let (status, _, body) = api.call(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body["kitt"]["sources"].as_array().unwrap().is_empty(), "{body:#}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("Adhesion.\n\nSources:\n[1] "), "{content}");
    api.stop().await;
}
