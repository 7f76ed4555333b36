//! The assistant's storage: conversations and their messages, pending actions (decided by a
//! conditional update, so a confirmation is taken once however many arrive together), and
//! the usage of every model request (kept apart from conversations: deleting one never
//! gives back budget).

use serde::Serialize;
use sqlx::Row;

use super::{Db, DbError};
use crate::assistant::llm::{Message, Speaker, ToolCall};
use crate::assistant::pending::{PendingAction, PendingState, ProposedAction};
use crate::service::Role;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConversationRow {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: i64,
    pub message: Message,
    pub tier: Option<String>,
    pub why: Option<String>,
    pub created_at: i64,
}

/// A pending action as stored: the action and its decision, where it came from, what
/// running it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub action: PendingAction,
    pub conversation: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// One model request's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub at: i64,
    pub user: String,
    pub tier: String,
    pub paid: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cost: f64,
    pub ok: bool,
    pub latency_ms: i64,
}

const PENDING_COLUMNS: &str = "id, conversation_id, tool, arguments, summary, requested_by, \
     needed_role, created_at, expires_at, state, decided_by, decided_at, result, error";

fn pending_row(row: &sqlx::any::AnyRow) -> Result<PendingRow, DbError> {
    let arguments: String = row.try_get(3)?;
    let state: String = row.try_get(9)?;
    let decided_by: Option<String> = row.try_get(10)?;
    let decided_at: Option<i64> = row.try_get(11)?;
    let state = match (state.as_str(), decided_by, decided_at) {
        ("confirmed", Some(by), Some(at)) => PendingState::Confirmed { by, at },
        ("rejected", Some(by), Some(at)) => PendingState::Rejected { by, at },
        _ => PendingState::Pending,
    };
    let needed: String = row.try_get(6)?;
    let result: Option<String> = row.try_get(12)?;
    Ok(PendingRow {
        action: PendingAction {
            id: row.try_get(0)?,
            action: ProposedAction {
                tool: row.try_get(2)?,
                arguments: serde_json::from_str(&arguments).unwrap_or(serde_json::Value::Null),
                summary: row.try_get(4)?,
            },
            requested_by: row.try_get(5)?,
            needed: Role::parse(&needed).unwrap_or(Role::Admin),
            created_at: row.try_get(7)?,
            expires_at: row.try_get(8)?,
            state,
        },
        conversation: row.try_get(1)?,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.try_get(13)?,
    })
}

fn message_row(row: &sqlx::any::AnyRow) -> Result<MessageRow, DbError> {
    let speaker: String = row.try_get(1)?;
    let calls: Option<String> = row.try_get(3)?;
    let tool_calls: Vec<ToolCall> =
        calls.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
    Ok(MessageRow {
        id: row.try_get(0)?,
        message: Message {
            speaker: Speaker::parse(&speaker).unwrap_or(Speaker::System),
            content: row.try_get(2)?,
            tool_calls,
            tool_call_id: row.try_get(4)?,
            tool_name: row.try_get(5)?,
        },
        tier: row.try_get(6)?,
        why: row.try_get(7)?,
        created_at: row.try_get(8)?,
    })
}

pub(crate) fn conversation_row(row: &sqlx::any::AnyRow) -> Result<ConversationRow, DbError> {
    Ok(ConversationRow {
        id: row.try_get(0)?,
        owner: row.try_get(1)?,
        title: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}

impl Db {
    pub async fn create_conversation(&self, row: &ConversationRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO assistant_conversations (id, owner, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&row.owner)
        .bind(&row.title)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn conversations(&self, owner: &str) -> Result<Vec<ConversationRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, owner, title, created_at, updated_at FROM assistant_conversations \
             WHERE owner = $1 ORDER BY updated_at DESC, id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(conversation_row).collect()
    }

    pub async fn conversation(&self, id: &str) -> Result<Option<ConversationRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, owner, title, created_at, updated_at FROM assistant_conversations \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(conversation_row).transpose()
    }

    pub async fn rename_conversation(&self, id: &str, title: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE assistant_conversations SET title = $1 WHERE id = $2")
            .bind(title)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a conversation and its messages; its pending actions stay (decided ones are
    /// a record; undecided ones can still be rejected) without it.
    pub async fn delete_conversation(&self, id: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM assistant_messages WHERE conversation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE assistant_pending SET conversation_id = NULL WHERE conversation_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM assistant_conversations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Appends a message and touches the conversation; answers the message's id.
    pub async fn add_message(
        &self,
        conversation: &str,
        message: &Message,
        tier: Option<&str>,
        why: Option<&str>,
        now: i64,
    ) -> Result<i64, DbError> {
        let one = [(message.clone(), tier.map(str::to_owned), why.map(str::to_owned))];
        let ids = self.finish_turn(Some(conversation), &one, &[], now).await?;
        ids.first().copied().ok_or(DbError::Query(sqlx::Error::RowNotFound))
    }

    /// A turn's messages (in a stored conversation) and its model requests' usage, in one
    /// transaction; answers the messages' ids.
    pub async fn finish_turn(
        &self,
        conversation: Option<&str>,
        messages: &[(Message, Option<String>, Option<String>)],
        usage: &[UsageRow],
        now: i64,
    ) -> Result<Vec<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::new();
        if let Some(conversation) = conversation {
            for (message, tier, why) in messages {
                let calls = (!message.tool_calls.is_empty())
                    .then(|| serde_json::to_string(&message.tool_calls).unwrap_or_default());
                let id: i64 = sqlx::query(
                    "INSERT INTO assistant_messages (conversation_id, speaker, content, tool_calls, \
                     tool_call_id, tool_name, tier, why, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(conversation)
                .bind(message.speaker.as_str())
                .bind(&message.content)
                .bind(calls)
                .bind(message.tool_call_id.clone())
                .bind(message.tool_name.clone())
                .bind(tier.clone())
                .bind(why.clone())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                ids.push(id);
            }
            if !messages.is_empty() {
                sqlx::query("UPDATE assistant_conversations SET updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(conversation)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for row in usage {
            sqlx::query(
                "INSERT INTO assistant_usage (at, user_name, tier, paid, prompt_tokens, \
                 completion_tokens, cost, ok, latency_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.at)
            .bind(&row.user)
            .bind(&row.tier)
            .bind(i64::from(row.paid))
            .bind(i64::from(row.prompt_tokens))
            .bind(i64::from(row.completion_tokens))
            .bind(row.cost)
            .bind(i64::from(row.ok))
            .bind(row.latency_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn messages(&self, conversation: &str) -> Result<Vec<MessageRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, speaker, content, tool_calls, tool_call_id, tool_name, tier, why, \
             created_at FROM assistant_messages WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_row).collect()
    }

    pub async fn insert_pending(
        &self,
        pending: &PendingAction,
        conversation: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO assistant_pending (id, conversation_id, tool, arguments, summary, digest, \
             requested_by, needed_role, created_at, expires_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')",
        )
        .bind(&pending.id)
        .bind(conversation.map(str::to_owned))
        .bind(&pending.action.tool)
        .bind(pending.action.arguments.to_string())
        .bind(&pending.action.summary)
        .bind(pending.action.digest())
        .bind(&pending.requested_by)
        .bind(pending.needed.as_str())
        .bind(pending.created_at)
        .bind(pending.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn pending_action(&self, id: &str) -> Result<Option<PendingRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM assistant_pending WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pending_row).transpose()
    }

    /// Pending actions, newest first: of one conversation, or requested by one person, or
    /// all; `undecided` keeps only those still waiting.
    pub async fn pending_actions(
        &self,
        conversation: Option<&str>,
        requested_by: Option<&str>,
        undecided: bool,
        limit: i64,
    ) -> Result<Vec<PendingRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PENDING_COLUMNS} FROM assistant_pending \
             WHERE ($1 IS NULL OR conversation_id = $1) AND ($2 IS NULL OR requested_by = $2) \
             AND ($3 = 0 OR state = 'pending') ORDER BY created_at DESC, id LIMIT $4"
        )))
        .bind(conversation.map(str::to_owned))
        .bind(requested_by.map(str::to_owned))
        .bind(i64::from(undecided))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_row).collect()
    }

    /// Writes a decision if the action is still pending; `false` when another decision
    /// came first.
    pub async fn decide_pending(&self, id: &str, state: &PendingState) -> Result<bool, DbError> {
        let (name, by, at) = match state {
            PendingState::Pending => return Ok(false),
            PendingState::Confirmed { by, at } => ("confirmed", by, *at),
            PendingState::Rejected { by, at } => ("rejected", by, *at),
        };
        let done = sqlx::query(
            "UPDATE assistant_pending SET state = $1, decided_by = $2, decided_at = $3 \
             WHERE id = $4 AND state = 'pending'",
        )
        .bind(name)
        .bind(by)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    pub async fn pending_result(
        &self,
        id: &str,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE assistant_pending SET result = $1, error = $2 WHERE id = $3")
            .bind(result.map(|r| r.to_string()))
            .bind(error.map(str::to_owned))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What paid tiers cost since `since` (Unix ms).
    pub async fn paid_since(&self, since: i64) -> Result<f64, DbError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(cost), 0.0) FROM assistant_usage WHERE paid = 1 AND at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<f64, _>(0)?)
    }

    /// Requests and cost per tier since `since`: (tier, requests, failures, cost).
    pub async fn usage_by_tier(&self, since: i64) -> Result<Vec<(String, i64, i64, f64)>, DbError> {
        let rows = sqlx::query(
            "SELECT tier, COUNT(*), CAST(COALESCE(SUM(1 - ok), 0) AS BIGINT), COALESCE(SUM(cost), 0.0) \
             FROM assistant_usage WHERE at >= $1 GROUP BY tier ORDER BY tier",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }
}
