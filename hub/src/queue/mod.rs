//! The print queue's decisions, pure: which job goes to which printer ([`dispatch`]) and
//! which loaded filament serves which of a plate's slots ([`matching`]). The queue service
//! (`service::queue`) feeds them the queue and the fleet's live state and carries out what
//! they return; they do no I/O and read no clock, so every rule is tested with plain values.

pub mod dispatch;
pub mod matching;
