//! `GET /api/v1/ws`: live updates as JSON text messages, pushed as soon as the ingest
//! transaction commits. `?printer=<id>` narrows them to one printer.

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
}

/// A WebSocket of live updates as JSON text messages: `printer_state`, `event`, `agent`,
/// `command_result`, `snapshot`, `camera`, and `lagged` when a slow client missed some.
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
    Ok(upgrade.on_upgrade(move |socket| serve(state, socket, query.printer)))
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
    }
}

async fn serve(state: AppState, mut socket: WebSocket, printer: Option<String>) {
    let mut updates = state.sync.live().subscribe();
    loop {
        tokio::select! {
            update = updates.recv() => {
                let (text, received) = match update {
                    Ok(stamped) => {
                        if printer.as_deref().is_some_and(|p| !concerns(&stamped.update, p)) {
                            continue;
                        }
                        (serde_json::to_string(&stamped.update).unwrap_or_default(), Some(stamped.received))
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
