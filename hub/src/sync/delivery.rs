//! Delivery: what reaches a connected agent from the rest of the hub — pending commands,
//! revocation, supersession by a newer connection, live-view requests — as [`Signal`]s to its
//! connection task, and the delivery of open commands over the sync stream.

use std::collections::HashSet;

use proto::{AgentId, CommandId, HubMessage, LiveViewRequest, UnixMillis};
use tokio::sync::mpsc;

use super::server::{ConnectionError, Shared, SyncHandle};
use crate::db::DbError;
use proto_io as frames;

/// What a connection task is told from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signal {
    CommandsPending,
    Revoked,
    Superseded,
    LiveView(LiveViewRequest),
}

#[derive(Debug)]
pub(super) struct Live {
    pub(super) connection: u64,
    pub(super) signals: mpsc::Sender<Signal>,
}

impl Shared {
    pub(super) fn signal(&self, agent: &AgentId, signal: Signal) {
        let live = self.live_map();
        if let Some(live) = live.get(agent) {
            let _ = live.signals.try_send(signal);
        }
    }
}

impl SyncHandle {
    /// Tells the agent's connection, if there is one, that commands wait for it. Commands
    /// are created only by [`crate::service::Commands::issue`], which persists them first;
    /// an agent that is away gets them when it connects, unless they expired by then.
    pub(crate) fn commands_pending(&self, agent: &AgentId) {
        self.shared.changed();
        self.shared.signal(agent, Signal::CommandsPending);
    }

    /// Revokes an agent and drops its connection at once.
    pub async fn revoke(&self, agent: &AgentId) -> Result<bool, DbError> {
        let known = self.shared.db.revoke_agent(agent.as_str(), UnixMillis::now()).await?;
        self.shared.changed();
        self.shared.signal(agent, Signal::Revoked);
        Ok(known)
    }
}

pub(super) async fn deliver_commands(
    shared: &Shared,
    agent: &AgentId,
    send: &mut quinn::SendStream,
    delivered: &mut HashSet<CommandId>,
) -> Result<(), ConnectionError> {
    let now = UnixMillis::now();
    for command in shared.db.open_commands(agent, now).await? {
        if delivered.insert(command.id) {
            frames::write(send, &HubMessage::Command(command.clone())).await?;
            shared.db.mark_delivered(command.id, now).await?;
        }
    }
    Ok(())
}
