//! Schema migrations, embedded in the binary and applied in order at open, each in its own
//! transaction, under a session advisory lock so that servers starting together migrate once.

use mc_domain::{Error, Result};
use sqlx::{PgConnection, PgPool};

use crate::rows::db_err;

/// (version, name, SQL) in ascending order. Never edit a released migration; add a new one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "search", include_str!("../migrations/0002_search.sql")),
    (3, "kluster_search", include_str!("../migrations/0003_kluster_search.sql")),
    (4, "search_tuning", include_str!("../migrations/0004_search_tuning.sql")),
    (5, "docs", include_str!("../migrations/0005_docs.sql")),
    (6, "text_marks", include_str!("../migrations/0006_text_marks.sql")),
    (7, "doc_vector_index", include_str!("../migrations/0007_doc_vector_index.sql")),
];

/// Key of the advisory lock held while migrating ("mc-migr" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_632d_6d69_6772;

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Current schema version of a database (0 when empty).
pub async fn current_version(c: &mut PgConnection) -> Result<i64> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)?;
    if !exists {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::bigint FROM schema_migrations")
        .fetch_one(c)
        .await
        .map_err(db_err)
}

/// Applies pending migrations; returns the versions applied.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>> {
    let mut c = pool.acquire().await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *c).await.map_err(db_err)?;
    let result = apply_pending(&mut c).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *c).await;
    if let Err(e) = unlocked {
        // the lock goes with the session; make sure this connection is not reused holding it
        tracing::warn!(error = %e, "cannot release the migration lock; closing the connection");
        drop(c.detach());
    }
    result
}

async fn apply_pending(c: &mut PgConnection) -> Result<Vec<i64>> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    let current = current_version(c).await?;
    if current > latest_version() {
        return Err(Error::Internal(format!(
            "the database is at schema version {current}, newer than this build knows ({}); upgrade mc",
            latest_version()
        )));
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(db_err)?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Internal(format!("migration {version} ({name}) failed: {e}")))?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, name, "applied migration");
        applied.push(version);
    }
    Ok(applied)
}
