//! Stand-ins for the assistant's HTTP tiers: one local server speaking OpenAI's chat
//! completions (`POST /v1/chat/completions`, streamed as server-sent events or not) and
//! Anthropic's messages (`POST /v1/messages`, streamed), as their documentation shows them.
//! A test scripts the replies (text, a tool call, an HTTP error, silence) and reads back
//! every request the server received.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the stand-in answers next.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    Call {
        name: String,
        arguments: Value,
    },
    /// An HTTP error with the API's error body.
    Status(u16, String),
    /// Accepts the request and never answers.
    Hang,
    /// A 200 event stream of this text, whatever it is.
    Garbage(String),
}

#[derive(Debug, Default)]
struct Inner {
    script: VecDeque<Reply>,
    /// When the script is empty: this, every time (default: text naming the last message).
    always: Option<Reply>,
    requests: Vec<Value>,
    /// Answer whole JSON even when asked to stream (as some servers do).
    ignore_stream: bool,
}

/// A running stand-in.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl StandIn {
    pub async fn start() -> StandIn {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(openai))
            .route("/v1/messages", axum::routing::post(anthropic))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("a bound socket has an address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { addr, inner }
    }

    /// The base URL a tier is configured with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn then(&self, reply: Reply) -> &StandIn {
        self.inner
            .lock()
            .expect("the stand-in never panics holding its lock")
            .script
            .push_back(reply);
        self
    }

    pub fn always(&self, reply: Reply) {
        self.inner.lock().expect("the stand-in never panics holding its lock").always = Some(reply);
    }

    /// From now on, answer whole JSON even when asked to stream.
    pub fn ignore_stream(&self) {
        self.inner.lock().expect("the stand-in never panics holding its lock").ignore_stream = true;
    }

    /// The bodies of every request received.
    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().expect("the stand-in never panics holding its lock").requests.clone()
    }

    fn next(inner: &Mutex<Inner>, request: Value) -> Reply {
        let mut inner = inner.lock().expect("the stand-in never panics holding its lock");
        let last = request["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["content"].to_string())
            .unwrap_or_default();
        inner.requests.push(request);
        inner.script.pop_front().or_else(|| inner.always.clone()).unwrap_or_else(|| {
            Reply::Text(format!(
                "stand-in answer to {}",
                last.chars().take(120).collect::<String>()
            ))
        })
    }
}

fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

fn sse(events: Vec<(Option<&str>, String)>) -> Response {
    let mut body = String::new();
    for (event, data) in events {
        if let Some(event) = event {
            body.push_str(&format!("event: {event}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from(body)).into_response()
}

fn garbage(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from(text)).into_response()
}

async fn hang() -> Response {
    std::future::pending::<()>().await;
    StatusCode::OK.into_response()
}

async fn openai(State(inner): State<Arc<Mutex<Inner>>>, Json(request): Json<Value>) -> Response {
    let stream = request["stream"] == true
        && !inner.lock().expect("the stand-in never panics holding its lock").ignore_stream;
    let model = request["model"].as_str().unwrap_or("stand-in").to_owned();
    let reply = StandIn::next(&inner, request);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
    match reply {
        Reply::Hang => hang().await,
        Reply::Garbage(text) => garbage(text),
        Reply::Status(status, message) => (
            StatusCode::from_u16(status).expect("a test scripts a valid status"),
            Json(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})),
        )
            .into_response(),
        Reply::Text(text) if stream => {
            let mut events = vec![(None, chunk(json!({"role": "assistant", "content": ""}), Value::Null))];
            events.extend(pieces(&text).into_iter().map(|p| (None, chunk(json!({"content": p}), Value::Null))));
            events.push((None, chunk(json!({}), "stop".into())));
            events.push((None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage}).to_string()));
            events.push((None, "[DONE]".into()));
            sse(events)
        }
        Reply::Call { name, arguments } if stream => {
            let args = arguments.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            sse(vec![
                (None, chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_standin", "type": "function", "function": {"name": name, "arguments": ""}}]}), Value::Null)),
                (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}), Value::Null)),
                (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}), Value::Null)),
                (None, chunk(json!({}), "tool_calls".into())),
                (None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage}).to_string()),
                (None, "[DONE]".into()),
            ])
        }
        Reply::Text(text) => Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response(),
        Reply::Call { name, arguments } => Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_standin", "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]},
                "finish_reason": "tool_calls"}],
            "usage": usage,
        }))
        .into_response(),
    }
}

async fn anthropic(State(inner): State<Arc<Mutex<Inner>>>, Json(request): Json<Value>) -> Response {
    let reply = StandIn::next(&inner, request);
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "stand-in", "stop_reason": null, "usage": {"input_tokens": 13, "output_tokens": 1}}}).to_string();
    match reply {
        Reply::Hang => hang().await,
        Reply::Garbage(text) => garbage(text),
        Reply::Status(status, message) => (
            StatusCode::from_u16(status).expect("a test scripts a valid status"),
            Json(json!({"type": "error", "error": {"type": "api_error", "message": message}})),
        )
            .into_response(),
        Reply::Text(text) => {
            let mut events = vec![
                (Some("message_start"), start),
                (Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string()),
                (Some("ping"), json!({"type": "ping"}).to_string()),
            ];
            for p in pieces(&text) {
                events.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}).to_string()));
            }
            events.push((
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": 0}).to_string(),
            ));
            events.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}).to_string()));
            events.push((Some("message_stop"), json!({"type": "message_stop"}).to_string()));
            sse(events)
        }
        Reply::Call { name, arguments } => {
            let args = arguments.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            sse(vec![
                (Some("message_start"), start),
                (Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_standin", "name": name, "input": {}}}).to_string()),
                (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": a}}).to_string()),
                (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": b}}).to_string()),
                (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0}).to_string()),
                (Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 20}}).to_string()),
                (Some("message_stop"), json!({"type": "message_stop"}).to_string()),
            ])
        }
    }
}
