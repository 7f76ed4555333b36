//! Print files: what was read from each (its bytes are on disk, `crate::files`), and its
//! pictures.

use sqlx::Row;

use super::{Db, DbError};
use proto::UnixMillis;

/// A stored file.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub md5: String,
    pub meta: printfile::PrintFile,
    pub uploaded_at: UnixMillis,
    pub uploaded_by: String,
}

const COLUMNS: &str = "id, name, size, md5, meta, uploaded_at, uploaded_by";

fn file_row(row: &sqlx::any::AnyRow) -> Result<FileRow, DbError> {
    let meta: String = row.try_get(4)?;
    Ok(FileRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        size: row.try_get::<i64, _>(2)? as u64,
        md5: row.try_get(3)?,
        meta: serde_json::from_str(&meta)
            .map_err(|e| DbError::Decode { what: "file metadata", detail: e.to_string() })?,
        uploaded_at: UnixMillis(row.try_get(5)?),
        uploaded_by: row.try_get(6)?,
    })
}

impl Db {
    /// Stores a file's row and pictures, once: `false` when a file with its id was there
    /// already (nothing is changed then).
    pub async fn insert_file(
        &self,
        file: &FileRow,
        thumbnails: &[printfile::Thumbnail],
    ) -> Result<bool, DbError> {
        let meta = serde_json::to_string(&file.meta)
            .map_err(|e| DbError::Decode { what: "file metadata", detail: e.to_string() })?;
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO files (id, name, size, md5, kind, meta, uploaded_at, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(file.id.as_str())
        .bind(file.name.as_str())
        .bind(file.size as i64)
        .bind(file.md5.as_str())
        .bind(match file.meta.kind {
            printfile::FileKind::Gcode3mf => "gcode_3mf",
            printfile::FileKind::Gcode => "gcode",
        })
        .bind(meta)
        .bind(file.uploaded_at.0)
        .bind(file.uploaded_by.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        for (n, picture) in thumbnails.iter().enumerate() {
            sqlx::query(
                "INSERT INTO file_thumbnails (file_id, n, mime, data) VALUES ($1, $2, $3, $4)",
            )
            .bind(file.id.as_str())
            .bind(n as i64)
            .bind(picture.mime.as_str())
            .bind(picture.data.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRow>, DbError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM files WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(file_row).transpose()
    }

    /// Files, newest first; `before` pages on from an `uploaded_at`.
    pub async fn files(&self, before: Option<i64>, limit: i64) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE uploaded_at < $1 ORDER BY uploaded_at DESC, id LIMIT $2"
        )))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_row).collect()
    }

    /// A file's picture: (mime, bytes).
    pub async fn file_thumbnail(
        &self,
        id: &str,
        n: i64,
    ) -> Result<Option<(String, Vec<u8>)>, DbError> {
        let row =
            sqlx::query("SELECT mime, data FROM file_thumbnails WHERE file_id = $1 AND n = $2")
                .bind(id)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Deletes a file's row and pictures; `false` when there was none.
    pub async fn delete_file(&self, id: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM file_thumbnails WHERE file_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted =
            sqlx::query("DELETE FROM files WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }
}
