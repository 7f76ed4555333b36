//! The login limiter's failures as replicas share them (`login_failures`, migration 0020):
//! the same GCRA as `api::limiter`'s tables, on the database's clock. Only failures are
//! written (an attempt's charge stays in the replica's memory until its password is checked),
//! so concurrent attempts on different replicas can each pass once before the first failure
//! is stored: the shared bound is the allowance plus what is in flight at that moment.

use super::{Db, DbError};

/// A key's state as a check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBlock {
    /// How long until the key allows another attempt, ms.
    pub wait_ms: i64,
    /// The first refusal since the key's last failure (to be audited).
    pub first: bool,
}

impl Db {
    /// The longest block among `keys` (each with its tolerance: how far ahead its `tat` may
    /// lie while it is still allowed), or `None` when every key allows an attempt. A block
    /// marks its key reported, so only the first refusal of an episode says `first`.
    pub async fn login_blocked(
        &self,
        keys: &[(&str, i64)],
    ) -> Result<Option<SharedBlock>, DbError> {
        let now = self.now_sql();
        let mut block: Option<SharedBlock> = None;
        for &(key, tolerance_ms) in keys {
            let sql = format!("SELECT tat - {now} FROM login_failures WHERE key = $1");
            let ahead: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(key)
                .fetch_optional(self.pool())
                .await?;
            let Some(ahead) = ahead.filter(|ahead| *ahead > tolerance_ms) else { continue };
            let first = sqlx::query(
                "UPDATE login_failures SET reported = 1 WHERE key = $1 AND reported = 0",
            )
            .bind(key)
            .execute(self.pool())
            .await?
            .rows_affected()
                == 1;
            let wait_ms = ahead - tolerance_ms;
            block = Some(match block {
                Some(b) => SharedBlock { wait_ms: b.wait_ms.max(wait_ms), first: b.first || first },
                None => SharedBlock { wait_ms, first },
            });
        }
        Ok(block)
    }

    /// A failed password check: each key's `tat` moves its interval later (from now, if it
    /// had passed).
    pub async fn login_failed(&self, keys: &[(&str, i64)]) -> Result<(), DbError> {
        let now = self.now_sql();
        let sql = format!(
            "INSERT INTO login_failures (key, tat, reported) VALUES ($1, {now} + $2, 0) \
             ON CONFLICT (key) DO UPDATE SET reported = 0, tat = $2 + CASE \
             WHEN login_failures.tat > {now} THEN login_failures.tat ELSE {now} END"
        );
        for &(key, interval_ms) in keys {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(key)
                .bind(interval_ms)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Forgets a key's failures (a right password for a name, an admin's reset).
    pub async fn login_forget(&self, key: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes the keys whose time has passed (they allow as much as no row): how many.
    pub async fn prune_login_failures(&self) -> Result<u64, DbError> {
        let sql = format!("DELETE FROM login_failures WHERE tat < {}", self.now_sql());
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.pool()).await?.rows_affected())
    }
}
