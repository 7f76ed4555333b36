//! `GET /api/v1/ws`: live updates as JSON text messages, pushed as soon as the ingest
//! transaction commits. `?printer=<id>` narrows them to one printer.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::routes::QueryParams;
use super::{AppState, Metrics};
use crate::live::LiveUpdate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    printer: Option<String>,
}

pub async fn upgrade(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve(state, socket, query.printer))
}

fn concerns(update: &LiveUpdate, printer: &str) -> bool {
    match update {
        LiveUpdate::PrinterState { printer: p, .. }
        | LiveUpdate::Event { printer: p, .. }
        | LiveUpdate::CommandResult { printer: p, .. }
        | LiveUpdate::Snapshot { printer: p, .. }
        | LiveUpdate::Camera { printer: p, .. } => p == printer,
        LiveUpdate::Agent { .. } => true,
    }
}

async fn serve(state: AppState, mut socket: WebSocket, printer: Option<String>) {
    let mut updates = state.sync.live().subscribe();
    loop {
        tokio::select! {
            update = updates.recv() => {
                let text = match update {
                    Ok(update) => {
                        if printer.as_deref().is_some_and(|p| !concerns(&update, p)) {
                            continue;
                        }
                        serde_json::to_string(&update).unwrap_or_default()
                    }
                    // A slow client: say how much it missed, so it can refetch.
                    Err(RecvError::Lagged(missed)) => {
                        serde_json::json!({ "type": "lagged", "missed": missed }).to_string()
                    }
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                Metrics::count(&state.metrics.ws_messages);
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
