//! The memory's storage: documents an operator adds, and the readers the memory's sync uses
//! to see everything it remembers (outcomes, conversations, notable events).

use sqlx::Row;

use super::{Db, DbError};

/// A document in the memory.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    pub id: String,
    pub title: String,
    /// `markdown`, `text` or `pdf`.
    pub format: String,
    pub printer_id: Option<String>,
    pub material: Option<String>,
    pub content: String,
    pub bytes: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const DOCUMENT: &str = "id, title, format, printer_id, material, content, bytes, created_by, \
    created_at, updated_at";

fn document_row(row: &sqlx::any::AnyRow) -> Result<DocumentRow, DbError> {
    Ok(DocumentRow {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        format: row.try_get(2)?,
        printer_id: row.try_get(3)?,
        material: row.try_get(4)?,
        content: row.try_get(5)?,
        bytes: row.try_get(6)?,
        created_by: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

impl Db {
    /// Adds a document, or replaces the one with its id (keeping who added it and when).
    pub async fn put_document(&self, row: &DocumentRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO memory_documents (id, title, format, printer_id, material, content, \
             bytes, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, format = excluded.format, \
             printer_id = excluded.printer_id, material = excluded.material, \
             content = excluded.content, bytes = excluded.bytes, \
             updated_at = excluded.updated_at",
        )
        .bind(&row.id)
        .bind(&row.title)
        .bind(&row.format)
        .bind(row.printer_id.as_deref())
        .bind(row.material.as_deref())
        .bind(&row.content)
        .bind(row.bytes)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn document(&self, id: &str) -> Result<Option<DocumentRow>, DbError> {
        let sql = format!("SELECT {DOCUMENT} FROM memory_documents WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(document_row).transpose()
    }

    /// Every document, newest change first.
    pub async fn documents(&self) -> Result<Vec<DocumentRow>, DbError> {
        let sql = format!("SELECT {DOCUMENT} FROM memory_documents ORDER BY updated_at DESC, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(document_row).collect()
    }

    /// Whether there was one to delete.
    pub async fn delete_document(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM memory_documents WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every conversation, with what its person and the assistant said (not the tools'
    /// results), oldest first.
    pub async fn conversations_said(
        &self,
    ) -> Result<Vec<(super::assistant::ConversationRow, Vec<(String, String)>)>, DbError> {
        let conversations = sqlx::query(
            "SELECT id, owner, title, created_at, updated_at FROM assistant_conversations \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let said = sqlx::query(
            "SELECT conversation_id, speaker, content FROM assistant_messages \
             WHERE speaker IN ('user', 'assistant') AND content <> '' \
             ORDER BY conversation_id, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_conversation: std::collections::HashMap<String, Vec<(String, String)>> =
            std::collections::HashMap::new();
        for row in &said {
            by_conversation
                .entry(row.try_get(0)?)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        conversations
            .iter()
            .map(|row| {
                let conversation = super::assistant::conversation_row(row)?;
                let said = by_conversation.remove(&conversation.id).unwrap_or_default();
                Ok((conversation, said))
            })
            .collect()
    }

    /// Events of these kinds at or after `since`, oldest first: printer, time, kind, body.
    pub async fn events_of_kinds(
        &self,
        kinds: &[&str],
        since: i64,
    ) -> Result<Vec<(String, i64, String, serde_json::Value)>, DbError> {
        let list = kinds.iter().map(|k| format!("'{}'", k.replace('\'', ""))).collect::<Vec<_>>();
        let sql = format!(
            "SELECT printer_id, at, kind, data FROM events WHERE kind IN ({}) AND at >= $1 \
             AND printer_id IS NOT NULL ORDER BY at, id",
            list.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get(3)?;
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                ))
            })
            .collect()
    }
}
