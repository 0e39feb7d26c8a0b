//! Schema migrations, embedded in the binary and applied in order, each in its own transaction.

use mc_domain::{Error, Result, clock::to_millis};
use rusqlite::{Connection, OptionalExtension};

use crate::conn::db_err;

/// (version, name, SQL) in ascending order. Never edit a released migration; add a new one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "search", include_str!("../migrations/0002_search.sql")),
    (3, "kluster_search", include_str!("../migrations/0003_kluster_search.sql")),
    (4, "search_text_hash", include_str!("../migrations/0004_search_text_hash.sql")),
    (5, "docs", include_str!("../migrations/0005_docs.sql")),
    (6, "doc_vector_scan", include_str!("../migrations/0006_doc_vector_scan.sql")),
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Current schema version of a database (0 when empty).
pub fn current_version(conn: &Connection) -> Result<i64> {
    let has_table: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'", [], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    if has_table.is_none() {
        return Ok(0);
    }
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(db_err)
}

/// Applies pending migrations; returns the versions applied.
pub fn migrate(conn: &mut Connection) -> Result<Vec<i64>> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .map_err(db_err)?;
    let current = current_version(conn)?;
    if current > latest_version() {
        return Err(Error::Internal(format!(
            "the database is at schema version {current}, newer than this build knows ({}); \
             upgrade mc",
            latest_version()
        )));
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(|e| Error::Internal(format!("migration {version} ({name}) failed: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, to_millis(chrono_now())],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version, name, "applied migration");
        applied.push(version);
    }
    Ok(applied)
}

fn chrono_now() -> mc_domain::Timestamp {
    use mc_domain::Clock;
    mc_domain::SystemClock.now()
}
