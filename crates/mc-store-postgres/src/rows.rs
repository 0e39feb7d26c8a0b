//! Row mapping and the SQL shared by several operations: loading and locking a task, writing it
//! back, appending ledger events to the chain, idempotency keys, driver error translation.

use mc_domain::clock::{from_millis, to_millis};
use mc_domain::id::Uuid;
use mc_domain::ledger::{chain_hash, digest_of};
use mc_domain::{
    Error, EventId, Kluster, KlusterId, Lease, LedgerEvent, Mission, MissionId, Priority, Result, ScopeStatus, Task,
    TaskId, TaskStatus, Timestamp,
};
use mc_store::{IdempotencyKey, WriteCtx};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

/// The columns of a task row, in the order `task_from_row` reads them.
macro_rules! task_columns {
    () => {
        "id, mission_id, kluster_id, title, description, status, priority, labels, paths, depends_on, holder, \
         claimed_at, lease_expires_at, fencing_token, created_by, created_at, updated_at"
    };
}
/// The same columns of `tasks t`.
macro_rules! t_task_columns {
    () => {
        "t.id, t.mission_id, t.kluster_id, t.title, t.description, t.status, t.priority, t.labels, t.paths, \
         t.depends_on, t.holder, t.claimed_at, t.lease_expires_at, t.fencing_token, t.created_by, t.created_at, \
         t.updated_at"
    };
}
pub(crate) use {t_task_columns, task_columns};

pub(crate) const MISSION_COLUMNS: &str = "id, name, description, status, created_at, updated_at";

pub(crate) const KLUSTER_COLUMNS: &str = "id, mission_id, name, description, status, created_at, updated_at";

pub(crate) const LEDGER_COLUMNS: &str =
    "seq, id, at, actor, action, entity_kind, entity_id, request_id, state_digest, prev_hash, hash";

/// Translates a driver error at the boundary.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // serialization failure, deadlock, lock timeout, query cancelled: the client may retry
            Some("40001" | "40P01" | "55P03" | "57014") => Error::Unavailable(format!("database busy: {d}")),
            // admin shutdown, crash shutdown, cannot connect now, too many connections
            Some("57P01" | "57P02" | "57P03" | "53300") => Error::Unavailable(d.to_string()),
            _ => Error::Internal(format!("database error: {d}")),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::Unavailable(format!("database unavailable: {e}")),
        _ => Error::Internal(format!("database error: {e}")),
    }
}

pub(crate) fn bad(what: &str, v: impl std::fmt::Display) -> Error {
    Error::Internal(format!("unknown {what} `{v}` in database"))
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    r: &'r PgRow,
    i: usize,
) -> Result<T> {
    r.try_get(i).map_err(db_err)
}

/// Stored times hold whole milliseconds; this keeps a value read back equal to the one written.
pub(crate) fn ms(t: Timestamp) -> Timestamp {
    from_millis(to_millis(t))
}

/// Maps a row that starts with `task_columns!()`.
pub(crate) fn task_from_row(r: &PgRow) -> Result<Task> {
    let status: String = get(r, 5)?;
    let status = TaskStatus::parse(&status).ok_or_else(|| bad("task status", &status))?;
    let priority: i16 = get(r, 6)?;
    let holder: Option<String> = get(r, 10)?;
    let claimed_at: Option<Timestamp> = get(r, 11)?;
    let expires: Option<Timestamp> = get(r, 12)?;
    let fencing_token: i64 = get(r, 13)?;
    let lease = match (holder, expires) {
        (Some(holder), Some(exp)) => Some(Lease {
            holder,
            claimed_at: claimed_at.unwrap_or(exp),
            expires_at: exp,
            fencing_token: fencing_token as u64,
        }),
        _ => None,
    };
    let deps: Vec<Uuid> = get(r, 9)?;
    Ok(Task {
        id: TaskId::from(get::<Uuid>(r, 0)?),
        mission_id: MissionId::from(get::<Uuid>(r, 1)?),
        kluster_id: KlusterId::from(get::<Uuid>(r, 2)?),
        title: get(r, 3)?,
        description: get(r, 4)?,
        status,
        priority: Priority::new(i64::from(priority)).map_err(|_| bad("priority", priority))?,
        labels: get(r, 7)?,
        paths: get(r, 8)?,
        depends_on: deps.into_iter().map(TaskId::from).collect(),
        lease,
        fencing_token: fencing_token as u64,
        created_by: get(r, 14)?,
        created_at: get(r, 15)?,
        updated_at: get(r, 16)?,
    })
}

pub(crate) fn mission_from_row(r: &PgRow) -> Result<Mission> {
    let status: String = get(r, 3)?;
    Ok(Mission {
        id: MissionId::from(get::<Uuid>(r, 0)?),
        name: get(r, 1)?,
        description: get(r, 2)?,
        status: ScopeStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        created_at: get(r, 4)?,
        updated_at: get(r, 5)?,
    })
}

pub(crate) fn kluster_from_row(r: &PgRow) -> Result<Kluster> {
    let status: String = get(r, 4)?;
    Ok(Kluster {
        id: KlusterId::from(get::<Uuid>(r, 0)?),
        mission_id: MissionId::from(get::<Uuid>(r, 1)?),
        name: get(r, 2)?,
        description: get(r, 3)?,
        status: ScopeStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        created_at: get(r, 5)?,
        updated_at: get(r, 6)?,
    })
}

pub(crate) fn ledger_from_row(r: &PgRow) -> Result<LedgerEvent> {
    Ok(LedgerEvent {
        seq: get(r, 0)?,
        id: EventId::from(get::<Uuid>(r, 1)?),
        at: get(r, 2)?,
        actor: get(r, 3)?,
        action: get(r, 4)?,
        entity_kind: get(r, 5)?,
        entity_id: get(r, 6)?,
        request_id: get(r, 7)?,
        state_digest: get(r, 8)?,
        prev_hash: get(r, 9)?,
        hash: get(r, 10)?,
    })
}

/// Loads a task; `lock` takes its row lock (`FOR NO KEY UPDATE`) until the transaction ends.
pub(crate) async fn load_task(c: &mut PgConnection, id: TaskId, lock: bool) -> Result<Task> {
    let sql = if lock {
        concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1 FOR NO KEY UPDATE")
    } else {
        concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1")
    };
    let row = sqlx::query(sql).bind(id.as_uuid()).fetch_optional(c).await.map_err(db_err)?;
    row.as_ref().map(task_from_row).transpose()?.ok_or_else(|| Error::not_found("task", id))
}

/// Loads a mission; `lock` takes its row lock until the transaction ends.
pub(crate) async fn load_mission(c: &mut PgConnection, id: MissionId, lock: Lock) -> Result<Mission> {
    let sql = format!("SELECT {MISSION_COLUMNS} FROM missions WHERE id = $1 {}", lock.sql());
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_uuid()).fetch_optional(c).await.map_err(db_err)?;
    row.as_ref().map(mission_from_row).transpose()?.ok_or_else(|| Error::not_found("mission", id))
}

/// Loads a kluster; `lock` takes its row lock until the transaction ends.
pub(crate) async fn load_kluster(c: &mut PgConnection, id: KlusterId, lock: Lock) -> Result<Kluster> {
    let sql = format!("SELECT {KLUSTER_COLUMNS} FROM klusters WHERE id = $1 {}", lock.sql());
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_uuid()).fetch_optional(c).await.map_err(db_err)?;
    row.as_ref().map(kluster_from_row).transpose()?.ok_or_else(|| Error::not_found("kluster", id))
}

/// Row locks taken when loading a mission or kluster.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    None,
    /// Keeps the row from changing (an archive) while children are created under it.
    Share,
    /// For changing the row itself.
    Update,
}

impl Lock {
    fn sql(self) -> &'static str {
        match self {
            Lock::None => "",
            Lock::Share => "FOR SHARE",
            Lock::Update => "FOR NO KEY UPDATE",
        }
    }
}

fn lease_parts(t: &Task) -> (Option<&str>, Option<Timestamp>, Option<Timestamp>) {
    match &t.lease {
        Some(l) => (Some(l.holder.as_str()), Some(ms(l.claimed_at)), Some(ms(l.expires_at))),
        None => (None, None, None),
    }
}

fn uuids(ids: &[TaskId]) -> Vec<Uuid> {
    ids.iter().map(TaskId::as_uuid).collect()
}

/// Inserts a new task row with its dependency rows and its search document.
pub(crate) async fn insert_task(c: &mut PgConnection, t: &Task) -> Result<()> {
    let (holder, claimed_at, expires) = lease_parts(t);
    sqlx::query(
        "INSERT INTO tasks (id, mission_id, kluster_id, title, description, status, priority, labels, paths, \
         depends_on, holder, claimed_at, lease_expires_at, fencing_token, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(t.id.as_uuid())
    .bind(t.mission_id.as_uuid())
    .bind(t.kluster_id.as_uuid())
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.status.as_str())
    .bind(i16::from(t.priority.get()))
    .bind(&t.labels)
    .bind(&t.paths)
    .bind(uuids(&t.depends_on))
    .bind(holder)
    .bind(claimed_at)
    .bind(expires)
    .bind(t.fencing_token as i64)
    .bind(&t.created_by)
    .bind(ms(t.created_at))
    .bind(ms(t.updated_at))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    write_deps(c, t).await?;
    crate::search::index_new(c, t).await
}

/// Writes back every mutable column of a task (and its dependency rows when they changed).
pub(crate) async fn save_task(c: &mut PgConnection, t: &Task, deps_changed: bool) -> Result<()> {
    let (holder, claimed_at, expires) = lease_parts(t);
    sqlx::query(
        "UPDATE tasks SET title = $2, description = $3, status = $4, priority = $5, labels = $6, paths = $7, \
         depends_on = $8, holder = $9, claimed_at = $10, lease_expires_at = $11, fencing_token = $12, \
         updated_at = $13 WHERE id = $1",
    )
    .bind(t.id.as_uuid())
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.status.as_str())
    .bind(i16::from(t.priority.get()))
    .bind(&t.labels)
    .bind(&t.paths)
    .bind(uuids(&t.depends_on))
    .bind(holder)
    .bind(claimed_at)
    .bind(expires)
    .bind(t.fencing_token as i64)
    .bind(ms(t.updated_at))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    if deps_changed {
        sqlx::query("DELETE FROM task_deps WHERE task_id = $1")
            .bind(t.id.as_uuid())
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        write_deps(c, t).await?;
    }
    Ok(())
}

async fn write_deps(c: &mut PgConnection, t: &Task) -> Result<()> {
    if t.depends_on.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO task_deps (task_id, depends_on) SELECT $1, d FROM unnest($2::uuid[]) AS d")
        .bind(t.id.as_uuid())
        .bind(uuids(&t.depends_on))
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Dependencies of `t` that are not done yet, as (id, status).
pub(crate) async fn unfinished_deps(c: &mut PgConnection, t: TaskId) -> Result<Vec<(String, String)>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT u.id, u.status FROM task_deps d JOIN tasks u ON u.id = d.depends_on \
         WHERE d.task_id = $1 AND u.status <> 'done' ORDER BY u.id",
    )
    .bind(t.as_uuid())
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(|(id, st)| (id.to_string(), st)).collect())
}

/// One ledger event to append: what changed, on which entity, and its new state's digest.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    pub actor: String,
    pub action: String,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub request_id: Option<String>,
    pub state_digest: String,
}

impl PendingEvent {
    pub(crate) fn new<T: Serialize>(
        ctx: &WriteCtx,
        action: &str,
        entity_kind: &'static str,
        entity_id: String,
        state: &T,
    ) -> Self {
        let action = match ctx.action_suffix {
            Some(suffix) => format!("{action}.{suffix}"),
            None => action.to_owned(),
        };
        Self {
            actor: ctx.actor.ledger_name(),
            action,
            entity_kind,
            entity_id,
            request_id: ctx.request_id.clone(),
            state_digest: digest_of(state),
        }
    }
}

/// The events of one append, column by column (inserted with one `unnest`).
#[derive(Default)]
struct EventColumns {
    seq: Vec<i64>,
    id: Vec<Uuid>,
    actor: Vec<String>,
    action: Vec<String>,
    entity_kind: Vec<String>,
    entity_id: Vec<String>,
    request_id: Vec<Option<String>>,
    state_digest: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

/// Appends one event for `entity`'s new state (see [`append_events`]).
pub(crate) async fn append_ledger<T: Serialize>(
    c: &mut PgConnection,
    ctx: &WriteCtx,
    action: &str,
    entity_kind: &'static str,
    entity_id: &str,
    state: &T,
    now: Timestamp,
) -> Result<()> {
    append_events(c, vec![PendingEvent::new(ctx, action, entity_kind, entity_id.to_owned(), state)], now).await
}

/// Appends events to the chain. The chain head row stays locked until the transaction ends, so
/// concurrent writers append one after another. Call it last in a transaction (after every
/// other row lock is taken): nothing waits for a lock while holding the head.
pub(crate) async fn append_events(c: &mut PgConnection, events: Vec<PendingEvent>, now: Timestamp) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut seq, mut prev): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE only_row FOR UPDATE")
            .fetch_one(&mut *c)
            .await
            .map_err(db_err)?;
    let now = ms(now);
    let n = events.len();
    let mut cols = EventColumns::default();
    for e in events {
        seq += 1;
        let id = EventId::new();
        let hash = chain_hash(
            &prev,
            seq,
            &id,
            now,
            &e.actor,
            &e.action,
            e.entity_kind,
            &e.entity_id,
            e.request_id.as_deref(),
            &e.state_digest,
        );
        cols.seq.push(seq);
        cols.id.push(id.as_uuid());
        cols.actor.push(e.actor);
        cols.action.push(e.action);
        cols.entity_kind.push(e.entity_kind.to_owned());
        cols.entity_id.push(e.entity_id);
        cols.request_id.push(e.request_id);
        cols.state_digest.push(e.state_digest);
        cols.prev_hash.push(std::mem::replace(&mut prev, hash.clone()));
        cols.hash.push(hash);
    }
    let inserted = sqlx::query(
        "WITH head AS (UPDATE ledger_head SET seq = $12, hash = $13 WHERE only_row) \
         INSERT INTO ledger (seq, id, at, actor, action, entity_kind, entity_id, request_id, state_digest, \
         prev_hash, hash) \
         SELECT s, i, $3, a, ac, k, e, r, d, p, h \
         FROM unnest($1::bigint[], $2::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::text[], $10::text[], $11::text[]) AS x(s, i, a, ac, k, e, r, d, p, h)",
    )
    .bind(cols.seq)
    .bind(cols.id)
    .bind(now)
    .bind(cols.actor)
    .bind(cols.action)
    .bind(cols.entity_kind)
    .bind(cols.entity_id)
    .bind(cols.request_id)
    .bind(cols.state_digest)
    .bind(cols.prev_hash)
    .bind(cols.hash)
    .bind(seq)
    .bind(&prev)
    .execute(c)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() != n as u64 {
        return Err(Error::Internal(format!("ledger append wrote {} of {n} events", inserted.rows_affected())));
    }
    Ok(())
}

fn reused(key: &IdempotencyKey) -> Error {
    Error::conflict(
        "idempotency_key_reused",
        format!("Idempotency-Key `{}` was already used for a different request; use a new key", key.key),
        serde_json::json!({ "key": key.key }),
    )
}

/// Looks up an idempotency key. `Ok(Some(id))` = replay that entity; a key reused for another
/// request is refused.
pub(crate) async fn idempotency_lookup(
    c: &mut PgConnection,
    key: &IdempotencyKey,
    kind: &str,
) -> Result<Option<(String, Option<serde_json::Value>)>> {
    let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT fingerprint, entity_kind, entity_id, extra::text FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some((fp, k, id, extra)) if fp == key.fingerprint && k == kind => {
            Ok(Some((id, extra.and_then(|e| serde_json::from_str(&e).ok()))))
        }
        Some(_) => Err(reused(key)),
    }
}

/// Looks up a key without checking the entity kind (for `Store::find_idempotent`).
pub(crate) async fn idempotency_find(c: &mut PgConnection, key: &IdempotencyKey) -> Result<Option<(String, String)>> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT fingerprint, entity_kind, entity_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    match row {
        Some((fp, kind, id)) if fp == key.fingerprint => Ok(Some((kind, id))),
        Some(_) => Err(reused(key)),
        None => Ok(None),
    }
}

/// What to do with a creating call that carries an idempotency key.
pub(crate) enum Claimed {
    /// The key is ours (recorded in this transaction): go on creating `id`.
    Fresh,
    /// The key already names an entity: replay it.
    Replay(String, Option<serde_json::Value>),
}

/// Records `ctx`'s idempotency key for the entity `id` about to be created, before creating it.
/// A concurrent call with the same key waits here for the first one's transaction; once that one
/// committed, this returns `Replay` (or refuses a different request) instead of a duplicate.
pub(crate) async fn idempotency_claim(
    c: &mut PgConnection,
    ctx: &WriteCtx,
    kind: &str,
    id: &str,
    now: Timestamp,
) -> Result<Claimed> {
    let Some(key) = &ctx.idempotency else { return Ok(Claimed::Fresh) };
    if let Some((id, extra)) = idempotency_lookup(c, key, kind).await? {
        return Ok(Claimed::Replay(id, extra));
    }
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, entity_kind, entity_id, created_at, extra) \
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&key.fingerprint)
    .bind(kind)
    .bind(id)
    .bind(ms(now))
    .bind(ctx.replay_extra.as_ref().map(|e| e.to_string()))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() == 1 {
        return Ok(Claimed::Fresh);
    }
    match idempotency_lookup(c, key, kind).await? {
        Some((id, extra)) => Ok(Claimed::Replay(id, extra)),
        None => Err(Error::Unavailable("an idempotency key changed under a concurrent request; retry".into())),
    }
}
