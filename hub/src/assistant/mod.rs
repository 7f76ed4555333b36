//! The assistant (issue 19). Its decisions are pure and tested: `router` (which model tier
//! answers, the fallbacks, the budget, cooldowns), `pending` (actions waiting for a person:
//! bound to the exact action, confirmed once, by an authenticated person with the role,
//! before the expiry) and `grammar` (tool calls a small model cannot get wrong). `llm` is
//! what every tier speaks; `local` runs a GGUF in-process with llama.cpp. The design notes
//! are in `docs/research/assistant.md`.

pub mod cache;
pub mod embed;
pub mod eval;
pub mod facets;
pub mod grammar;
pub mod http;
pub mod llm;
pub mod local;
pub mod pending;
pub mod recall;
pub mod router;
pub mod service;
pub mod tools;
pub mod upstream;

pub use self::service::{Assistant, Event, PendingView};
