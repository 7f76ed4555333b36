//! What every model tier speaks: messages in, a stream of chunks out. The in-process
//! llama.cpp model (`local`), OpenAI-compatible servers and OpenAI itself (`openai`), and
//! Anthropic's API (`anthropic`) each translate from and to these.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    System,
    User,
    Assistant,
    /// A tool's result, answering the assistant's call `tool_call_id`.
    Tool,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::System => "system",
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
            Speaker::Tool => "tool",
        }
    }

    pub fn parse(text: &str) -> Option<Speaker> {
        match text {
            "system" | "developer" => Some(Speaker::System),
            "user" => Some(Speaker::User),
            "assistant" => Some(Speaker::Assistant),
            "tool" => Some(Speaker::Tool),
            _ => None,
        }
    }
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// One message of a conversation as the models see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub speaker: Speaker,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool's result: the call it answers, and the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl Message {
    pub fn new(speaker: Speaker, content: impl Into<String>) -> Message {
        Message {
            speaker,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
        }
    }

    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Message {
        Message {
            speaker: Speaker::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
        }
    }
}

/// A tool's parameter: the small subset of JSON Schema that every tier, and a grammar for
/// the smallest model, can hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: ParamKind,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// Free text, at most this many characters.
    Text {
        max: usize,
    },
    /// One of these values (printer ids, job states): a small model cannot name another.
    OneOf(Vec<String>),
    Integer,
}

/// A tool as offered to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub params: Vec<Param>,
}

impl ToolSpec {
    /// The parameters as JSON Schema (OpenAI's `parameters`, Anthropic's `input_schema`).
    pub fn schema(&self) -> serde_json::Value {
        let mut properties = serde_json::Map::new();
        for param in &self.params {
            let mut schema = match &param.kind {
                ParamKind::Text { max } => serde_json::json!({"type": "string", "maxLength": max}),
                ParamKind::OneOf(values) => serde_json::json!({"type": "string", "enum": values}),
                ParamKind::Integer => serde_json::json!({"type": "integer"}),
            };
            schema["description"] = param.description.into();
            properties.insert(param.name.to_owned(), schema);
        }
        let required: Vec<&str> =
            self.params.iter().filter(|p| p.required).map(|p| p.name).collect();
        serde_json::json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }
}

/// A request to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// Tools it may call; empty for none.
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

/// Why a model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    #[default]
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// Tokens a request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// What a model streams back.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Text(String),
    Call(ToolCall),
    Done { finish: Finish, usage: Usage },
}

/// Why a model failed; the router falls back to the next tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("cannot reach {tier}: {message}")]
    Unreachable { tier: String, message: String },
    #[error("{tier} answered HTTP {status}: {message}")]
    Status { tier: String, status: u16, message: String },
    #[error("{tier} sent something unreadable: {message}")]
    Protocol { tier: String, message: String },
    #[error("{tier} did not answer within {seconds} s")]
    Timeout { tier: String, seconds: u64 },
    #[error("{tier}: {message}")]
    Model { tier: String, message: String },
}

/// The receiving end of a model's stream; the stream ends after `Done` or an error.
pub type ChunkStream = mpsc::Receiver<Result<Chunk, LlmError>>;

/// A channel for a model's chunks, small: a slow reader slows the model, not the memory.
pub fn chunk_channel() -> (mpsc::Sender<Result<Chunk, LlmError>>, ChunkStream) {
    mpsc::channel(64)
}
