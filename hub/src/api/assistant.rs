//! The assistant's API: conversations (list, create, read, delete), a turn (streamed as
//! server-sent events, or one JSON answer), pending actions and their decisions, and the
//! tiers. Thin: the behaviour is `assistant::service`.

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::assistant::pending::{Decision, Refusal};
use crate::assistant::router::Depth;
use crate::assistant::service::{DecideError, Event, ModelsView, TurnResult};
use crate::assistant::{Assistant, PendingView};
use crate::db::assistant::ConversationRow;
use crate::service::Principal;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// At most 200 characters; the first question names it when left out.
    pub title: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    /// `user`, `assistant` or `tool`.
    pub speaker: String,
    pub content: String,
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<crate::assistant::llm::ToolCall>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    /// The model tier that wrote it, and why the router chose it.
    pub tier: Option<String>,
    pub why: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub conversation: ConversationRow,
    pub messages: Vec<MessageView>,
    pub pending: Vec<PendingView>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DepthName {
    Quick,
    #[default]
    Normal,
    Deep,
}

impl From<DepthName> for Depth {
    fn from(d: DepthName) -> Depth {
        match d {
            DepthName::Quick => Depth::Quick,
            DepthName::Normal => Depth::Normal,
            DepthName::Deep => Depth::Deep,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// What the person says (at most 8000 characters).
    pub content: String,
    /// How much thinking: `quick`, `normal` (default) or `deep`.
    pub depth: Option<DepthName>,
    /// Stream server-sent events (also chosen by `Accept: text/event-stream`).
    pub stream: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnView {
    pub text: String,
    pub tier: String,
    pub pending: Vec<PendingView>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `hit` or `miss` when the semantic cache was asked (a conversation's first question,
    /// with a cache configured); also the `x-kitt-cache` header.
    pub cache: Option<String>,
    /// Every event the stream would have carried, in order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PendingQuery {
    /// Only those still waiting for a decision.
    pub undecided: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The action's digest as it was shown: a decision on anything else is refused.
    pub digest: String,
}

/// The person's conversations with the assistant, newest first.
#[utoipa::path(get, path = "/assistant/conversations", tag = "assistant",
    responses((status = 200, body = Vec<ConversationRow>)))]
pub async fn conversations(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<ConversationRow>>, ApiError> {
    Ok(Json(state.assistant.conversations(&principal).await?))
}

/// Start a conversation.
#[utoipa::path(post, path = "/assistant/conversations", tag = "assistant",
    request_body = NewConversation, responses((status = 201, body = ConversationRow)))]
pub async fn create_conversation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<NewConversation>,
) -> Result<Response, ApiError> {
    let row = state.assistant.create_conversation(&principal, body.title.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// A conversation: its messages (tool calls and results included) and its pending actions.
#[utoipa::path(get, path = "/assistant/conversations/{id}", tag = "assistant",
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, body = ConversationView)))]
pub async fn conversation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    let conversation = state.assistant.conversation(&principal, &id).await?;
    let messages = state
        .assistant
        .messages(&principal, &id)
        .await?
        .into_iter()
        .map(|m| MessageView {
            id: m.id,
            speaker: m.message.speaker.as_str().to_owned(),
            content: m.message.content,
            tool_calls: m.message.tool_calls,
            tool_call_id: m.message.tool_call_id,
            tool_name: m.message.tool_name,
            tier: m.tier,
            why: m.why,
            created_at: m.created_at,
        })
        .collect();
    let pending = state.assistant.pending_of(&id).await?;
    Ok(Json(ConversationView { conversation, messages, pending }))
}

/// Delete a conversation and its messages (its decided actions stay on record).
#[utoipa::path(delete, path = "/assistant/conversations/{id}", tag = "assistant",
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_conversation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.assistant.delete_conversation(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Say something: the answer streams as server-sent events (`model`, `fallback`, `text`,
/// `tool_call`, `tool_result`, `pending`, `done`, `error`), or comes as one JSON object.
/// An action the assistant proposes is a pending action, never something done.
#[utoipa::path(post, path = "/assistant/conversations/{id}/messages", tag = "assistant",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = NewMessage,
    responses((status = 200, description = "The turn: JSON, or server-sent events (one \
        `AssistantEvent` per `data:` line)",
        content((TurnView = "application/json"), (Event = "text/event-stream"))),
        (status = 503, description = "No model can answer now (none configured, all failing or \
            cooling down, or the paid budget spent); the message says which and why",
            body = super::error::ErrorBody)))]
pub async fn send_message(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewMessage>,
) -> Result<Response, ApiError> {
    // Refuse what is refused before anything streams.
    state.assistant.conversation(&principal, &id).await?;
    crate::assistant::service::check_message(&body.content)?;
    state.assistant.check_ready()?;
    let wants_stream = body.stream.unwrap_or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
    });
    let depth: Depth = body.depth.unwrap_or_default().into();
    let (tx, rx) = mpsc::channel::<Event>(256);
    let assistant = state.assistant.clone();
    let turn = tokio::spawn(async move {
        let result = assistant.ask(&principal, &id, &body.content, depth, &tx).await;
        if let Err(error) = &result {
            let _ = tx.send(Event::Error { message: error.to_string() }).await;
        }
        result
    });
    if wants_stream {
        return Ok(sse(rx, |event| serde_json::to_string(event).unwrap_or_default()));
    }
    let events = collect(rx).await;
    let result = turn.await.map_err(|e| ApiError::internal(&e))??;
    let cache = result.cache;
    let mut response = Json(turn_view(result, events)).into_response();
    if let Some(cache) = cache {
        response.headers_mut().insert("x-kitt-cache", HeaderValue::from_static(cache));
    }
    Ok(response)
}

fn turn_view(result: TurnResult, events: Vec<Event>) -> TurnView {
    TurnView {
        text: result.text,
        tier: result.tier,
        pending: result.pending,
        prompt_tokens: result.usage.prompt_tokens,
        completion_tokens: result.usage.completion_tokens,
        cache: result.cache.map(str::to_owned),
        events,
    }
}

pub(crate) async fn collect(mut rx: mpsc::Receiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    events
}

/// A server-sent-events answer: each event as one `data:` line, as `format` writes it;
/// `tail` ends the stream (OpenAI's `[DONE]`).
pub(crate) fn sse_with(
    mut rx: mpsc::Receiver<Event>,
    mut format: impl FnMut(&Event) -> Option<String> + Send + 'static,
    tail: Option<String>,
) -> Response {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(data) = format(&event) {
                let frame = Bytes::from(format!("data: {data}\n\n"));
                if body_tx.send(Ok(frame)).await.is_err() {
                    // The client left; the turn goes on and is stored.
                    while rx.recv().await.is_some() {}
                    return;
                }
            }
        }
        if let Some(tail) = tail {
            let _ = body_tx.send(Ok(Bytes::from(format!("data: {tail}\n\n")))).await;
        }
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn sse(rx: mpsc::Receiver<Event>, format: impl Fn(&Event) -> String + Send + 'static) -> Response {
    sse_with(rx, move |e| Some(format(e)), None)
}

/// Pending actions: the caller's own, or everyone's for those who may confirm them.
#[utoipa::path(get, path = "/assistant/pending", tag = "assistant", params(PendingQuery),
    responses((status = 200, body = Vec<PendingView>)))]
pub async fn pending(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<PendingQuery>,
) -> Result<Json<Vec<PendingView>>, ApiError> {
    Ok(Json(state.assistant.pending_list(&principal, query.undecided.unwrap_or(false)).await?))
}

async fn decide(
    assistant: &Assistant,
    principal: &Principal,
    id: &str,
    decision: Decision,
    digest: &str,
) -> Result<Json<PendingView>, ApiError> {
    match assistant.decide(principal, id, decision, digest).await {
        Ok(view) => Ok(Json(view)),
        Err(DecideError::Service(error)) => Err(error.into()),
        Err(DecideError::Refused(refusal)) => {
            let (status, code) = match refusal {
                Refusal::NotAPerson | Refusal::NotAllowed { .. } => {
                    (StatusCode::FORBIDDEN, "forbidden")
                }
                Refusal::Expired => (StatusCode::GONE, "expired"),
                Refusal::AlreadyDecided => (StatusCode::CONFLICT, "already_decided"),
                Refusal::Mismatch => (StatusCode::CONFLICT, "digest_mismatch"),
            };
            Err(ApiError::new(status, code, refusal.to_string()))
        }
    }
}

/// Confirm a pending action: it runs now, as the confirming person (who needs the action's
/// role), once, before its expiry, and only if `digest` is the action's.
#[utoipa::path(post, path = "/assistant/pending/{id}/confirm", tag = "assistant",
    params(("id" = String, Path, description = "The pending action's id")),
    request_body = DecisionBody, responses((status = 200, body = PendingView)))]
pub async fn confirm(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<PendingView>, ApiError> {
    decide(&state.assistant, &principal, &id, Decision::Confirm, &body.digest).await
}

/// Reject a pending action.
#[utoipa::path(post, path = "/assistant/pending/{id}/reject", tag = "assistant",
    params(("id" = String, Path, description = "The pending action's id")),
    request_body = DecisionBody, responses((status = 200, body = PendingView)))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<PendingView>, ApiError> {
    decide(&state.assistant, &principal, &id, Decision::Reject, &body.digest).await
}

/// The model tiers: ready or not, cooling down, and this month's paid spending.
#[utoipa::path(get, path = "/assistant/models", tag = "assistant",
    responses((status = 200, body = ModelsView)))]
pub async fn models(
    State(state): State<AppState>,
    Extension(_principal): Extension<Principal>,
) -> Result<Json<ModelsView>, ApiError> {
    Ok(Json(state.assistant.models().await?))
}
