//! Model tiers over HTTP: OpenAI's chat completions (OpenAI itself, and the servers that
//! copy it: llama.cpp's server, Ollama, vLLM) and Anthropic's messages, both streamed. The
//! translations to and from their JSON are pure functions, tested against the documented
//! shapes; the task around them is thin.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{SseParser, post_json};
use super::llm::{
    ChatRequest, Chunk, ChunkStream, Finish, LlmError, Speaker, ToolCall, Usage, chunk_channel,
};

/// Which API a tier speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// A tier reached over HTTP.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub api: Api,
    /// The API's base, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// How long to wait for the first byte of the answer, and between pieces of it.
    pub timeout: Duration,
}

/// The most of an error answer kept, in bytes.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// The largest whole (unstreamed) answer read, in bytes.
const ANSWER_LIMIT: usize = 4 << 20;

fn tool_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| json!({"unparsed": text}))
    }
}

/// An OpenAI `chat.completion` object as chunks.
pub fn whole_openai(text: &str) -> Result<Vec<Chunk>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text:.200}"))?;
    let choice = &value["choices"][0];
    if !choice.is_object() {
        return Err(format!("no choices: {text:.200}"));
    }
    let mut out = Vec::new();
    if let Some(content) = choice["message"]["content"].as_str().filter(|c| !c.is_empty()) {
        out.push(Chunk::Text(content.to_owned()));
    }
    for (n, call) in choice["message"]["tool_calls"].as_array().into_iter().flatten().enumerate() {
        out.push(Chunk::Call(ToolCall {
            id: call["id"].as_str().map_or_else(|| format!("call-{n}"), str::to_owned),
            name: call["function"]["name"].as_str().unwrap_or("").to_owned(),
            arguments: tool_arguments(call["function"]["arguments"].as_str().unwrap_or("")),
        }));
    }
    let finish = match choice["finish_reason"].as_str() {
        Some("length") => Finish::Length,
        Some("tool_calls" | "function_call") => Finish::ToolCalls,
        _ if out.iter().any(|c| matches!(c, Chunk::Call(_))) => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    let usage = Usage {
        prompt_tokens: value["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        completion_tokens: value["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32,
    };
    out.push(Chunk::Done { finish, usage });
    Ok(out)
}

/// An Anthropic `message` object as chunks.
pub fn whole_anthropic(text: &str) -> Result<Vec<Chunk>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{e}: {text:.200}"))?;
    let Some(blocks) = value["content"].as_array() else {
        return Err(format!("no content: {text:.200}"));
    };
    let mut out = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => out.push(Chunk::Text(block["text"].as_str().unwrap_or("").to_owned())),
            Some("tool_use") => out.push(Chunk::Call(ToolCall {
                id: block["id"].as_str().unwrap_or("").to_owned(),
                name: block["name"].as_str().unwrap_or("").to_owned(),
                arguments: block["input"].clone(),
            })),
            _ => {}
        }
    }
    let finish = match value["stop_reason"].as_str() {
        Some("max_tokens") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    let usage = Usage {
        prompt_tokens: value["usage"]["input_tokens"].as_u64().unwrap_or(0) as u32,
        completion_tokens: value["usage"]["output_tokens"].as_u64().unwrap_or(0) as u32,
    };
    out.push(Chunk::Done { finish, usage });
    Ok(out)
}

impl Upstream {
    pub fn stream(&self, request: ChatRequest) -> ChunkStream {
        let (tx, rx) = chunk_channel();
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.run(&request, &tx).await {
                let _ = tx.send(Err(error)).await;
            }
        });
        rx
    }

    async fn run(
        &self,
        request: &ChatRequest,
        tx: &tokio::sync::mpsc::Sender<Result<Chunk, LlmError>>,
    ) -> Result<(), LlmError> {
        let tier = || self.name.clone();
        let base = self.base_url.trim_end_matches('/');
        let (url, body, headers) = match self.api {
            Api::OpenAi => {
                let mut headers = Vec::new();
                if let Some(key) = &self.api_key {
                    headers.push(("authorization", format!("Bearer {key}")));
                }
                (format!("{base}/chat/completions"), openai_request(&self.model, request), headers)
            }
            Api::Anthropic => {
                let mut headers = vec![("anthropic-version", "2023-06-01".to_owned())];
                if let Some(key) = &self.api_key {
                    headers.push(("x-api-key", key.clone()));
                }
                (format!("{base}/messages"), anthropic_request(&self.model, request), headers)
            }
        };
        let timeout = || LlmError::Timeout { tier: tier(), seconds: self.timeout.as_secs() };
        let mut answer = tokio::time::timeout(
            self.timeout,
            post_json(&url, &headers, body.to_string().into_bytes()),
        )
        .await
        .map_err(|_| timeout())?
        .map_err(|message| LlmError::Unreachable { tier: tier(), message })?;
        if !(200..300).contains(&answer.status) {
            let status = answer.status;
            let text = tokio::time::timeout(self.timeout, answer.text(ERROR_BODY_LIMIT))
                .await
                .map_err(|_| timeout())?
                .unwrap_or_else(|e| e);
            return Err(LlmError::Status { tier: tier(), status, message: error_message(&text) });
        }
        if answer.content_type == "application/json" {
            // A server that ignored `stream: true` (some OpenAI-compatible ones do when
            // tools are offered): the whole answer at once.
            let text = tokio::time::timeout(self.timeout, answer.text(ANSWER_LIMIT))
                .await
                .map_err(|_| timeout())?
                .map_err(|message| LlmError::Unreachable { tier: tier(), message })?;
            let chunks = match self.api {
                Api::OpenAi => whole_openai(&text),
                Api::Anthropic => whole_anthropic(&text),
            }
            .map_err(|message| LlmError::Protocol { tier: tier(), message })?;
            for chunk in chunks {
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
        if answer.content_type != "text/event-stream" {
            return Err(LlmError::Protocol {
                tier: tier(),
                message: format!("answered {:?}, not an event stream", answer.content_type),
            });
        }
        let mut parser = SseParser::default();
        let mut state = StreamState::default();
        loop {
            let piece =
                tokio::time::timeout(self.timeout, answer.next()).await.map_err(|_| timeout())?;
            let Some(piece) = piece else { break };
            let bytes = piece.map_err(|message| LlmError::Unreachable { tier: tier(), message })?;
            for event in parser.push(&bytes) {
                let chunks = match self.api {
                    Api::OpenAi => state.openai(&event.data),
                    Api::Anthropic => state.anthropic(&event.event, &event.data),
                }
                .map_err(|message| LlmError::Protocol { tier: tier(), message })?;
                for chunk in chunks {
                    let done = matches!(chunk, Chunk::Done { .. });
                    if tx.send(Ok(chunk)).await.is_err() || done {
                        return Ok(());
                    }
                }
            }
        }
        // The stream ended without its end: OpenAI-style servers that send no finish reason
        // before [DONE] are answered with what came; anything else is an error.
        match state.finish() {
            Some(chunks) => {
                for chunk in chunks {
                    let _ = tx.send(Ok(chunk)).await;
                }
                Ok(())
            }
            None => Err(LlmError::Protocol {
                tier: tier(),
                message: "the stream ended before the answer did".into(),
            }),
        }
    }
}

/// The message in an error answer: OpenAI's and Anthropic's `{"error": {"message"}}`, or
/// the text itself.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(500).collect())
}

/// OpenAI's chat completions request.
pub fn openai_request(model: &str, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let mut out = json!({"role": m.speaker.as_str(), "content": m.content});
            if !m.tool_calls.is_empty() {
                out["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments.to_string()}})
                    })
                    .collect();
                if m.content.is_empty() {
                    out["content"] = Value::Null;
                }
            }
            if let Some(id) = &m.tool_call_id {
                out["tool_call_id"] = id.clone().into();
            }
            out
        })
        .collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": request.max_tokens,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.schema()}})
            })
            .collect();
    }
    body
}

/// Anthropic's messages request: the system prompt apart, tool calls as `tool_use` blocks,
/// results as `tool_result` blocks in the next user turn (consecutive ones merged, since
/// turns must alternate).
pub fn anthropic_request(model: &str, request: &ChatRequest) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.speaker == Speaker::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in request.messages.iter().filter(|m| m.speaker != Speaker::System) {
        let (role, blocks) = match m.speaker {
            Speaker::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                }
                ("assistant", blocks)
            }
            Speaker::Tool => (
                "user",
                vec![json!({"type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content})],
            ),
            _ => ("user", vec![json!({"type": "text", "text": m.content})]),
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema()}))
            .collect();
    }
    body
}

/// A streamed answer being put together.
#[derive(Debug, Default)]
pub struct StreamState {
    /// Tool calls by their index: id, name, arguments so far.
    calls: Vec<(String, String, String)>,
    /// Anthropic's content block index → our call index.
    blocks: std::collections::HashMap<u64, usize>,
    finish: Option<Finish>,
    usage: Usage,
    done: bool,
}

impl StreamState {
    /// One OpenAI `data:` payload.
    pub fn openai(&mut self, data: &str) -> Result<Vec<Chunk>, String> {
        if data.trim() == "[DONE]" {
            return Ok(self.finish().unwrap_or_default());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data:.200}"))?;
        if let Some(error) = value.get("error") {
            return Err(error["message"].as_str().unwrap_or("an error").to_owned());
        }
        let mut out = Vec::new();
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            self.usage.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as u32;
            self.usage.completion_tokens = usage["completion_tokens"].as_u64().unwrap_or(0) as u32;
        }
        for choice in value["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push(Chunk::Text(text.to_owned()));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(self.calls.len() as u64) as usize;
                if index > 64 {
                    return Err(format!("tool call index {index}"));
                }
                while self.calls.len() <= index {
                    self.calls.push(Default::default());
                }
                let slot = &mut self.calls[index];
                if let Some(id) = call["id"].as_str() {
                    slot.0 = id.to_owned();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    slot.1.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    slot.2.push_str(arguments);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(match reason {
                    "length" => Finish::Length,
                    "tool_calls" | "function_call" => Finish::ToolCalls,
                    _ => Finish::Stop,
                });
            }
        }
        Ok(out)
    }

    /// One Anthropic event.
    pub fn anthropic(&mut self, event: &str, data: &str) -> Result<Vec<Chunk>, String> {
        let value: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data:.200}"))?;
        let kind = if event.is_empty() { value["type"].as_str().unwrap_or("") } else { event };
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let usage = &value["message"]["usage"];
                self.usage.prompt_tokens = usage["input_tokens"].as_u64().unwrap_or(0) as u32;
            }
            "content_block_start" => {
                let block = &value["content_block"];
                if block["type"] == "tool_use" {
                    let index = value["index"].as_u64().unwrap_or(0);
                    self.blocks.insert(index, self.calls.len());
                    self.calls.push((
                        block["id"].as_str().unwrap_or("").to_owned(),
                        block["name"].as_str().unwrap_or("").to_owned(),
                        String::new(),
                    ));
                } else if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(Chunk::Text(text.to_owned()));
                }
            }
            "content_block_delta" => {
                let delta = &value["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(text) = delta["text"].as_str() {
                            out.push(Chunk::Text(text.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = value["index"].as_u64().unwrap_or(0);
                        if let Some(&call) = self.blocks.get(&index) {
                            self.calls[call]
                                .2
                                .push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = value["delta"]["stop_reason"].as_str() {
                    self.finish = Some(match reason {
                        "max_tokens" => Finish::Length,
                        "tool_use" => Finish::ToolCalls,
                        _ => Finish::Stop,
                    });
                }
                if let Some(n) = value["usage"]["output_tokens"].as_u64() {
                    self.usage.completion_tokens = n as u32;
                }
            }
            "message_stop" => return Ok(self.finish().unwrap_or_default()),
            "error" => {
                return Err(value["error"]["message"].as_str().unwrap_or("an error").to_owned());
            }
            _ => {} // ping, content_block_stop, and types added later
        }
        Ok(out)
    }

    /// The calls and the end, once; `None` if nothing said how the answer ended.
    pub fn finish(&mut self) -> Option<Vec<Chunk>> {
        if self.done {
            return Some(Vec::new());
        }
        let finish = self.finish.or((!self.calls.is_empty()).then_some(Finish::ToolCalls))?;
        self.done = true;
        let mut out = Vec::new();
        for (n, (id, name, arguments)) in std::mem::take(&mut self.calls).into_iter().enumerate() {
            let arguments = tool_arguments(&arguments);
            let id = if id.is_empty() { format!("call-{n}") } else { id };
            out.push(Chunk::Call(ToolCall { id, name, arguments }));
        }
        out.push(Chunk::Done { finish, usage: self.usage });
        Some(out)
    }
}

/// A message for a tier's history (used by the tests of both translations).
#[cfg(test)]
fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::llm::{Message, Param, ParamKind, ToolSpec};

    fn request() -> ChatRequest {
        let c = call("c1", "printer_state", json!({"printer": "P1"}));
        let mut asked = Message::new(Speaker::Assistant, "");
        asked.tool_calls.push(c.clone());
        ChatRequest {
            messages: vec![
                Message::new(Speaker::System, "be brief"),
                Message::new(Speaker::User, "what is P1 doing?"),
                asked,
                Message::tool_result(&c, "{\"state\":\"printing\"}"),
            ],
            tools: vec![ToolSpec {
                name: "printer_state",
                description: "one printer",
                params: vec![Param {
                    name: "printer",
                    description: "id",
                    kind: ParamKind::OneOf(vec!["P1".into()]),
                    required: true,
                }],
            }],
            max_tokens: 100,
        }
    }

    #[test]
    fn requests_take_each_apis_documented_shape() {
        let openai = openai_request("m", &request());
        assert_eq!(openai["messages"][2]["content"], Value::Null);
        assert_eq!(
            openai["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"printer\":\"P1\"}"
        );
        assert_eq!(openai["messages"][3]["role"], "tool");
        assert_eq!(openai["messages"][3]["tool_call_id"], "c1");
        assert_eq!(
            openai["tools"][0]["function"]["parameters"]["properties"]["printer"]["enum"][0],
            "P1"
        );
        assert_eq!(openai["stream"], true);
        let anthropic = anthropic_request("m", &request());
        assert_eq!(anthropic["system"], "be brief");
        assert_eq!(anthropic["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(anthropic["messages"][2]["role"], "user");
        assert_eq!(anthropic["messages"][2]["content"][0]["tool_use_id"], "c1");
        assert_eq!(anthropic["tools"][0]["input_schema"]["required"][0], "printer");
    }

    #[test]
    fn an_openai_stream_gives_text_calls_split_across_chunks_and_usage() {
        let mut state = StreamState::default();
        let mut chunks = Vec::new();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"printer_state","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"printer\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"P1\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#,
            "[DONE]",
        ] {
            chunks.extend(state.openai(data).unwrap());
        }
        assert_eq!(
            chunks,
            vec![
                Chunk::Text("Hel".into()),
                Chunk::Text("lo".into()),
                Chunk::Call(call("call_1", "printer_state", json!({"printer": "P1"}))),
                Chunk::Done {
                    finish: Finish::ToolCalls,
                    usage: Usage { prompt_tokens: 12, completion_tokens: 5 }
                },
            ]
        );
        assert!(StreamState::default().openai(r#"{"error":{"message":"overloaded"}}"#).is_err());
    }

    #[test]
    fn whole_answers_from_servers_that_do_not_stream_read_the_same() {
        let openai = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function","function":{"name":"printer_state","arguments":"{\"printer\":\"P1\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(
            whole_openai(openai).unwrap(),
            vec![
                Chunk::Call(call("call_9", "printer_state", json!({"printer": "P1"}))),
                Chunk::Done {
                    finish: Finish::ToolCalls,
                    usage: Usage { prompt_tokens: 3, completion_tokens: 4 }
                },
            ]
        );
        let anthropic = r#"{"id":"msg","type":"message","role":"assistant","content":[{"type":"text","text":"Idle."}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}}"#;
        assert_eq!(
            whole_anthropic(anthropic).unwrap(),
            vec![
                Chunk::Text("Idle.".into()),
                Chunk::Done {
                    finish: Finish::Stop,
                    usage: Usage { prompt_tokens: 5, completion_tokens: 2 }
                },
            ]
        );
        assert!(whole_openai("{\"choices\": []}").is_err());
        assert!(whole_anthropic("<html>").is_err());
    }

    #[test]
    fn an_anthropic_stream_gives_text_tool_use_and_usage() {
        let mut state = StreamState::default();
        let mut chunks = Vec::new();
        for (event, data) in [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":20,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type":"ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}"#,
            ),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"printer_state","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"printer\": \"P"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1\"}"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ] {
            chunks.extend(state.anthropic(event, data).unwrap());
        }
        assert_eq!(
            chunks,
            vec![
                Chunk::Text("Checking".into()),
                Chunk::Call(call("toolu_1", "printer_state", json!({"printer": "P1"}))),
                Chunk::Done {
                    finish: Finish::ToolCalls,
                    usage: Usage { prompt_tokens: 20, completion_tokens: 30 }
                },
            ]
        );
        let error = StreamState::default()
            .anthropic(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
            .unwrap_err();
        assert_eq!(error, "Overloaded");
    }
}
