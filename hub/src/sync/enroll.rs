//! Enrollment: a single-use token and a CSR in, the agent's certificate out.

use std::time::Duration;

use proto::{
    AgentId, AgentMessage, EnrollRefusal, EnrollRequest, Enrolled, HubMessage, UnixMillis,
};

use super::close_code;
use super::server::Shared;
use super::token::Token;
use crate::ca::HubCa;
use crate::db::{AgentRow, Db, DbError, TokenRefusal};
use crate::metrics::Source;
use proto_io::{self as frames, FrameReader};

/// Answers one enrollment request. A refusal is an answer, not an error; errors are the
/// hub's own failures (database, certificate building).
pub async fn handle(
    db: &Db,
    ca: &HubCa,
    request: &EnrollRequest,
    lifetime: Duration,
    now: UnixMillis,
) -> Result<HubMessage, DbError> {
    let Ok(token) = Token::parse(&request.token) else {
        return Ok(HubMessage::EnrollRefused(EnrollRefusal::UnknownToken));
    };
    // Check the CSR before spending the token, so a broken agent can try again.
    let probe = AgentId::new("probe").expect("a valid literal id");
    if let Err(error) = ca.issue_agent(&probe, &request.csr_der, lifetime) {
        return Ok(HubMessage::EnrollRefused(EnrollRefusal::BadCsr { detail: error.to_string() }));
    }
    let agent = new_agent_id(db, &token).await?;
    let name = match db.redeem_token(&token.id, &token.secret_sha256(), now, &agent).await? {
        Ok(name) => name,
        Err(refusal) => {
            tracing::warn!(token = %token.id, ?refusal, "Refused an enrollment.");
            return Ok(HubMessage::EnrollRefused(match refusal {
                TokenRefusal::Unknown => EnrollRefusal::UnknownToken,
                TokenRefusal::Expired => EnrollRefusal::ExpiredToken,
                TokenRefusal::AlreadyUsed => EnrollRefusal::TokenAlreadyUsed,
            }));
        }
    };
    let issued = match ca.issue_agent(&agent, &request.csr_der, lifetime) {
        Ok(issued) => issued,
        Err(error) => {
            return Ok(HubMessage::EnrollRefused(EnrollRefusal::BadCsr {
                detail: error.to_string(),
            }));
        }
    };
    let row = AgentRow {
        id: agent.clone(),
        name,
        cert_serial: issued.serial_hex.clone(),
        cert_not_after: issued.not_after,
        revoked_at: None,
        acked_through: proto::Seq::ZERO,
        last_seen_at: None,
    };
    let software = format!("{} ({})", request.software.version, request.software.target);
    db.insert_agent(&row, &request.hostname, &software, now).await?;
    tracing::info!(agent = %agent, hostname = %request.hostname, "Enrolled an agent.");
    Ok(HubMessage::Enrolled(Enrolled {
        agent,
        chain_der: issued.chain_der,
        hub_ca_der: ca.cert_der().to_vec(),
        not_after: issued.not_after,
    }))
}

/// The token's name when it is free as an agent id, else a generated one.
async fn new_agent_id(db: &Db, token: &Token) -> Result<AgentId, DbError> {
    let named = db.token_name(&token.id).await?.and_then(|name| AgentId::new(name).ok());
    if let Some(id) = named {
        if !db.agent_exists(id.as_str()).await? {
            return Ok(id);
        }
        let suffixed = format!("{}-{}", id.as_str(), hex::encode(rand::random::<[u8; 2]>()));
        if let Ok(id) = AgentId::new(suffixed) {
            return Ok(id);
        }
    }
    Ok(AgentId::new(format!("agent-{}", hex::encode(rand::random::<[u8; 4]>())))
        .expect("a generated id is valid"))
}

/// Serves one enrollment connection: a token and a CSR in, a certificate out.
pub(super) async fn serve(shared: &Shared, connection: &quinn::Connection) {
    let result = async {
        let (mut send, recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(recv, 64 * 1024);
        let message: AgentMessage =
            tokio::time::timeout(shared.config.hello_timeout, reader.next())
                .await
                .map_err(|_| "no enrollment request in time".to_owned())?
                .map_err(|e| e.to_string())?;
        let AgentMessage::Enroll(request) = message else {
            return Err("expected an enrollment request".to_owned());
        };
        let answer = handle(
            &shared.db,
            &shared.ca,
            &request,
            shared.config.cert_lifetime,
            UnixMillis::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        frames::write(&mut send, &answer).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        // Let the agent read the answer and close.
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
        Ok::<_, String>(())
    }
    .await;
    if let Err(error) = result {
        shared.metrics.refused(
            Source::Enroll,
            "failed",
            &format_args!("{}: {error}", connection.remote_address()),
        );
        connection.close(close_code::PROTOCOL.into(), error.as_bytes());
    }
}
