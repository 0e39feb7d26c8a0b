//! The embedded storage backend: SQLite in WAL mode. One writer thread owns the only write
//! connection and group-commits concurrent mutations (see `conn`); reads run on a small pool of
//! read-only connections. Every mutation writes its state change and its ledger event in the same
//! transaction.

mod conn;
mod doc_search;
mod kluster_search;
mod rows;
mod scan_search;
pub mod schema;
mod search;
mod vindex;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mc_domain::clock::to_millis;
use mc_domain::dag::{cycle_error, find_cycle};
use mc_domain::doc::{DocPatch, NewDoc, next_version};
use mc_domain::input::{NewKluster, NewMission, NewTask, ScopePatch, TaskPatch};
use mc_domain::ledger::ChainVerifier;
use mc_domain::mission::ensure_active;
use mc_domain::{
    Actor, Clock, Doc, DocId, DocKind, Error, Kluster, KlusterId, Lease, LedgerEvent, LedgerVerification, Mission,
    MissionId, Principal, Result, Role, ScopeStatus, Task, TaskId, TaskStatus, Timestamp,
};
use mc_store::{
    Created, DocEmbedded, DocEmbeddingJob, DocFilter, DocHit, Embedded, EmbeddingJob, KlusterEmbedded,
    KlusterEmbeddingJob, KlusterHit, LedgerFilter, Page, PendingPage, PendingVector, ReadyFilter, ScopeFilter,
    SearchFilter, SearchHit, SearchRequest, Store, StoreHealth, TaskFilter, TextCursor, TokenRecord, WriteCtx,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::json;

pub use conn::Synchronous;
use conn::{Readers, Writer, db_err};
use rows::*;
use vindex::VecIndex;

/// How to open the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (created with its directory when missing).
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Read connections in the pool.
    pub readers: usize,
    /// Most mutations committed together in one transaction.
    pub max_batch: usize,
    pub clock: Arc<dyn Clock>,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Self {
        Self { path: path.into(), synchronous: Synchronous::Normal, readers: 4, max_batch: 512, clock }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Readers>,
    clock: Arc<dyn Clock>,
    /// Nearest-neighbour index over the vectors in the `vec0` tables.
    index: Arc<VecIndex>,
    /// Full-text match counts kept between searches (they choose query plans).
    counts: Arc<search::MatchCounts>,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

/// Applies pending migrations to the database at `path` and returns the versions applied.
pub fn migrate(path: &Path) -> Result<Vec<i64>> {
    search::register_sqlite_vec();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut c = conn::open(path, false, Synchronous::Full)?;
    schema::migrate(&mut c)
}

impl SqliteStore {
    /// Opens the store, running pending migrations first.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        search::register_sqlite_vec();
        migrate(&config.path)?;
        let write_conn = conn::open(&config.path, false, config.synchronous)?;
        let hashed = search::backfill_text_hashes(&write_conn)?;
        if hashed > 0 {
            tracing::info!(tasks = hashed, "text hashes of the search documents filled in");
        }
        // the index is complete before the writer (its only other source of changes) starts
        let index = Arc::new(VecIndex::default());
        let started = std::time::Instant::now();
        let vectors = search::load_index(&write_conn, &index)? + scan_search::load_index::<Doc>(&write_conn, &index)?;
        if vectors > 0 {
            tracing::info!(vectors, ms = started.elapsed().as_millis() as u64, "vector index loaded");
        }
        let counts = Arc::new(search::MatchCounts::default());
        let writer = Writer::start(write_conn, config.max_batch.max(1), Arc::clone(&index), Arc::clone(&counts));
        let readers = Readers::open(&config.path, config.readers.max(1))?;
        let checkpointer = conn::start_checkpointer(&config.path, Duration::from_millis(500))?;
        Ok(Self { path: config.path, writer, readers, clock: config.clock, index, counts, _checkpointer: checkpointer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a mutation in the writer with the current time.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, Timestamp) -> Result<T> + Send + 'static,
    {
        let clock = Arc::clone(&self.clock);
        self.writer.write(move |c| f(c, clock.now())).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.read(f).await
    }

    /// Loads a task, applies `change` (which checks the rules and mutates it), saves it and
    /// appends the ledger event `action`.
    async fn mutate_task<F>(&self, ctx: &WriteCtx, id: TaskId, action: &'static str, change: F) -> Result<Task>
    where
        F: FnOnce(&Connection, &mut Task, &Actor, Timestamp) -> Result<TaskChange> + Send + 'static,
    {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            let mut task = load_task(c, id)?;
            let before = task.clone();
            let what = change(c, &mut task, &ctx.actor, now)?;
            task.updated_at = now;
            save_task(c, &task, what.deps, what.labels)?;
            let text_changed =
                before.title != task.title || before.description != task.description || before.labels != task.labels;
            search::reindex(c, &task, text_changed, before.status != task.status)?;
            append_ledger(c, &ctx, action, "task", &task.id.to_string(), &task, now)?;
            Ok(task)
        })
        .await
    }
}

/// Which index tables a task change touched.
#[derive(Debug, Default, Clone, Copy)]
struct TaskChange {
    deps: bool,
    labels: bool,
}

fn page_of<T, F: Fn(&T) -> String>(mut items: Vec<T>, limit: usize, cursor_of: F) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

fn check_deps_exist(c: &Connection, task_mission: MissionId, deps: &[TaskId]) -> Result<()> {
    for (i, d) in deps.iter().enumerate() {
        let row: Option<String> = c
            .prepare_cached("SELECT mission_id FROM tasks WHERE id = ?1")
            .map_err(db_err)?
            .query_row([d.to_string()], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        match row {
            None => {
                return Err(Error::validation(format!("depends_on[{i}]"), format!("task {d} does not exist")));
            }
            Some(m) if m != task_mission.to_string() => {
                return Err(Error::validation(
                    format!("depends_on[{i}]"),
                    format!("task {d} belongs to another mission"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn lease_for(actor: &Actor, now: Timestamp, ttl: Duration, token: u64) -> Lease {
    Lease {
        holder: actor.holder().to_owned(),
        claimed_at: now,
        expires_at: now + chrono_dur(ttl),
        fencing_token: token,
    }
}

fn chrono_dur(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
}

/// Claims `task` for `actor` (the task is loaded in the writer's transaction).
fn claim_loaded(c: &Connection, task: &mut Task, actor: &Actor, now: Timestamp, ttl: Duration) -> Result<()> {
    if task.has_live_lease(now) {
        let lease = task.lease.as_ref().ok_or_else(|| Error::Internal("lease vanished".into()))?;
        if lease.holder == actor.holder() {
            // Re-claim by the holder: renew, same tenure and token.
            let token = lease.fencing_token;
            let claimed_at = lease.claimed_at;
            task.lease = Some(Lease { claimed_at, ..lease_for(actor, now, ttl, token) });
            return Ok(());
        }
        return Err(task.held_by_other());
    }
    let reclaim_expired = task.status.is_leased() && task.lease.is_some();
    if task.status != TaskStatus::Open && !reclaim_expired {
        return Err(Error::conflict(
            "not_claimable",
            format!("task {} is {} and cannot be claimed; only open tasks can", task.id, task.status),
            json!({ "task_id": task.id, "status": task.status }),
        ));
    }
    let pending = unfinished_deps(c, task.id)?;
    if !pending.is_empty() {
        let list: Vec<String> = pending.iter().map(|(id, st)| format!("{id} ({st})")).collect();
        return Err(Error::conflict(
            "dependencies_not_done",
            format!("task {} waits on unfinished dependencies: {}", task.id, list.join(", ")),
            json!({ "task_id": task.id, "pending": pending.iter().map(|(id, _)| id).collect::<Vec<_>>() }),
        ));
    }
    task.fencing_token += 1;
    task.lease = Some(lease_for(actor, now, ttl, task.fencing_token));
    task.status = TaskStatus::Claimed;
    Ok(())
}

const READY_WHERE: &str = "t.status = 'open' AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks u ON u.id = d.depends_on \
     WHERE d.task_id = t.id AND u.status <> 'done')";

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreHealth {
        let res = self
            .read(|c| {
                let v = schema::current_version(c)?;
                let ok: i64 = c.query_row("SELECT 1", [], |r| r.get(0)).map_err(db_err)?;
                Ok((v, ok))
            })
            .await;
        match res {
            Ok((v, 1)) => StoreHealth {
                backend: "sqlite",
                ok: v == schema::latest_version(),
                schema_version: v,
                detail: format!("{} (WAL, schema {v}/{})", self.path.display(), schema::latest_version()),
            },
            Ok((v, _)) => StoreHealth { backend: "sqlite", ok: false, schema_version: v, detail: "bad probe".into() },
            Err(e) => StoreHealth { backend: "sqlite", ok: false, schema_version: 0, detail: e.to_string() },
        }
    }

    async fn put_token(&self, record: TokenRecord) -> Result<()> {
        self.write(move |c, now| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, principal, role, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (token_hash) DO NOTHING",
                params![record.token_hash, record.principal.name, record.principal.role.as_str(), to_millis(now)],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn principal_for_token(&self, token_hash: &str) -> Result<Option<Principal>> {
        let h = token_hash.to_owned();
        self.read(move |c| {
            let row: Option<(String, String)> = c
                .prepare_cached("SELECT principal, role FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL")
                .map_err(db_err)?
                .query_row([h], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            Ok(row.map(|(name, role)| Principal { name, role: Role::parse(&role).unwrap_or(Role::Viewer) }))
        })
        .await
    }

    async fn has_tokens(&self) -> Result<bool> {
        self.read(|c| {
            c.query_row("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)", [], |r| r.get(0))
                .map_err(db_err)
        })
        .await
    }

    async fn find_idempotent(&self, key: &mc_store::IdempotencyKey) -> Result<Option<(String, String)>> {
        let key = key.clone();
        self.read(move |c| {
            let row: Option<(String, String, String)> = c
                .prepare_cached(
                    "SELECT fingerprint, entity_kind, entity_id FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
                )
                .map_err(db_err)?
                .query_row([&key.scope, &key.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(db_err)?;
            match row {
                Some((fp, kind, id)) if fp == key.fingerprint => Ok(Some((kind, id))),
                Some(_) => Err(Error::conflict(
                    "idempotency_key_reused",
                    format!("Idempotency-Key `{}` was already used for a different request; use a new key", key.key),
                    json!({ "key": key.key }),
                )),
                None => Ok(None),
            }
        })
        .await
    }

    // ---- missions ----

    async fn create_mission(&self, ctx: &WriteCtx, new: NewMission) -> Result<Created<Mission>> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            if let Some(key) = &ctx.idempotency
                && let Some((id, extra)) = idempotency_lookup(c, key, "mission")?
            {
                return Ok(Created { value: load_mission(c, MissionId::parse_field(&id, "id")?)?, replayed: true, extra });
            }
            let m = Mission {
                id: MissionId::new(),
                name: new.name,
                description: new.description,
                status: ScopeStatus::Active,
                created_at: now,
                updated_at: now,
            };
            c.prepare_cached(
                "INSERT INTO missions (id, name, description, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db_err)?
            .execute(params![m.id.to_string(), m.name, m.description, m.status.as_str(), to_millis(now), to_millis(now)])
            .map_err(db_err)?;
            append_ledger(c, &ctx, "mission.create", "mission", &m.id.to_string(), &m, now)?;
            idempotency_record(c, &ctx, "mission", &m.id.to_string(), now)?;
            Ok(Created { value: m, replayed: false, extra: None })
        })
        .await
    }

    async fn get_mission(&self, id: MissionId) -> Result<Mission> {
        self.read(move |c| load_mission(c, id)).await
    }

    async fn list_missions(&self, f: &ScopeFilter) -> Result<Page<Mission>> {
        let f = f.clone();
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, name, description, status, created_at, updated_at FROM missions \
                     WHERE id > ?1 AND (?2 OR status = 'active') ORDER BY id LIMIT ?3",
                )
                .map_err(db_err)?;
            let items = st
                .query_map(
                    params![f.cursor.unwrap_or_default(), f.include_archived, (f.limit + 1) as i64],
                    mission_from_row,
                )
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(page_of(items, f.limit, |m| m.id.to_string()))
        })
        .await
    }

    async fn update_mission(&self, ctx: &WriteCtx, id: MissionId, patch: ScopePatch) -> Result<Mission> {
        self.change_mission(ctx, id, "mission.update", move |m| {
            ensure_active("mission", &m.id.to_string(), m.status)?;
            if let Some(n) = patch.name {
                m.name = n;
            }
            if let Some(d) = patch.description {
                m.description = d;
            }
            Ok(())
        })
        .await
    }

    async fn archive_mission(&self, ctx: &WriteCtx, id: MissionId) -> Result<Mission> {
        self.change_mission(ctx, id, "mission.archive", |m| {
            ensure_active("mission", &m.id.to_string(), m.status)?;
            m.status = ScopeStatus::Archived;
            Ok(())
        })
        .await
    }

    // ---- klusters ----

    async fn create_kluster(&self, ctx: &WriteCtx, new: NewKluster) -> Result<Created<Kluster>> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            if let Some(key) = &ctx.idempotency
                && let Some((id, extra)) = idempotency_lookup(c, key, "kluster")?
            {
                return Ok(Created {
                    value: load_kluster(c, KlusterId::parse_field(&id, "id")?)?,
                    replayed: true,
                    extra,
                });
            }
            let mission = load_mission(c, new.mission_id)?;
            ensure_active("mission", &mission.id.to_string(), mission.status)?;
            let k = Kluster {
                id: KlusterId::new(),
                mission_id: new.mission_id,
                name: new.name,
                description: new.description,
                status: ScopeStatus::Active,
                created_at: now,
                updated_at: now,
            };
            c.prepare_cached(
                "INSERT INTO klusters (id, mission_id, name, description, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db_err)?
            .execute(params![
                k.id.to_string(),
                k.mission_id.to_string(),
                k.name,
                k.description,
                k.status.as_str(),
                to_millis(now),
                to_millis(now)
            ])
            .map_err(db_err)?;
            scan_search::index(c, &k)?;
            append_ledger(c, &ctx, "kluster.create", "kluster", &k.id.to_string(), &k, now)?;
            idempotency_record(c, &ctx, "kluster", &k.id.to_string(), now)?;
            Ok(Created { value: k, replayed: false, extra: None })
        })
        .await
    }

    async fn get_kluster(&self, id: KlusterId) -> Result<Kluster> {
        self.read(move |c| load_kluster(c, id)).await
    }

    async fn list_klusters(&self, f: &ScopeFilter) -> Result<Page<Kluster>> {
        let f = f.clone();
        self.read(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {KLUSTER_COLUMNS} FROM klusters \
                     WHERE id > ?1 AND (?2 OR status = 'active') AND (?3 IS NULL OR mission_id = ?3) \
                     ORDER BY id LIMIT ?4"
                ))
                .map_err(db_err)?;
            let items = st
                .query_map(
                    params![
                        f.cursor.unwrap_or_default(),
                        f.include_archived,
                        f.mission_id.map(|m| m.to_string()),
                        (f.limit + 1) as i64
                    ],
                    kluster_from_row,
                )
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(page_of(items, f.limit, |k| k.id.to_string()))
        })
        .await
    }

    async fn update_kluster(&self, ctx: &WriteCtx, id: KlusterId, patch: ScopePatch) -> Result<Kluster> {
        self.change_kluster(ctx, id, "kluster.update", move |k| {
            ensure_active("kluster", &k.id.to_string(), k.status)?;
            if let Some(n) = patch.name {
                k.name = n;
            }
            if let Some(d) = patch.description {
                k.description = d;
            }
            Ok(())
        })
        .await
    }

    async fn archive_kluster(&self, ctx: &WriteCtx, id: KlusterId) -> Result<Kluster> {
        self.change_kluster(ctx, id, "kluster.archive", |k| {
            ensure_active("kluster", &k.id.to_string(), k.status)?;
            k.status = ScopeStatus::Archived;
            Ok(())
        })
        .await
    }

    // ---- tasks ----

    async fn create_task(&self, ctx: &WriteCtx, new: NewTask) -> Result<Created<Task>> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            if let Some(key) = &ctx.idempotency
                && let Some((id, extra)) = idempotency_lookup(c, key, "task")?
            {
                return Ok(Created { value: load_task(c, TaskId::parse_field(&id, "id")?)?, replayed: true, extra });
            }
            let kluster = load_kluster(c, new.kluster_id)?;
            ensure_active("kluster", &kluster.id.to_string(), kluster.status)?;
            check_deps_exist(c, kluster.mission_id, &new.depends_on)?;
            let task = Task {
                id: TaskId::new(),
                mission_id: kluster.mission_id,
                kluster_id: kluster.id,
                title: new.title,
                description: new.description,
                status: TaskStatus::Open,
                priority: new.priority,
                labels: new.labels,
                paths: new.paths,
                depends_on: new.depends_on,
                lease: None,
                fencing_token: 0,
                created_by: ctx.actor.ledger_name(),
                created_at: now,
                updated_at: now,
            };
            insert_task(c, &task)?;
            append_ledger(c, &ctx, "task.create", "task", &task.id.to_string(), &task, now)?;
            idempotency_record(c, &ctx, "task", &task.id.to_string(), now)?;
            Ok(Created { value: task, replayed: false, extra: None })
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.read(move |c| load_task(c, id)).await
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<Page<Task>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {} FROM tasks t WHERE t.id > ?", prefixed_task_columns());
            let mut args: Vec<Value> = vec![Value::Text(f.cursor.clone().unwrap_or_default())];
            if let Some(k) = f.kluster_id {
                sql.push_str(" AND t.kluster_id = ?");
                args.push(Value::Text(k.to_string()));
            }
            if let Some(m) = f.mission_id {
                sql.push_str(" AND t.mission_id = ?");
                args.push(Value::Text(m.to_string()));
            }
            if !f.statuses.is_empty() {
                sql.push_str(" AND t.status IN (");
                sql.push_str(&vec!["?"; f.statuses.len()].join(", "));
                sql.push(')');
                args.extend(f.statuses.iter().map(|s| Value::Text(s.as_str().to_owned())));
            }
            if let Some(l) = &f.label {
                sql.push_str(" AND EXISTS (SELECT 1 FROM task_labels l WHERE l.label = ? AND l.task_id = t.id)");
                args.push(Value::Text(l.trim().to_lowercase()));
            }
            if let Some(h) = &f.holder {
                sql.push_str(" AND t.holder = ?");
                args.push(Value::Text(h.clone()));
            }
            sql.push_str(" ORDER BY t.id LIMIT ?");
            args.push(Value::Integer((f.limit + 1) as i64));
            let mut st = c.prepare_cached(&sql).map_err(db_err)?;
            let items = st
                .query_map(params_from_iter(args), task_from_row)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(page_of(items, f.limit, |t| t.id.to_string()))
        })
        .await
    }

    async fn ready_tasks(&self, f: &ReadyFilter) -> Result<Vec<Task>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {} FROM tasks t WHERE {READY_WHERE}", prefixed_task_columns());
            let mut args: Vec<Value> = vec![];
            if let Some(k) = f.kluster_id {
                sql.push_str(" AND t.kluster_id = ?");
                args.push(Value::Text(k.to_string()));
            }
            if let Some(m) = f.mission_id {
                sql.push_str(" AND t.mission_id = ?");
                args.push(Value::Text(m.to_string()));
            }
            sql.push_str(" ORDER BY t.priority, t.created_at, t.id LIMIT ?");
            args.push(Value::Integer(f.limit as i64));
            let mut st = c.prepare_cached(&sql).map_err(db_err)?;
            st.query_map(params_from_iter(args), task_from_row)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)
        })
        .await
    }

    async fn update_task(&self, ctx: &WriteCtx, id: TaskId, patch: TaskPatch, fence: Option<u64>) -> Result<Task> {
        self.mutate_task(ctx, id, "task.update", move |c, t, actor, now| {
            if t.status.is_terminal() {
                return Err(Error::conflict(
                    "task_closed",
                    format!("task {} is {} and can no longer be changed", t.id, t.status),
                    json!({ "task_id": t.id, "status": t.status }),
                ));
            }
            t.check_fence(actor, fence, now)?;
            let mut change = TaskChange::default();
            if let Some(v) = patch.title {
                t.title = v;
            }
            if let Some(v) = patch.description {
                t.description = v;
            }
            if let Some(v) = patch.priority {
                t.priority = v;
            }
            if let Some(v) = patch.paths {
                t.paths = v;
            }
            if let Some(v) = patch.labels {
                change.labels = v != t.labels;
                t.labels = v;
            }
            if let Some(deps) = patch.depends_on
                && deps != t.depends_on
            {
                check_deps_exist(c, t.mission_id, &deps)?;
                if let Some(cycle) = find_cycle(t.id, &deps, |n| deps_of(c, n))? {
                    return Err(cycle_error(&cycle));
                }
                t.depends_on = deps;
                change.deps = true;
            }
            Ok(change)
        })
        .await
    }

    async fn transition_task(&self, ctx: &WriteCtx, id: TaskId, to: TaskStatus, fence: Option<u64>) -> Result<Task> {
        self.mutate_task(ctx, id, "task.transition", move |_c, t, actor, now| {
            if to == TaskStatus::Claimed {
                return Err(Error::conflict(
                    "use_claim",
                    "a task becomes claimed only through a claim (POST /tasks/{id}/claim)",
                    json!({ "task_id": t.id }),
                ));
            }
            t.status.check_transition(to)?;
            if t.status.is_leased() {
                t.check_fence(actor, fence, now)?;
            }
            if !to.is_leased() {
                t.lease = None;
            }
            t.status = to;
            Ok(TaskChange::default())
        })
        .await
    }

    // ---- ownership ----

    async fn claim_task(&self, ctx: &WriteCtx, id: TaskId, ttl: Duration) -> Result<Task> {
        self.mutate_task(ctx, id, "task.claim", move |c, t, actor, now| {
            claim_loaded(c, t, actor, now, ttl)?;
            Ok(TaskChange::default())
        })
        .await
    }

    async fn claim_next_task(&self, ctx: &WriteCtx, kluster: KlusterId, ttl: Duration) -> Result<Option<Task>> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            load_kluster(c, kluster)?;
            let next: Option<String> = c
                .prepare_cached(&format!(
                    "SELECT t.id FROM tasks t WHERE t.kluster_id = ?1 AND {READY_WHERE} \
                     ORDER BY t.priority, t.created_at, t.id LIMIT 1"
                ))
                .map_err(db_err)?
                .query_row([kluster.to_string()], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let Some(id) = next else { return Ok(None) };
            let mut task = load_task(c, TaskId::parse_field(&id, "id")?)?;
            let before = task.status;
            claim_loaded(c, &mut task, &ctx.actor, now, ttl)?;
            task.updated_at = now;
            save_task(c, &task, false, false)?;
            search::reindex(c, &task, false, before != task.status)?;
            append_ledger(c, &ctx, "task.claim", "task", &task.id.to_string(), &task, now)?;
            Ok(Some(task))
        })
        .await
    }

    async fn heartbeat_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64, ttl: Duration) -> Result<Task> {
        self.mutate_task(ctx, id, "task.heartbeat", move |_c, t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            if let Some(l) = t.lease.as_mut() {
                l.expires_at = now + chrono_dur(ttl);
            }
            Ok(TaskChange::default())
        })
        .await
    }

    async fn release_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task> {
        self.mutate_task(ctx, id, "task.release", move |_c, t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            t.lease = None;
            t.status = TaskStatus::Open;
            Ok(TaskChange::default())
        })
        .await
    }

    async fn complete_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task> {
        self.mutate_task(ctx, id, "task.complete", move |_c, t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            t.status.check_transition(TaskStatus::Done)?;
            t.lease = None;
            t.status = TaskStatus::Done;
            Ok(TaskChange::default())
        })
        .await
    }

    async fn reap_expired_leases(&self, limit: usize) -> Result<Vec<Task>> {
        self.write(move |c, now| {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM tasks WHERE holder IS NOT NULL AND lease_expires_at <= ?1 \
                     ORDER BY lease_expires_at LIMIT ?2",
                )
                .map_err(db_err)?
                .query_map(params![to_millis(now), limit as i64], |r| r.get(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            let ctx = WriteCtx::new(Actor::system());
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let mut t = load_task(c, TaskId::parse_field(&id, "id")?)?;
                let before = t.status;
                t.lease = None;
                t.status = TaskStatus::Open;
                t.updated_at = now;
                save_task(c, &t, false, false)?;
                search::reindex(c, &t, false, before != t.status)?;
                append_ledger(c, &ctx, "task.lease_expired", "task", &id, &t, now)?;
                out.push(t);
            }
            Ok(out)
        })
        .await
    }

    // ---- search ----

    async fn search_tasks(&self, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let req = req.clone();
        let (index, counts) = (Arc::clone(&self.index), Arc::clone(&self.counts));
        self.read(move |c| search::search(c, &index, &counts, &req)).await
    }

    async fn search_tasks_while(&self, req: &SearchRequest, mut vector: PendingVector<'_>) -> Result<Vec<SearchHit>> {
        if let Some(vector) = mc_store::vector_if_ready(&mut vector) {
            return self.search_tasks(&SearchRequest { vector, ..req.clone() }).await;
        }
        let (text_req, counts) = (req.clone(), Arc::clone(&self.counts));
        // full text on a reader thread while the vector is computed elsewhere
        let (text, vector) = tokio::join!(self.read(move |c| search::text_part(c, &counts, &text_req)), vector);
        let (text, req, index) = (text?, SearchRequest { vector, ..req.clone() }, Arc::clone(&self.index));
        self.read(move |c| search::rank(c, &index, &req, text)).await
    }

    async fn tasks_with_paths(&self, filter: &SearchFilter, limit: usize) -> Result<Vec<Task>> {
        let f = filter.clone();
        self.read(move |c| search::with_paths(c, &f, limit)).await
    }

    async fn pending_embeddings_from(
        &self,
        model: &str,
        limit: usize,
        from: &TextCursor,
    ) -> Result<PendingPage<EmbeddingJob>> {
        let (model, from) = (model.to_owned(), from.clone());
        self.read(move |c| search::pending(c, &model, limit, &from)).await
    }

    async fn put_embeddings(&self, model: &str, items: Vec<Embedded>) -> Result<()> {
        let model = model.to_owned();
        self.write(move |c, _| {
            for e in &items {
                search::put(c, &model, e.task_id, &e.text_hash, &e.vector)?;
            }
            Ok(())
        })
        .await
    }

    async fn task_embedding(&self, id: TaskId, model: &str) -> Result<Option<Vec<f32>>> {
        let model = model.to_owned();
        self.read(move |c| search::embedding_of(c, id, &model)).await
    }

    async fn search_klusters(&self, req: &SearchRequest) -> Result<Vec<KlusterHit>> {
        let (req, index, counts) = (req.clone(), Arc::clone(&self.index), Arc::clone(&self.counts));
        self.read(move |c| kluster_search::search(c, &index, &counts, &req)).await
    }

    async fn pending_kluster_embeddings(&self, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>> {
        let model = model.to_owned();
        self.read(move |c| kluster_search::pending(c, &model, limit)).await
    }

    async fn put_kluster_embeddings(&self, model: &str, items: Vec<KlusterEmbedded>) -> Result<()> {
        let items = items.into_iter().map(|e| (e.kluster_id, e.text_hash, e.vector)).collect();
        self.put_scanned_embeddings::<Kluster>(model, items).await
    }

    // ---- docs and artifacts ----

    async fn create_doc(&self, ctx: &WriteCtx, new: NewDoc) -> Result<Created<Doc>> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            if let Some(key) = &ctx.idempotency
                && let Some((id, extra)) = idempotency_lookup(c, key, "doc")?
            {
                return Ok(Created { value: load_doc(c, DocId::parse_field(&id, "id")?)?, replayed: true, extra });
            }
            let kluster = new.kluster_id.map(|k| load_kluster(c, k)).transpose()?;
            let mission_id = match (new.mission_id, &kluster) {
                (Some(m), Some(k)) if k.mission_id != m => {
                    return Err(Error::validation(
                        "kluster_id",
                        format!("kluster {} belongs to mission {}, not to mission {m}", k.id, k.mission_id),
                    ));
                }
                (Some(m), _) => m,
                (None, Some(k)) => k.mission_id,
                (None, None) => return Err(Error::validation("mission_id", "name a mission or a kluster")),
            };
            let mission = load_mission(c, mission_id)?;
            ensure_active("mission", &mission.id.to_string(), mission.status)?;
            if let Some(k) = &kluster {
                ensure_active("kluster", &k.id.to_string(), k.status)?;
            }
            let doc = new.into_doc(DocId::new(), mission_id, ctx.actor.ledger_name(), now);
            insert_doc(c, &doc)?;
            append_ledger(c, &ctx, "doc.create", "doc", &doc.id.to_string(), &doc, now)?;
            idempotency_record(c, &ctx, "doc", &doc.id.to_string(), now)?;
            Ok(Created { value: doc, replayed: false, extra: None })
        })
        .await
    }

    async fn get_doc(&self, id: DocId) -> Result<Doc> {
        self.read(move |c| load_doc(c, id)).await
    }

    async fn list_docs(&self, f: &DocFilter) -> Result<Page<Doc>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {DOC_COLUMNS} FROM docs WHERE 1");
            let mut args: Vec<Value> = vec![];
            if let Some(cursor) = &f.cursor {
                sql.push_str(" AND id < ?");
                args.push(Value::Text(cursor.clone()));
            }
            for (col, v) in [
                ("mission_id", f.mission_id.map(|m| m.to_string())),
                ("kluster_id", f.kluster_id.map(|k| k.to_string())),
                ("kind", f.kind.map(|k| k.as_str().to_owned())),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(Value::Text(v));
                }
            }
            if f.with_paths {
                sql.push_str(" AND paths <> '[]'");
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(Value::Integer((f.limit + 1) as i64));
            let mut st = c.prepare_cached(&sql).map_err(db_err)?;
            let items = st
                .query_map(params_from_iter(args), doc_from_row)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(page_of(items, f.limit, |d| d.id.to_string()))
        })
        .await
    }

    async fn update_doc(&self, ctx: &WriteCtx, id: DocId, patch: DocPatch, if_version: Option<u64>) -> Result<Doc> {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            let mut doc = load_doc(c, id)?;
            if !next_version(&mut doc, &patch, if_version, now)? {
                return Ok(doc);
            }
            save_doc(c, &doc)?;
            append_ledger(c, &ctx, "doc.update", "doc", &doc.id.to_string(), &doc, now)?;
            Ok(doc)
        })
        .await
    }

    async fn search_docs(&self, req: &SearchRequest, kind: Option<DocKind>) -> Result<Vec<DocHit>> {
        let (req, index, counts) = (req.clone(), Arc::clone(&self.index), Arc::clone(&self.counts));
        self.read(move |c| doc_search::search(c, &index, &counts, &req, kind)).await
    }

    async fn pending_doc_embeddings(&self, model: &str, limit: usize) -> Result<Vec<DocEmbeddingJob>> {
        let model = model.to_owned();
        self.read(move |c| doc_search::pending(c, &model, limit)).await
    }

    async fn put_doc_embeddings(&self, model: &str, items: Vec<DocEmbedded>) -> Result<()> {
        let items = items.into_iter().map(|e| (e.doc_id, e.text_hash, e.vector)).collect();
        self.put_scanned_embeddings::<Doc>(model, items).await
    }

    // ---- ledger ----

    async fn list_ledger(&self, f: &LedgerFilter) -> Result<Vec<LedgerEvent>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq > ?");
            let mut args: Vec<Value> = vec![Value::Integer(f.after_seq.unwrap_or(0))];
            for (col, v) in [
                ("entity_id", &f.entity_id),
                ("entity_kind", &f.entity_kind),
                ("action", &f.action),
                ("actor", &f.actor),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(Value::Text(v.clone()));
                }
            }
            sql.push_str(" ORDER BY seq LIMIT ?");
            args.push(Value::Integer(f.limit as i64));
            let mut st = c.prepare_cached(&sql).map_err(db_err)?;
            st.query_map(params_from_iter(args), ledger_from_row)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)
        })
        .await
    }

    async fn verify_ledger(&self) -> Result<LedgerVerification> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq")).map_err(db_err)?;
            let mut rows = st.query([]).map_err(db_err)?;
            let mut v = ChainVerifier::default();
            while let Some(row) = rows.next().map_err(db_err)? {
                let e = ledger_from_row(row).map_err(db_err)?;
                if let Err(bad) = v.push(&e) {
                    return Ok(bad);
                }
            }
            Ok(v.finish())
        })
        .await
    }
}

fn not_held(t: &Task) -> Error {
    Error::conflict(
        "not_held",
        format!("task {} is {} and not held by anyone; claim it first", t.id, t.status),
        json!({ "task_id": t.id, "status": t.status }),
    )
}

fn prefixed_task_columns() -> String {
    prefixed(TASK_COLUMNS, "t")
}

impl SqliteStore {
    /// Stores vectors of `model` of klusters or docs: (id, text hash, vector) each.
    async fn put_scanned_embeddings<T: scan_search::Scanned>(
        &self,
        model: &str,
        items: Vec<(T::Id, String, Vec<f32>)>,
    ) -> Result<()>
    where
        T::Id: Send + 'static,
    {
        let model = model.to_owned();
        self.write(move |c, _| {
            for (id, hash, vector) in &items {
                scan_search::put::<T>(c, &model, *id, hash, vector)?;
            }
            Ok(())
        })
        .await
    }

    async fn change_mission<F>(&self, ctx: &WriteCtx, id: MissionId, action: &'static str, f: F) -> Result<Mission>
    where
        F: FnOnce(&mut Mission) -> Result<()> + Send + 'static,
    {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            let mut m = load_mission(c, id)?;
            f(&mut m)?;
            m.updated_at = now;
            c.prepare_cached(
                "UPDATE missions SET name = ?2, description = ?3, status = ?4, updated_at = ?5 WHERE id = ?1",
            )
            .map_err(db_err)?
            .execute(params![m.id.to_string(), m.name, m.description, m.status.as_str(), to_millis(now)])
            .map_err(db_err)?;
            append_ledger(c, &ctx, action, "mission", &m.id.to_string(), &m, now)?;
            Ok(m)
        })
        .await
    }

    async fn change_kluster<F>(&self, ctx: &WriteCtx, id: KlusterId, action: &'static str, f: F) -> Result<Kluster>
    where
        F: FnOnce(&mut Kluster) -> Result<()> + Send + 'static,
    {
        let ctx = ctx.clone();
        self.write(move |c, now| {
            let mut k = load_kluster(c, id)?;
            f(&mut k)?;
            k.updated_at = now;
            c.prepare_cached(
                "UPDATE klusters SET name = ?2, description = ?3, status = ?4, updated_at = ?5 WHERE id = ?1",
            )
            .map_err(db_err)?
            .execute(params![k.id.to_string(), k.name, k.description, k.status.as_str(), to_millis(now)])
            .map_err(db_err)?;
            scan_search::index(c, &k)?;
            append_ledger(c, &ctx, action, "kluster", &k.id.to_string(), &k, now)?;
            Ok(k)
        })
        .await
    }
}
