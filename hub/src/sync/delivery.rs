//! Delivery: what reaches a connected agent from the rest of the hub — pending commands,
//! revocation, supersession by a newer connection, live-view requests — as [`Signal`]s to its
//! connection task, and the delivery of open commands over the sync stream.

use std::collections::HashSet;

use proto::{AgentId, CommandId, CommandOutcome, HubMessage, LiveViewRequest, UnixMillis};
use tokio::sync::mpsc;

use super::server::{ConnectionError, Shared, SyncHandle};
use crate::db::DbError;
use crate::live::{LiveUpdate, SignalKind};
use proto_io as frames;

/// What a connection task is told from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signal {
    CommandsPending,
    /// Jobs of the agent's printers wait for their files.
    FilesPending,
    /// The printers the hub manages for the agent changed.
    PrintersChanged,
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
        self.shared.live.signal_elsewhere(agent.as_str(), SignalKind::Commands);
    }

    /// Tells the agent's connection, if there is one, that a job of one of its printers
    /// wants its file there (or no longer does); an agent that is away is offered it when
    /// it connects.
    pub(crate) fn files_pending(&self, agent: &AgentId) {
        self.shared.changed();
        self.shared.signal(agent, Signal::FilesPending);
        self.shared.live.signal_elsewhere(agent.as_str(), SignalKind::Files);
    }

    /// Tells the agent's connection, if there is one, that its managed printers changed; an
    /// agent that is away gets the list when it connects.
    pub(crate) fn printers_changed(&self, agent: &AgentId) {
        self.shared.changed();
        self.shared.signal(agent, Signal::PrintersChanged);
        self.shared.live.signal_elsewhere(agent.as_str(), SignalKind::Printers);
    }

    /// Revokes an agent and drops its connection at once.
    pub async fn revoke(&self, agent: &AgentId) -> Result<bool, DbError> {
        let known = self.shared.db.revoke_agent(agent.as_str(), UnixMillis::now()).await?;
        self.shared.changed();
        self.shared.signal(agent, Signal::Revoked);
        self.shared.live.signal_elsewhere(agent.as_str(), SignalKind::Revoked);
        Ok(known)
    }
}

/// Sends `agent` its open commands not yet sent in this session. A command the session's
/// wire version cannot carry (a start with the clock-free plate check, to an agent of
/// version 3) is never sent: the agent could not decode it, and the older check compares
/// two machines' clocks. It is answered here, as unsupported, saying what to do.
pub(super) async fn deliver_commands(
    shared: &Shared,
    agent: &AgentId,
    session_version: u16,
    send: &mut quinn::SendStream,
    delivered: &mut HashSet<CommandId>,
) -> Result<(), ConnectionError> {
    let now = UnixMillis::now();
    for command in shared.db.open_commands(agent, now).await? {
        if !delivered.insert(command.id) {
            continue;
        }
        if command.since() > session_version {
            let outcome =
                CommandOutcome::Unsupported { detail: too_old(session_version, command.since()) };
            tracing::warn!(%agent, command = %command.id, session_version,
                needs = command.since(), "Not sending a command the agent cannot read.");
            shared.db.record_outcome(command.id, &outcome, now).await?;
            shared.live.publish(LiveUpdate::CommandResult {
                command: command.id.to_string(),
                printer: command.printer.to_string(),
                outcome: crate::db::outcome_text(&outcome),
            });
            continue;
        }
        frames::write(send, &HubMessage::Command(command.clone())).await?;
        shared.db.mark_delivered(command.id, now).await?;
    }
    Ok(())
}

/// Sends `agent` the printers the hub manages for it, unless it applied that version
/// already. An agent older than version 6 manages none: it is told nothing, and the hub's
/// API shows the list as not applied.
pub(super) async fn deliver_printers(
    shared: &Shared,
    agent: &AgentId,
    session_version: u16,
    send: &mut quinn::SendStream,
) -> Result<(), ConnectionError> {
    if session_version < 6 {
        return Ok(());
    }
    let Some(desired) = shared.db.desired_printers(agent).await? else { return Ok(()) };
    let status = shared.db.managed_status(agent).await?;
    if status.applied_version == Some(desired.version as i64) {
        return Ok(());
    }
    tracing::info!(%agent, version = desired.version, printers = desired.printers.len(),
        "Sending the agent its managed printers.");
    frames::write(send, &HubMessage::Printers(desired)).await?;
    Ok(())
}

fn too_old(session_version: u16, needs: u16) -> String {
    let what = match needs {
        4 => " (a start's plate check by record, not by clock)",
        6 => " (a firmware restart or an emergency stop)",
        _ => "",
    };
    format!(
        "the agent speaks wire version {session_version}; this command needs version {needs}\
         {what}: upgrade kitt-agent on that machine"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_old_agent_is_told_what_to_upgrade() {
        let detail = super::too_old(3, 4);
        assert!(detail.contains("version 3") && detail.contains("version 4"), "{detail}");
        assert!(detail.contains("upgrade kitt-agent"), "{detail}");
        assert!(super::too_old(5, 6).contains("emergency stop"));
    }
}
