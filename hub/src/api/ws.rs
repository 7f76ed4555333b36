//! `GET /api/v1/ws`: live updates as JSON text messages, pushed as soon as the ingest
//! transaction commits. `?printer=<id>` narrows them to one printer. Every message has a
//! `cursor`; a client that reconnects (to this hub or another replica) with
//! `?after=<cursor>` gets what it missed first, or `lagged` when that is no longer kept.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, from_rejection};
use super::extract::QueryParams;
use crate::live::LiveUpdate;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// Only this printer's updates (agent presence always comes).
    printer: Option<String>,
    /// Resume after this cursor (the last message's `cursor`): the updates since come first,
    /// or `lagged` (read everything again) when they are no longer all kept.
    after: Option<u64>,
}

/// A WebSocket of live updates as JSON text messages: `printer_state`, `event`, `agent`,
/// `command_result`, `snapshot`, `camera`, `job`, `plate`, `scheduler_run` (not with
/// `?printer=`), and `lagged` when a slow client missed some.
#[utoipa::path(get, path = "/ws", tag = "live", params(WsQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
pub async fn upgrade(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        from_rejection(
            rejection.status(),
            format!("{}; open it as a WebSocket", rejection.body_text()),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(state, socket, query.printer, query.after)))
}

fn concerns(update: &LiveUpdate, printer: &str) -> bool {
    match update {
        LiveUpdate::PrinterState { printer: p, .. }
        | LiveUpdate::Event { printer: p, .. }
        | LiveUpdate::CommandResult { printer: p, .. }
        | LiveUpdate::Snapshot { printer: p, .. }
        | LiveUpdate::Camera { printer: p, .. }
        | LiveUpdate::Plate { printer: p, .. } => p == printer,
        LiveUpdate::Job { printer: p, .. } => p.as_deref() == Some(printer),
        LiveUpdate::Agent { .. } => true,
        LiveUpdate::SchedulerRun { .. } => false,
    }
}

/// An update as its message: the update's fields and its cursor.
fn message(stamped: &crate::live::Stamped) -> String {
    let mut value = serde_json::to_value(&stamped.update).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("cursor".into(), stamped.cursor.into());
    }
    value.to_string()
}

async fn serve(
    state: AppState,
    mut socket: WebSocket,
    printer: Option<String>,
    after: Option<u64>,
) {
    let live = state.sync.live();
    let (mut updates, missed) = match after {
        Some(after) => live.resume(after),
        None => (live.subscribe(), Some(Vec::new())),
    };
    let wanted = |update: &LiveUpdate| printer.as_deref().is_none_or(|p| concerns(update, p));
    // The newest cursor sent: an update at or below it came already (from the missed ones).
    let mut last = after.unwrap_or(0);
    match missed {
        Some(missed) => {
            for stamped in missed {
                last = stamped.cursor;
                if wanted(&stamped.update)
                    && socket.send(Message::Text(message(&stamped).into())).await.is_err()
                {
                    return;
                }
            }
        }
        None => {
            // Some of what it missed is gone: it must read everything again.
            if socket.send(Message::Text(lagged_message(0).into())).await.is_err() {
                return;
            }
        }
    }
    loop {
        tokio::select! {
            update = updates.recv() => {
                let (text, received) = match update {
                    Ok(stamped) => {
                        if stamped.cursor <= last {
                            continue;
                        }
                        last = stamped.cursor;
                        if !wanted(&stamped.update) {
                            continue;
                        }
                        (message(&stamped), Some(stamped.received))
                    }
                    // A slow client: say how much it missed, so it can refetch.
                    Err(RecvError::Lagged(missed)) => (lagged_message(missed), None),
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                if let Some(received) = received {
                    state.metrics.ws_message(received);
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// What a slow client is told: how many updates it missed (`LiveLagged` in the document).
pub fn lagged_message(missed: u64) -> String {
    serde_json::json!({ "type": "lagged", "missed": missed }).to_string()
}
