//! Row mapping and the SQL shared by several operations (loading a task, writing it back,
//! appending a ledger event, idempotency keys).

use mc_domain::clock::{from_millis, to_millis};
use mc_domain::id::Uuid;
use mc_domain::ledger::{GENESIS_HASH, chain_hash, digest_of};
use mc_domain::{
    Doc, DocId, DocKind, Error, EventId, Kluster, KlusterId, Lease, LedgerEvent, Mission, MissionId, Priority, Result,
    ScopeStatus, Task, TaskId, TaskStatus, Timestamp,
};
use mc_store::{IdempotencyKey, WriteCtx};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::conn::db_err;

pub(crate) const TASK_COLUMNS: &str = "id, mission_id, kluster_id, title, description, status, priority, labels, \
     paths, depends_on, holder, claimed_at, lease_expires_at, fencing_token, created_by, created_at, updated_at";

pub(crate) const KLUSTER_COLUMNS: &str = "id, mission_id, name, description, status, created_at, updated_at";

pub(crate) const DOC_COLUMNS: &str =
    "id, mission_id, kluster_id, kind, title, body, paths, version, created_by, created_at, updated_at";

/// `columns` (a list like [`TASK_COLUMNS`]) qualified by a table alias.
pub(crate) fn prefixed(columns: &str, alias: &str) -> String {
    columns.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

fn parse_uuid<T: From<Uuid>>(s: &str, what: &str) -> rusqlite::Result<T> {
    Uuid::parse_str(s).map(T::from).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("bad {what} id: {e}").into())
    })
}

fn json_col<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn bad_enum(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{v}` in database").into(),
    )
}

pub(crate) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let status: String = r.get(5)?;
    let status = TaskStatus::parse(&status).ok_or_else(|| bad_enum("task status", &status))?;
    let priority: i64 = r.get(6)?;
    let holder: Option<String> = r.get(10)?;
    let claimed_at: Option<i64> = r.get(11)?;
    let expires: Option<i64> = r.get(12)?;
    let fencing_token: i64 = r.get(13)?;
    let lease = match (holder, expires) {
        (Some(holder), Some(exp)) => Some(Lease {
            holder,
            claimed_at: from_millis(claimed_at.unwrap_or(exp)),
            expires_at: from_millis(exp),
            fencing_token: fencing_token as u64,
        }),
        _ => None,
    };
    Ok(Task {
        id: parse_uuid(&r.get::<_, String>(0)?, "task")?,
        mission_id: parse_uuid(&r.get::<_, String>(1)?, "mission")?,
        kluster_id: parse_uuid(&r.get::<_, String>(2)?, "kluster")?,
        title: r.get(3)?,
        description: r.get(4)?,
        status,
        priority: Priority::new(priority).map_err(|_| bad_enum("priority", &priority.to_string()))?,
        labels: json_col(&r.get::<_, String>(7)?)?,
        paths: json_col(&r.get::<_, String>(8)?)?,
        depends_on: json_col(&r.get::<_, String>(9)?)?,
        lease,
        fencing_token: fencing_token as u64,
        created_by: r.get(14)?,
        created_at: from_millis(r.get(15)?),
        updated_at: from_millis(r.get(16)?),
    })
}

pub(crate) fn mission_from_row(r: &Row<'_>) -> rusqlite::Result<Mission> {
    let status: String = r.get(3)?;
    Ok(Mission {
        id: parse_uuid(&r.get::<_, String>(0)?, "mission")?,
        name: r.get(1)?,
        description: r.get(2)?,
        status: ScopeStatus::parse(&status).ok_or_else(|| bad_enum("status", &status))?,
        created_at: from_millis(r.get(4)?),
        updated_at: from_millis(r.get(5)?),
    })
}

pub(crate) fn kluster_from_row(r: &Row<'_>) -> rusqlite::Result<Kluster> {
    let status: String = r.get(4)?;
    Ok(Kluster {
        id: parse_uuid(&r.get::<_, String>(0)?, "kluster")?,
        mission_id: parse_uuid(&r.get::<_, String>(1)?, "mission")?,
        name: r.get(2)?,
        description: r.get(3)?,
        status: ScopeStatus::parse(&status).ok_or_else(|| bad_enum("status", &status))?,
        created_at: from_millis(r.get(5)?),
        updated_at: from_millis(r.get(6)?),
    })
}

pub(crate) fn doc_from_row(r: &Row<'_>) -> rusqlite::Result<Doc> {
    let kind: String = r.get(3)?;
    let kluster: Option<String> = r.get(2)?;
    let version: i64 = r.get(7)?;
    Ok(Doc {
        id: parse_uuid(&r.get::<_, String>(0)?, "doc")?,
        mission_id: parse_uuid(&r.get::<_, String>(1)?, "mission")?,
        kluster_id: kluster.map(|k| parse_uuid(&k, "kluster")).transpose()?,
        kind: DocKind::parse(&kind).ok_or_else(|| bad_enum("doc kind", &kind))?,
        title: r.get(4)?,
        body: r.get(5)?,
        paths: json_col(&r.get::<_, String>(6)?)?,
        version: u64::try_from(version).map_err(|_| bad_enum("doc version", &version.to_string()))?,
        created_by: r.get(8)?,
        created_at: from_millis(r.get(9)?),
        updated_at: from_millis(r.get(10)?),
    })
}

pub(crate) fn ledger_from_row(r: &Row<'_>) -> rusqlite::Result<LedgerEvent> {
    Ok(LedgerEvent {
        seq: r.get(0)?,
        id: parse_uuid::<EventId>(&r.get::<_, String>(1)?, "event")?,
        at: from_millis(r.get(2)?),
        actor: r.get(3)?,
        action: r.get(4)?,
        entity_kind: r.get(5)?,
        entity_id: r.get(6)?,
        request_id: r.get(7)?,
        state_digest: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

pub(crate) const LEDGER_COLUMNS: &str =
    "seq, id, at, actor, action, entity_kind, entity_id, request_id, state_digest, prev_hash, hash";

pub(crate) fn load_task(conn: &Connection, id: TaskId) -> Result<Task> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .map_err(db_err)?
        .query_row([id.to_string()], task_from_row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("task", id))
}

pub(crate) fn load_mission(conn: &Connection, id: MissionId) -> Result<Mission> {
    conn.prepare_cached("SELECT id, name, description, status, created_at, updated_at FROM missions WHERE id = ?1")
        .map_err(db_err)?
        .query_row([id.to_string()], mission_from_row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("mission", id))
}

pub(crate) fn load_kluster(conn: &Connection, id: KlusterId) -> Result<Kluster> {
    conn.prepare_cached(&format!("SELECT {KLUSTER_COLUMNS} FROM klusters WHERE id = ?1"))
        .map_err(db_err)?
        .query_row([id.to_string()], kluster_from_row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("kluster", id))
}

pub(crate) fn load_doc(conn: &Connection, id: DocId) -> Result<Doc> {
    conn.prepare_cached(&format!("SELECT {DOC_COLUMNS} FROM docs WHERE id = ?1"))
        .map_err(db_err)?
        .query_row([id.to_string()], doc_from_row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("doc", id))
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))
}

fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(to_millis)
}

/// Inserts a new task row with its dependency and label index rows.
pub(crate) fn insert_task(conn: &Connection, t: &Task) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))
    .map_err(db_err)?
    .execute(params![
        t.id.to_string(),
        t.mission_id.to_string(),
        t.kluster_id.to_string(),
        t.title,
        t.description,
        t.status.as_str(),
        i64::from(t.priority),
        to_json(&t.labels)?,
        to_json(&t.paths)?,
        to_json(&t.depends_on)?,
        t.lease.as_ref().map(|l| l.holder.as_str()),
        opt_ms(t.lease.as_ref().map(|l| l.claimed_at)),
        opt_ms(t.lease.as_ref().map(|l| l.expires_at)),
        t.fencing_token as i64,
        t.created_by,
        to_millis(t.created_at),
        to_millis(t.updated_at),
    ])
    .map_err(db_err)?;
    write_deps(conn, t)?;
    write_labels(conn, t)?;
    crate::search::index_new(conn, t)
}

/// Inserts a new doc row and indexes it for search.
pub(crate) fn insert_doc(conn: &Connection, d: &Doc) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO docs ({DOC_COLUMNS}, text_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .map_err(db_err)?
    .execute(params![
        d.id.to_string(),
        d.mission_id.to_string(),
        d.kluster_id.map(|k| k.to_string()),
        d.kind.as_str(),
        d.title,
        d.body,
        to_json(&d.paths)?,
        version_col(d.version)?,
        d.created_by,
        to_millis(d.created_at),
        to_millis(d.updated_at),
        crate::search::text_hash(&d.embedding_text()),
    ])
    .map_err(db_err)?;
    crate::scan_search::index(conn, d)
}

/// Writes back the mutable columns of a doc and re-indexes it.
pub(crate) fn save_doc(conn: &Connection, d: &Doc) -> Result<()> {
    conn.prepare_cached(
        "UPDATE docs SET title = ?2, body = ?3, paths = ?4, version = ?5, updated_at = ?6, text_hash = ?7 WHERE id = ?1",
    )
    .map_err(db_err)?
    .execute(params![
        d.id.to_string(),
        d.title,
        d.body,
        to_json(&d.paths)?,
        version_col(d.version)?,
        to_millis(d.updated_at),
        crate::search::text_hash(&d.embedding_text())
    ])
    .map_err(db_err)?;
    crate::scan_search::index(conn, d)
}

fn version_col(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Internal(format!("doc version {v} out of range")))
}

/// Writes back every mutable column of a task.
pub(crate) fn save_task(conn: &Connection, t: &Task, deps_changed: bool, labels_changed: bool) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET title = ?2, description = ?3, status = ?4, priority = ?5, labels = ?6, paths = ?7, \
         depends_on = ?8, holder = ?9, claimed_at = ?10, lease_expires_at = ?11, fencing_token = ?12, \
         updated_at = ?13 WHERE id = ?1",
    )
    .map_err(db_err)?
    .execute(params![
        t.id.to_string(),
        t.title,
        t.description,
        t.status.as_str(),
        i64::from(t.priority),
        to_json(&t.labels)?,
        to_json(&t.paths)?,
        to_json(&t.depends_on)?,
        t.lease.as_ref().map(|l| l.holder.as_str()),
        opt_ms(t.lease.as_ref().map(|l| l.claimed_at)),
        opt_ms(t.lease.as_ref().map(|l| l.expires_at)),
        t.fencing_token as i64,
        to_millis(t.updated_at),
    ])
    .map_err(db_err)?;
    if deps_changed {
        conn.prepare_cached("DELETE FROM task_deps WHERE task_id = ?1")
            .map_err(db_err)?
            .execute([t.id.to_string()])
            .map_err(db_err)?;
        write_deps(conn, t)?;
    }
    if labels_changed {
        conn.prepare_cached("DELETE FROM task_labels WHERE task_id = ?1")
            .map_err(db_err)?
            .execute([t.id.to_string()])
            .map_err(db_err)?;
        write_labels(conn, t)?;
    }
    Ok(())
}

fn write_deps(conn: &Connection, t: &Task) -> Result<()> {
    let mut st = conn.prepare_cached("INSERT INTO task_deps (task_id, depends_on) VALUES (?1, ?2)").map_err(db_err)?;
    for d in &t.depends_on {
        st.execute([t.id.to_string(), d.to_string()]).map_err(db_err)?;
    }
    Ok(())
}

fn write_labels(conn: &Connection, t: &Task) -> Result<()> {
    let mut st = conn.prepare_cached("INSERT INTO task_labels (label, task_id) VALUES (?1, ?2)").map_err(db_err)?;
    for l in &t.labels {
        st.execute([l.clone(), t.id.to_string()]).map_err(db_err)?;
    }
    Ok(())
}

/// What `t` depends on, by id.
pub(crate) fn deps_of(conn: &Connection, t: TaskId) -> Result<Vec<TaskId>> {
    let mut st = conn.prepare_cached("SELECT depends_on FROM task_deps WHERE task_id = ?1").map_err(db_err)?;
    let rows =
        st.query_map([t.to_string()], |r| parse_uuid::<TaskId>(&r.get::<_, String>(0)?, "task")).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

/// Dependencies of `t` that are not done yet, as (id, status).
pub(crate) fn unfinished_deps(conn: &Connection, t: TaskId) -> Result<Vec<(String, String)>> {
    let mut st = conn
        .prepare_cached(
            "SELECT u.id, u.status FROM task_deps d JOIN tasks u ON u.id = d.depends_on \
             WHERE d.task_id = ?1 AND u.status <> 'done'",
        )
        .map_err(db_err)?;
    let rows = st.query_map([t.to_string()], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

/// Appends a ledger event for `entity`'s new state, chained to the previous event.
pub(crate) fn append_ledger<T: Serialize>(
    conn: &Connection,
    ctx: &WriteCtx,
    action: &str,
    entity_kind: &'static str,
    entity_id: &str,
    state: &T,
    now: Timestamp,
) -> Result<()> {
    let prev: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .map_err(db_err)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let id = EventId::new();
    let actor = ctx.actor.ledger_name();
    let action = match ctx.action_suffix {
        Some(suffix) => format!("{action}.{suffix}"),
        None => action.to_owned(),
    };
    let action = action.as_str();
    let digest = digest_of(state);
    let hash = chain_hash(
        &prev_hash,
        seq,
        &id,
        now,
        &actor,
        action,
        entity_kind,
        entity_id,
        ctx.request_id.as_deref(),
        &digest,
    );
    conn.prepare_cached(&format!(
        "INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .map_err(db_err)?
    .execute(params![
        seq,
        id.to_string(),
        to_millis(now),
        actor,
        action,
        entity_kind,
        entity_id,
        ctx.request_id,
        digest,
        prev_hash,
        hash
    ])
    .map_err(db_err)?;
    Ok(())
}

/// Looks up an idempotency key. `Ok(Some(id))` = replay that entity; a key reused for another
/// request is refused.
pub(crate) fn idempotency_lookup(
    conn: &Connection,
    key: &IdempotencyKey,
    kind: &str,
) -> Result<Option<(String, Option<serde_json::Value>)>> {
    let row: Option<(String, String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT fingerprint, entity_kind, entity_id, extra FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
        )
        .map_err(db_err)?
        .query_row([&key.scope, &key.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
        .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some((fp, k, id, extra)) if fp == key.fingerprint && k == kind => {
            Ok(Some((id, extra.and_then(|e| serde_json::from_str(&e).ok()))))
        }
        Some(_) => Err(Error::conflict(
            "idempotency_key_reused",
            format!("Idempotency-Key `{}` was already used for a different request; use a new key", key.key),
            serde_json::json!({ "key": key.key }),
        )),
    }
}

pub(crate) fn idempotency_record(
    conn: &Connection,
    ctx: &WriteCtx,
    kind: &str,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    let Some(key) = &ctx.idempotency else { return Ok(()) };
    let extra = ctx.replay_extra.as_ref().map(|e| e.to_string());
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, entity_kind, entity_id, created_at, extra) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db_err)?
    .execute(params![key.scope, key.key, key.fingerprint, kind, id, to_millis(now), extra])
    .map_err(db_err)?;
    Ok(())
}
