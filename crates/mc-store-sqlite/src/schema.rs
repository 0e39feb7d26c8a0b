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
    (7, "inline_vectors", include_str!("../migrations/0007_inline_vectors.sql")),
    (8, "text_marks", include_str!("../migrations/0008_text_marks.sql")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema 6 with doc and kluster vectors keeps them through migration 7, whose
    /// tables keep a 384-dimension vector in the row's own page and still take upserts.
    #[test]
    fn vectors_survive_the_move_to_rowid_tables() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("PRAGMA foreign_keys = OFF").expect("pragma");
        migrate(&mut conn).expect("schema");
        // back to schema 6: the tables as migration 6 left them
        conn.execute_batch(
            "DROP TABLE doc_embeddings; DROP TABLE kluster_embeddings; DELETE FROM schema_migrations WHERE version >= 7;
             DROP TRIGGER search_docs_mark_new; DROP TRIGGER search_docs_mark_changed;
             DROP INDEX search_docs_by_text_seq; ALTER TABLE search_docs DROP COLUMN text_seq;
             CREATE TABLE doc_embeddings (doc_id TEXT NOT NULL, model TEXT NOT NULL, text_hash TEXT NOT NULL,
                 dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (doc_id, model)) WITHOUT ROWID;
             CREATE TABLE kluster_embeddings (kluster_id TEXT NOT NULL, model TEXT NOT NULL, text_hash TEXT NOT NULL,
                 dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (kluster_id, model)) WITHOUT ROWID;",
        )
        .expect("schema 6");
        assert_eq!(current_version(&conn).expect("version"), 6);
        let vector: Vec<u8> = (0..384 * 4).map(|i| (i % 251) as u8).collect();
        for (table, key) in [("doc_embeddings", "doc_id"), ("kluster_embeddings", "kluster_id")] {
            for (id, model) in [("a", "m1"), ("a", "m2"), ("b", "m1")] {
                conn.execute(
                    &format!(
                        "INSERT INTO {table} ({key}, model, text_hash, dim, vector) VALUES (?1, ?2, 'h', 384, ?3)"
                    ),
                    rusqlite::params![id, model, vector],
                )
                .expect("vector at schema 6");
            }
        }

        assert_eq!(migrate(&mut conn).expect("migrate"), vec![7, 8]);
        for (table, key) in [("doc_embeddings", "doc_id"), ("kluster_embeddings", "kluster_id")] {
            let ddl: String =
                conn.query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [table], |r| r.get(0)).expect("ddl");
            assert!(!ddl.contains("WITHOUT ROWID"), "{table}: {ddl}");
            let rows: Vec<(String, String, Vec<u8>)> = conn
                .prepare(&format!("SELECT {key}, model, vector FROM {table} ORDER BY {key}, model"))
                .expect("select")
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("rows")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            let keys: Vec<(&str, &str)> = rows.iter().map(|(k, m, _)| (k.as_str(), m.as_str())).collect();
            assert_eq!(keys, [("a", "m1"), ("a", "m2"), ("b", "m1")], "{table}");
            assert!(rows.iter().all(|(_, _, v)| *v == vector), "{table}: vectors unchanged");
            // the upsert the store runs still finds its conflict target
            conn.execute(
                &format!(
                    "INSERT INTO {table} ({key}, model, text_hash, dim, vector) VALUES ('a', 'm1', 'h2', 1, x'00') \
                     ON CONFLICT ({key}, model) DO UPDATE SET text_hash = excluded.text_hash"
                ),
                [],
            )
            .expect("upsert");
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count");
            assert_eq!(n, 3, "{table}: an upsert replaces, it does not add");
        }
    }
}
