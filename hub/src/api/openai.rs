//! The farm's assistant behind OpenAI's chat completions API, so that existing chat
//! clients and SDKs can use it with `base_url = http://hub:8080/openai/v1` and a kitt API
//! token as the key. Models: `kitt` (a normal answer), `kitt-quick`, `kitt-deep`. The
//! assistant's tools run in the hub as the token's user; the client's own `tools` are not
//! offered to it (they would run on the client, outside the farm's rights). An action it
//! proposes comes back as a pending action with the link to confirm it (in the text, and in
//! the `kitt` field), never as something done. Errors take OpenAI's shape.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use crate::assistant::PendingView;
use crate::assistant::llm::{Message, Speaker};
use crate::assistant::router::Depth;
use crate::assistant::service::Event;
use crate::service::Principal;

const MODELS: &[(&str, Depth)] =
    &[("kitt", Depth::Normal), ("kitt-quick", Depth::Quick), ("kitt-deep", Depth::Deep)];

/// An error as OpenAI's clients read it.
fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: impl Into<String>,
) -> Response {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

fn now_s() -> i64 {
    proto::UnixMillis::now().0 / 1000
}

/// `GET /openai/v1/models`.
pub async fn models(Extension(_principal): Extension<Principal>) -> Response {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, _)| json!({"id": id, "object": "model", "created": 0, "owned_by": "kitt"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The text of a message's `content`: a string, or an array of parts of which the text
/// parts are read (images are refused: no tier here is given them through this door).
fn content(value: &Value) -> Result<String, String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match part["type"].as_str() {
                    Some("text") => text.push_str(part["text"].as_str().unwrap_or("")),
                    Some(other) => {
                        return Err(format!("content parts of type {other:?} are not supported"));
                    }
                    None => return Err("a content part has no type".into()),
                }
            }
            Ok(text)
        }
        _ => Err("content must be a string or an array of parts".into()),
    }
}

fn pending_note(pending: &[PendingView], base: &str) -> String {
    pending
        .iter()
        .map(|p| {
            format!(
                "\n\nProposed, not done: {}. A person with the {} role confirms or rejects it at \
                 {base}/assistant?pending={}",
                p.summary,
                p.needed_role.as_str(),
                p.id
            )
        })
        .collect()
}

/// `POST /openai/v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "the body must be a JSON object",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let model = request["model"].as_str().unwrap_or("");
    let Some((model, depth)) = MODELS.iter().find(|(id, _)| *id == model).copied() else {
        let known: Vec<&str> = MODELS.iter().map(|(id, _)| *id).collect();
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model `{model}` does not exist; use one of {}", known.join(", ")),
        );
    };
    if request["n"].as_u64().is_some_and(|n| n != 1) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "only n = 1 is supported",
        );
    }
    let Some(raw) = request["messages"].as_array().filter(|m| !m.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "messages must be a non-empty array",
        );
    };
    let mut history = Vec::new();
    for (n, m) in raw.iter().enumerate() {
        let Some(speaker) = m["role"].as_str().and_then(Speaker::parse) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                format!("messages[{n}].role is not system, developer, user, assistant or tool"),
            );
        };
        match content(&m["content"]) {
            Ok(text) => history.push(Message::new(speaker, text)),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    format!("messages[{n}].content: {e}"),
                );
            }
        }
    }
    if history.last().is_none_or(|m| m.speaker != Speaker::User) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "the last message must be the user's",
        );
    }
    if let Err(e) = state.assistant.check_ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("unavailable"),
            e.to_string(),
        );
    }
    let stream = request["stream"].as_bool().unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:8080");
    let base = format!("http://{host}");
    let id = format!("chatcmpl-{:016x}", rand::random::<u64>());
    let created = now_s();
    let (tx, rx) = mpsc::channel::<Event>(256);
    let assistant = state.assistant.clone();
    let turn = tokio::spawn(async move {
        let result = assistant.complete(&principal, history, depth, &tx).await;
        if let Err(error) = &result {
            let _ = tx.send(Event::Error { message: error.to_string() }).await;
        }
        result
    });
    if stream {
        let chunk_id = id.clone();
        let chunk = move |delta: Value, finish: Value| {
            json!({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            .to_string()
        };
        let mut pending = Vec::new();
        let mut sources = Vec::new();
        let mut started = false;
        let format = move |event: &Event| -> Option<String> {
            let mut out = Vec::new();
            if !started {
                started = true;
                out.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            match event {
                Event::Text { text } => out.push(chunk(json!({"content": text}), Value::Null)),
                Event::Pending { pending: p } => pending.push((**p).clone()),
                Event::Sources { citations } => sources.extend(citations.iter().cloned()),
                Event::Done { usage, cache, .. } => {
                    let note = pending_note(&pending, &base);
                    if !note.is_empty() {
                        out.push(chunk(json!({"content": note}), Value::Null));
                    }
                    let mut last: Value =
                        serde_json::from_str(&chunk(json!({}), "stop".into())).unwrap_or_default();
                    if let Some(cache) = cache {
                        last["kitt"]["cache"] = json!(cache);
                    }
                    if !sources.is_empty() {
                        last["kitt"]["sources"] = json!(sources);
                    }
                    out.push(last.to_string());
                    if include_usage {
                        out.push(
                            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                                "model": model, "choices": [], "usage": {
                                    "prompt_tokens": usage.prompt_tokens,
                                    "completion_tokens": usage.completion_tokens,
                                    "total_tokens": usage.prompt_tokens + usage.completion_tokens}})
                            .to_string(),
                        );
                    }
                }
                Event::Error { message } => out.push(
                    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
                        .to_string(),
                ),
                _ => {}
            }
            (!out.is_empty()).then(|| out.join("\n\ndata: "))
        };
        return super::assistant::sse_with(rx, format, Some("[DONE]".into()));
    }
    let _events = super::assistant::collect(rx).await;
    let result = match turn.await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            let status = super::error::ApiError::from(e);
            return error(status.status, "server_error", Some(status.code), status.message);
        }
        Err(e) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, e.to_string());
        }
    };
    let text = format!("{}{}", result.text, pending_note(&result.pending, &base));
    let mut response = Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.prompt_tokens + result.usage.completion_tokens,
        },
        "kitt": {"tier": result.tier, "pending": result.pending, "cache": result.cache,
            "sources": result.citations},
    }))
    .into_response();
    if let Some(cache) = result.cache {
        response.headers_mut().insert("x-kitt-cache", axum::http::HeaderValue::from_static(cache));
    }
    if let Ok(tier) = result.tier.parse() {
        response.headers_mut().insert("x-kitt-tier", tier);
    }
    response
}
