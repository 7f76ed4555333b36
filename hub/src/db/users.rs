//! Users, API tokens, dashboard sessions and the audit log.

use proto::UnixMillis;
use serde::Serialize;
use sqlx::Row;

use super::{Db, DbError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ApiToken)]
pub struct TokenRow {
    pub id: String,
    pub user_name: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub status: i64,
    pub detail: Option<String>,
}

impl Db {
    /// Adds a user; false when the name is taken.
    pub async fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a user's password hash and ends their sessions.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A user's own password change: the new hash, and every session of theirs ended but
    /// `keep_session` (the SHA-256 of the caller's own, when they called with one). API
    /// tokens stay. One transaction; `None` when there is no such user, else the number of
    /// sessions ended.
    pub async fn change_password(
        &self,
        name: &str,
        password_hash: &str,
        keep_session: Option<&str>,
    ) -> Result<Option<u64>, DbError> {
        let mut tx = self.begin_write().await?;
        if !set_password_hash(&mut tx, name, password_hash).await? {
            return Ok(None);
        }
        // No session id hashes to the empty string, so "" keeps none.
        let ended = sqlx::query("DELETE FROM sessions WHERE user_name = $1 AND id_sha256 <> $2")
            .bind(name)
            .bind(keep_session.unwrap_or(""))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Some(ended))
    }

    /// An admin's reset: the new hash, every session of the user ended and every API token
    /// of theirs revoked. One transaction; `None` when there is no such user, else (sessions
    /// ended, tokens revoked).
    pub async fn reset_password(
        &self,
        name: &str,
        password_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<(u64, u64)>, DbError> {
        let mut tx = self.begin_write().await?;
        if !set_password_hash(&mut tx, name, password_hash).await? {
            return Ok(None);
        }
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let tokens = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some((sessions, tokens)))
    }

    /// The user's password hash and role.
    pub async fn user_credentials(&self, name: &str) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT password_hash, role FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn user_role(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self.user_credentials(name).await?.map(|(_, role)| role))
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, DbError> {
        let rows = sqlx::query("SELECT name, role, created_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UserRow { name: r.try_get(0)?, role: r.try_get(1)?, created_at: r.try_get(2)? })
            })
            .collect()
    }

    pub async fn delete_user(&self, name: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(UnixMillis::now().0)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let done =
            sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn count_admins(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    // --- API tokens ----------------------------------------------------------------------

    pub async fn insert_api_token(
        &self,
        id: &str,
        secret_sha256: &str,
        user: &str,
        name: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, secret_sha256, user_name, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(secret_sha256)
        .bind(user)
        .bind(name)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token's secret hash and user, if it exists and is not revoked.
    pub async fn api_token(&self, id: &str) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query(
            "SELECT secret_sha256, user_name FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn touch_api_token(&self, id: &str, now: UnixMillis) -> Result<(), DbError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, user_name, name, created_at, last_used_at, revoked_at FROM api_tokens \
             ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    id: r.try_get(0)?,
                    user_name: r.try_get(1)?,
                    name: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    last_used_at: r.try_get(4)?,
                    revoked_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn revoke_api_token(&self, id: &str, now: UnixMillis) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // --- sessions ------------------------------------------------------------------------

    pub async fn insert_session(
        &self,
        id_sha256: &str,
        user: &str,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO sessions (id_sha256, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_sha256)
        .bind(user)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session's user, if the session exists and has not expired.
    pub async fn session_user(
        &self,
        id_sha256: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, DbError> {
        let row =
            sqlx::query("SELECT user_name FROM sessions WHERE id_sha256 = $1 AND expires_at > $2")
                .bind(id_sha256)
                .bind(now.0)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get(0).map_err(DbError::from)).transpose()
    }

    pub async fn delete_session(&self, id_sha256: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // --- audit ---------------------------------------------------------------------------

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        status: u16,
        detail: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, status, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now.0)
        .bind(actor)
        .bind(action)
        .bind(i64::from(status))
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, status, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    status: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }
}

/// Writes `name`'s new password hash inside `tx`; `false` when there is no such user.
async fn set_password_hash(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    password_hash: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
        .bind(password_hash)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
