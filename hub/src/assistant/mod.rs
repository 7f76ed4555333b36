//! The assistant (issue 19), its decisions first, pure and tested: `router` (which model
//! tier answers, the fallbacks, the budget, cooldowns) and `pending` (actions waiting for a
//! person: bound to the exact action, confirmed once, by an authenticated person with the
//! role, before the expiry). The models, tools, conversations and doors come next; the
//! design notes are in `docs/research/assistant.md`.

pub mod pending;
pub mod router;
