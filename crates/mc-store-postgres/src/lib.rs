//! The PostgreSQL storage backend. Every mutation runs in one transaction (READ COMMITTED) that
//! locks the rows it changes, writes the change, its search document, its idempotency key and
//! its ledger event, and commits. The ledger chain is serialised by one head row that each
//! appending transaction locks last and holds until it commits, so sequence numbers and previous
//! hashes never fork; `claim_next_task` picks with `FOR NO KEY UPDATE SKIP LOCKED`, so concurrent
//! claimers never wait on, nor double-assign, the same task.

mod docs;
mod kluster_search;
mod plain_search;
mod rows;
pub mod schema;
mod search;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mc_domain::dag::{cycle_error, find_cycle};
use mc_domain::doc::{DocPatch, NewDoc};
use mc_domain::id::Uuid;
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
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, PgPool};

use rows::*;

/// How to open the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?sslmode=...`
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the store reports itself unavailable.
    pub acquire_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl PgConfig {
    pub fn new(url: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(10), clock }
    }
}

/// Whether a database URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The store on a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    /// Where the database is, without credentials (for health reports and logs).
    location: String,
}

fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let opts: PgConnectOptions =
        url.parse().map_err(|e| Error::validation("database_url", format!("not a usable PostgreSQL URL: {e}")))?;
    Ok(opts.application_name("missioncontrol").log_statements(tracing::log::LevelFilter::Trace))
}

fn location_of(opts: &PgConnectOptions) -> String {
    format!("{}:{}/{}", opts.get_host(), opts.get_port(), opts.get_database().unwrap_or("(default database)"))
}

/// Applies pending migrations to the database at `url` and returns the versions applied.
pub async fn migrate(url: &str) -> Result<Vec<i64>> {
    let opts = connect_options(url)?;
    let pool = PgPoolOptions::new().max_connections(1).connect_with(opts).await.map_err(db_err)?;
    let applied = schema::migrate(&pool).await;
    pool.close().await;
    applied
}

impl PgStore {
    /// Connects, running pending migrations first.
    pub async fn open(config: PgConfig) -> Result<Self> {
        let opts = connect_options(&config.url)?;
        let location = location_of(&opts);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| match db_err(e) {
                Error::Unavailable(m) | Error::Internal(m) => {
                    Error::Unavailable(format!("cannot connect to PostgreSQL at {location}: {m}"))
                }
                other => other,
            })?;
        schema::migrate(&pool).await?;
        Ok(Self { pool, clock: config.clock, location })
    }

    /// Where the database is (host, port, database; never credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction and reads the time it acts at.
    async fn begin(&self) -> Result<(Tx, Timestamp)> {
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok((tx, ms(self.clock.now())))
    }

    /// A pooled connection, outside any explicit transaction.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.pool.acquire().await.map_err(db_err)
    }

    /// Locks and loads a task, applies `change` (which checks the rules and mutates it), then
    /// saves it (see [`save_changed_task`]).
    async fn mutate_task<F>(&self, ctx: &WriteCtx, id: TaskId, action: &'static str, change: F) -> Result<Task>
    where
        F: FnOnce(&mut Task, &Actor, Timestamp) -> Result<()> + Send,
    {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let mut task = load_task(&mut tx, id, true).await?;
            let before = task.clone();
            change(&mut task, &ctx.actor, now)?;
            save_changed_task(&mut tx, ctx, action, &before, task, false, now).await
        }
        .await;
        finish(tx, out).await
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Commits when `out` succeeded, rolls back otherwise.
async fn finish<T>(tx: Tx, out: Result<T>) -> Result<T> {
    match out {
        Ok(v) => {
            tx.commit().await.map_err(|e| Error::Unavailable(format!("commit failed: {}", db_err(e))))?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = tx.rollback().await {
                tracing::warn!(error = %rb, "rollback failed; the connection is dropped");
            }
            Err(e)
        }
    }
}

/// Writes back a task changed in this transaction (locked), re-indexes it and appends the
/// ledger event `action`.
async fn save_changed_task(
    c: &mut PgConnection,
    ctx: &WriteCtx,
    action: &str,
    before: &Task,
    mut task: Task,
    deps_changed: bool,
    now: Timestamp,
) -> Result<Task> {
    task.updated_at = now;
    save_task(c, &task, deps_changed).await?;
    let changed = search::Changed {
        embedded_text: before.title != task.title || before.description != task.description,
        labels: before.labels != task.labels,
        status: before.status != task.status,
    };
    search::reindex(c, &task, changed).await?;
    append_ledger(c, ctx, action, "task", &task.id.to_string(), &task, now).await?;
    Ok(task)
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

/// The id after which a page starts (a cursor is the id of the previous page's last item).
fn cursor_id(cursor: &Option<String>) -> Result<Option<Uuid>> {
    match cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => Uuid::parse_str(c)
            .map(Some)
            .map_err(|_| Error::validation("cursor", format!("`{c}` is not a cursor returned by a previous page"))),
    }
}

fn limit_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn check_deps_exist(c: &mut PgConnection, task_mission: MissionId, deps: &[TaskId]) -> Result<()> {
    if deps.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deps.iter().map(TaskId::as_uuid).collect();
    let found: Vec<(Uuid, Uuid)> = sqlx::query_as("SELECT id, mission_id FROM tasks WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(c)
        .await
        .map_err(db_err)?;
    for (i, d) in deps.iter().enumerate() {
        match found.iter().find(|(id, _)| *id == d.as_uuid()) {
            None => {
                return Err(Error::validation(format!("depends_on[{i}]"), format!("task {d} does not exist")));
            }
            Some((_, m)) if *m != task_mission.as_uuid() => {
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

/// The dependency edges of a mission's tasks (dependencies never cross missions), read under a
/// per-mission advisory lock so that two concurrent re-wirings cannot close a cycle together.
async fn mission_edges(c: &mut PgConnection, mission: MissionId) -> Result<HashMap<TaskId, Vec<TaskId>>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mc-deps:' || $1::text, 0))")
        .bind(mission.as_uuid())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id WHERE t.mission_id = $1",
    )
    .bind(mission.as_uuid())
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    let mut edges: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
    for (from, to) in rows {
        edges.entry(TaskId::from(from)).or_default().push(TaskId::from(to));
    }
    Ok(edges)
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

/// Claims `task` (locked by this transaction) for `actor`.
async fn claim_loaded(
    c: &mut PgConnection,
    task: &mut Task,
    actor: &Actor,
    now: Timestamp,
    ttl: Duration,
) -> Result<()> {
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
    let pending = unfinished_deps(c, task.id).await?;
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

/// Open tasks whose dependencies are all done (on `tasks t`).
macro_rules! ready_where {
    () => {
        "t.status = 'open' AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks u ON u.id = d.depends_on \
         WHERE d.task_id = t.id AND u.status <> 'done')"
    };
}

fn not_held(t: &Task) -> Error {
    Error::conflict(
        "not_held",
        format!("task {} is {} and not held by anyone; claim it first", t.id, t.status),
        json!({ "task_id": t.id, "status": t.status }),
    )
}

#[async_trait]
impl Store for PgStore {
    async fn health(&self) -> StoreHealth {
        let probe = async {
            let mut c = self.conn().await?;
            let v = schema::current_version(&mut c).await?;
            let server: String = sqlx::query_scalar("SELECT current_setting('server_version')")
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
            Ok::<_, Error>((v, server))
        };
        let latest = schema::latest_version();
        match probe.await {
            Ok((v, server)) => StoreHealth {
                backend: "postgres",
                ok: v == latest,
                schema_version: v,
                detail: format!("PostgreSQL {server} at {} (schema {v}/{latest})", self.location),
            },
            Err(e) => StoreHealth { backend: "postgres", ok: false, schema_version: 0, detail: e.to_string() },
        }
    }

    async fn put_token(&self, record: TokenRecord) -> Result<()> {
        let now = ms(self.clock.now());
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, principal, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(&record.token_hash)
        .bind(&record.principal.name)
        .bind(record.principal.role.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn principal_for_token(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT principal, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.map(|(name, role)| Principal { name, role: Role::parse(&role).unwrap_or(Role::Viewer) }))
    }

    async fn has_tokens(&self) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn find_idempotent(&self, key: &mc_store::IdempotencyKey) -> Result<Option<(String, String)>> {
        idempotency_find(&mut *self.conn().await?, key).await
    }

    // ---- missions ----

    async fn create_mission(&self, ctx: &WriteCtx, new: NewMission) -> Result<Created<Mission>> {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let id = MissionId::new();
            if let Claimed::Replay(id, extra) = idempotency_claim(&mut tx, ctx, "mission", &id.to_string(), now).await?
            {
                let value = load_mission(&mut tx, MissionId::parse_field(&id, "id")?, Lock::None).await?;
                return Ok(Created { value, replayed: true, extra });
            }
            let m = Mission {
                id,
                name: new.name,
                description: new.description,
                status: ScopeStatus::Active,
                created_at: now,
                updated_at: now,
            };
            sqlx::query(
                "INSERT INTO missions (id, name, description, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(m.id.as_uuid())
            .bind(&m.name)
            .bind(&m.description)
            .bind(m.status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            append_ledger(&mut tx, ctx, "mission.create", "mission", &m.id.to_string(), &m, now).await?;
            Ok(Created { value: m, replayed: false, extra: None })
        }
        .await;
        finish(tx, out).await
    }

    async fn get_mission(&self, id: MissionId) -> Result<Mission> {
        load_mission(&mut *self.conn().await?, id, Lock::None).await
    }

    async fn list_missions(&self, f: &ScopeFilter) -> Result<Page<Mission>> {
        let after = cursor_id(&f.cursor)?;
        let rows = sqlx::query(
            "SELECT id, name, description, status, created_at, updated_at FROM missions \
             WHERE ($1::uuid IS NULL OR id > $1) AND ($2 OR status = 'active') ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(f.include_archived)
        .bind(limit_of(f.limit).saturating_add(1))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let items = rows.iter().map(mission_from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, f.limit, |m| m.id.to_string()))
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
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let id = KlusterId::new();
            if let Claimed::Replay(id, extra) = idempotency_claim(&mut tx, ctx, "kluster", &id.to_string(), now).await?
            {
                let value = load_kluster(&mut tx, KlusterId::parse_field(&id, "id")?, Lock::None).await?;
                return Ok(Created { value, replayed: true, extra });
            }
            let mission = load_mission(&mut tx, new.mission_id, Lock::Share).await?;
            ensure_active("mission", &mission.id.to_string(), mission.status)?;
            let k = Kluster {
                id,
                mission_id: new.mission_id,
                name: new.name,
                description: new.description,
                status: ScopeStatus::Active,
                created_at: now,
                updated_at: now,
            };
            sqlx::query(
                "INSERT INTO klusters (id, mission_id, name, description, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(k.id.as_uuid())
            .bind(k.mission_id.as_uuid())
            .bind(&k.name)
            .bind(&k.description)
            .bind(k.status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            append_ledger(&mut tx, ctx, "kluster.create", "kluster", &k.id.to_string(), &k, now).await?;
            Ok(Created { value: k, replayed: false, extra: None })
        }
        .await;
        finish(tx, out).await
    }

    async fn get_kluster(&self, id: KlusterId) -> Result<Kluster> {
        load_kluster(&mut *self.conn().await?, id, Lock::None).await
    }

    async fn list_klusters(&self, f: &ScopeFilter) -> Result<Page<Kluster>> {
        let after = cursor_id(&f.cursor)?;
        let rows = sqlx::query(
            "SELECT id, mission_id, name, description, status, created_at, updated_at FROM klusters \
             WHERE ($1::uuid IS NULL OR id > $1) AND ($2 OR status = 'active') \
             AND ($3::uuid IS NULL OR mission_id = $3) ORDER BY id LIMIT $4",
        )
        .bind(after)
        .bind(f.include_archived)
        .bind(f.mission_id.map(|m| m.as_uuid()))
        .bind(limit_of(f.limit).saturating_add(1))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let items = rows.iter().map(kluster_from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, f.limit, |k| k.id.to_string()))
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
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let id = TaskId::new();
            if let Claimed::Replay(id, extra) = idempotency_claim(&mut tx, ctx, "task", &id.to_string(), now).await? {
                let value = load_task(&mut tx, TaskId::parse_field(&id, "id")?, false).await?;
                return Ok(Created { value, replayed: true, extra });
            }
            let kluster = load_kluster(&mut tx, new.kluster_id, Lock::Share).await?;
            ensure_active("kluster", &kluster.id.to_string(), kluster.status)?;
            check_deps_exist(&mut tx, kluster.mission_id, &new.depends_on).await?;
            let task = Task {
                id,
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
            insert_task(&mut tx, &task).await?;
            append_ledger(&mut tx, ctx, "task.create", "task", &task.id.to_string(), &task, now).await?;
            Ok(Created { value: task, replayed: false, extra: None })
        }
        .await;
        finish(tx, out).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        load_task(&mut *self.conn().await?, id, false).await
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<Page<Task>> {
        let after = cursor_id(&f.cursor)?;
        let mut sql = String::from(concat!("SELECT ", t_task_columns!(), " FROM tasks t WHERE true"));
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if after.is_some() {
            sql.push_str(&format!(" AND t.id > ${}", next()));
        }
        if f.kluster_id.is_some() {
            sql.push_str(&format!(" AND t.kluster_id = ${}", next()));
        }
        if f.mission_id.is_some() {
            sql.push_str(&format!(" AND t.mission_id = ${}", next()));
        }
        if !f.statuses.is_empty() {
            sql.push_str(&format!(" AND t.status = ANY(${}::text[])", next()));
        }
        if f.label.is_some() {
            sql.push_str(&format!(" AND t.labels @> ARRAY[${}::text]", next()));
        }
        if f.holder.is_some() {
            sql.push_str(&format!(" AND t.holder = ${}", next()));
        }
        sql.push_str(" ORDER BY t.id LIMIT $1");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(limit_of(f.limit).saturating_add(1));
        if let Some(a) = after {
            q = q.bind(a);
        }
        if let Some(k) = f.kluster_id {
            q = q.bind(k.as_uuid());
        }
        if let Some(m) = f.mission_id {
            q = q.bind(m.as_uuid());
        }
        if !f.statuses.is_empty() {
            q = q.bind(f.statuses.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>());
        }
        if let Some(l) = &f.label {
            q = q.bind(l.trim().to_lowercase());
        }
        if let Some(h) = &f.holder {
            q = q.bind(h.clone());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        let items = rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, f.limit, |t| t.id.to_string()))
    }

    async fn ready_tasks(&self, f: &ReadyFilter) -> Result<Vec<Task>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            t_task_columns!(),
            " FROM tasks t WHERE ",
            ready_where!(),
            " AND ($1::uuid IS NULL OR t.kluster_id = $1) AND ($2::uuid IS NULL OR t.mission_id = $2) \
             ORDER BY t.priority, t.created_at, t.id LIMIT $3"
        ))
        .bind(f.kluster_id.map(|k| k.as_uuid()))
        .bind(f.mission_id.map(|m| m.as_uuid()))
        .bind(limit_of(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn update_task(&self, ctx: &WriteCtx, id: TaskId, patch: TaskPatch, fence: Option<u64>) -> Result<Task> {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let mut t = load_task(&mut tx, id, true).await?;
            let before = t.clone();
            if t.status.is_terminal() {
                return Err(Error::conflict(
                    "task_closed",
                    format!("task {} is {} and can no longer be changed", t.id, t.status),
                    json!({ "task_id": t.id, "status": t.status }),
                ));
            }
            t.check_fence(&ctx.actor, fence, now)?;
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
                t.labels = v;
            }
            let mut deps_changed = false;
            if let Some(deps) = patch.depends_on
                && deps != t.depends_on
            {
                check_deps_exist(&mut tx, t.mission_id, &deps).await?;
                let edges = mission_edges(&mut tx, t.mission_id).await?;
                let cycle = find_cycle(t.id, &deps, |n| Ok(edges.get(&n).cloned().unwrap_or_default()))?;
                if let Some(cycle) = cycle {
                    return Err(cycle_error(&cycle));
                }
                t.depends_on = deps;
                deps_changed = true;
            }
            save_changed_task(&mut tx, ctx, "task.update", &before, t, deps_changed, now).await
        }
        .await;
        finish(tx, out).await
    }

    async fn transition_task(&self, ctx: &WriteCtx, id: TaskId, to: TaskStatus, fence: Option<u64>) -> Result<Task> {
        self.mutate_task(ctx, id, "task.transition", move |t, actor, now| {
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
            Ok(())
        })
        .await
    }

    // ---- ownership ----

    async fn claim_task(&self, ctx: &WriteCtx, id: TaskId, ttl: Duration) -> Result<Task> {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let mut t = load_task(&mut tx, id, true).await?;
            let before = t.clone();
            claim_loaded(&mut tx, &mut t, &ctx.actor, now, ttl).await?;
            save_changed_task(&mut tx, ctx, "task.claim", &before, t, false, now).await
        }
        .await;
        finish(tx, out).await
    }

    async fn claim_next_task(&self, ctx: &WriteCtx, kluster: KlusterId, ttl: Duration) -> Result<Option<Task>> {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            load_kluster(&mut tx, kluster, Lock::None).await?;
            // the most urgent ready task that no other transaction holds right now
            let row = sqlx::query(concat!(
                "SELECT ",
                t_task_columns!(),
                " FROM tasks t WHERE t.kluster_id = $1 AND ",
                ready_where!(),
                " ORDER BY t.priority, t.created_at, t.id LIMIT 1 FOR NO KEY UPDATE OF t SKIP LOCKED"
            ))
            .bind(kluster.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(row) = row else { return Ok(None) };
            let mut t = task_from_row(&row)?;
            let before = t.clone();
            claim_loaded(&mut tx, &mut t, &ctx.actor, now, ttl).await?;
            save_changed_task(&mut tx, ctx, "task.claim", &before, t, false, now).await.map(Some)
        }
        .await;
        finish(tx, out).await
    }

    async fn heartbeat_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64, ttl: Duration) -> Result<Task> {
        self.mutate_task(ctx, id, "task.heartbeat", move |t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            if let Some(l) = t.lease.as_mut() {
                l.expires_at = now + chrono_dur(ttl);
            }
            Ok(())
        })
        .await
    }

    async fn release_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task> {
        self.mutate_task(ctx, id, "task.release", move |t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            t.lease = None;
            t.status = TaskStatus::Open;
            Ok(())
        })
        .await
    }

    async fn complete_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task> {
        self.mutate_task(ctx, id, "task.complete", move |t, actor, now| {
            if t.lease.is_none() {
                return Err(not_held(t));
            }
            t.check_fence(actor, Some(fence), now)?;
            t.status.check_transition(TaskStatus::Done)?;
            t.lease = None;
            t.status = TaskStatus::Done;
            Ok(())
        })
        .await
    }

    async fn reap_expired_leases(&self, limit: usize) -> Result<Vec<Task>> {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            // tasks being changed right now are skipped: their lease is looked at next time
            let rows = sqlx::query(concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE holder IS NOT NULL AND lease_expires_at <= $1 \
                 ORDER BY lease_expires_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
            ))
            .bind(now)
            .bind(limit_of(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            let ctx = WriteCtx::new(Actor::system());
            let mut out = Vec::with_capacity(rows.len());
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut t = task_from_row(row)?;
                let before = t.status;
                t.lease = None;
                t.status = TaskStatus::Open;
                t.updated_at = now;
                save_task(&mut tx, &t, false).await?;
                let changed = search::Changed { status: before != t.status, ..Default::default() };
                search::reindex(&mut tx, &t, changed).await?;
                events.push(PendingEvent::new(&ctx, "task.lease_expired", "task", t.id.to_string(), &t));
                out.push(t);
            }
            // one append for the batch, after every row lock is taken
            append_events(&mut tx, events, now).await?;
            Ok(out)
        }
        .await;
        finish(tx, out).await
    }

    // ---- search ----

    async fn search_tasks(&self, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        // a transaction only to scope the scan settings (`SET LOCAL`) to this search
        let (mut tx, _) = self.begin().await?;
        let out = search::search(&mut tx, req).await;
        finish(tx, out).await
    }

    async fn search_tasks_while(&self, req: &SearchRequest, mut vector: PendingVector<'_>) -> Result<Vec<SearchHit>> {
        if let Some(vector) = mc_store::vector_if_ready(&mut vector) {
            return self.search_tasks(&SearchRequest { vector, ..req.clone() }).await;
        }
        // full text on a connection of its own while the vector is computed
        let text = async { search::text_part(&mut *self.conn().await?, req).await };
        let (text, vector) = tokio::join!(text, vector);
        let (text, req) = (text?, SearchRequest { vector, ..req.clone() });
        let (mut tx, _) = self.begin().await?;
        let out = search::rank(&mut tx, &req, text).await;
        finish(tx, out).await
    }

    async fn tasks_with_paths(&self, filter: &SearchFilter, limit: usize) -> Result<Vec<Task>> {
        search::with_paths(&mut *self.conn().await?, filter, limit).await
    }

    async fn pending_embeddings_from(
        &self,
        model: &str,
        limit: usize,
        from: &TextCursor,
    ) -> Result<PendingPage<EmbeddingJob>> {
        search::pending(&mut *self.conn().await?, model, limit, from).await
    }

    async fn put_embeddings(&self, model: &str, mut items: Vec<Embedded>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        // the tables first, each created (if new) in its own committed transaction
        let mut tables = HashMap::new();
        {
            let mut c = self.conn().await?;
            for e in &items {
                let dim = e.vector.len();
                if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(dim) {
                    slot.insert(search::ensure_vec_table(&mut c, model, dim).await?);
                }
            }
        }
        // rows in the same order in every batch: two batches never deadlock
        items.sort_by_key(|e| e.task_id);
        let (mut tx, _) = self.begin().await?;
        let out = async {
            for e in &items {
                let table = tables.get(&e.vector.len()).ok_or_else(|| Error::Internal("no vector table".into()))?;
                search::put(&mut tx, model, table, e).await?;
            }
            Ok(())
        }
        .await;
        finish(tx, out).await
    }

    async fn task_embedding(&self, id: TaskId, model: &str) -> Result<Option<Vec<f32>>> {
        search::embedding_of(&mut *self.conn().await?, id, model).await
    }

    async fn search_klusters(&self, req: &SearchRequest) -> Result<Vec<KlusterHit>> {
        kluster_search::search(&mut *self.conn().await?, req).await
    }

    async fn pending_kluster_embeddings(&self, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>> {
        let job = |k: Kluster, text, text_hash| KlusterEmbeddingJob { kluster_id: k.id, text, text_hash };
        plain_search::pending(&mut *self.conn().await?, model, limit, job).await
    }

    async fn put_kluster_embeddings(&self, model: &str, items: Vec<KlusterEmbedded>) -> Result<()> {
        let items = items.into_iter().map(|e| (e.kluster_id.as_uuid(), e.text_hash, e.vector)).collect();
        self.put_plain_embeddings::<Kluster>(model, items).await
    }

    // ---- docs and artifacts ----

    async fn create_doc(&self, ctx: &WriteCtx, new: NewDoc) -> Result<Created<Doc>> {
        let (mut tx, now) = self.begin().await?;
        let out = docs::create(&mut tx, ctx, new, now).await;
        finish(tx, out).await
    }

    async fn get_doc(&self, id: DocId) -> Result<Doc> {
        docs::load(&mut *self.conn().await?, id, false).await
    }

    async fn list_docs(&self, filter: &DocFilter) -> Result<Page<Doc>> {
        docs::list(&mut *self.conn().await?, filter).await
    }

    async fn update_doc(&self, ctx: &WriteCtx, id: DocId, patch: DocPatch, if_version: Option<u64>) -> Result<Doc> {
        let (mut tx, now) = self.begin().await?;
        let out = docs::update(&mut tx, ctx, id, patch, if_version, now).await;
        finish(tx, out).await
    }

    async fn search_docs(&self, req: &SearchRequest, kind: Option<DocKind>) -> Result<Vec<DocHit>> {
        // a transaction only to scope the vector index scan settings (`SET LOCAL`) to this search
        let (mut tx, _) = self.begin().await?;
        let out = docs::search(&mut tx, req, kind).await;
        finish(tx, out).await
    }

    async fn pending_doc_embeddings(&self, model: &str, limit: usize) -> Result<Vec<DocEmbeddingJob>> {
        let job = |d: Doc, text, text_hash| DocEmbeddingJob { doc_id: d.id, text, text_hash };
        plain_search::pending(&mut *self.conn().await?, model, limit, job).await
    }

    async fn put_doc_embeddings(&self, model: &str, items: Vec<DocEmbedded>) -> Result<()> {
        let items = items.into_iter().map(|e| (e.doc_id.as_uuid(), e.text_hash, e.vector)).collect();
        self.put_plain_embeddings::<Doc>(model, items).await
    }

    // ---- ledger ----

    async fn list_ledger(&self, f: &LedgerFilter) -> Result<Vec<LedgerEvent>> {
        let mut sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq > $1");
        let mut values: Vec<&str> = Vec::new();
        for (col, v) in
            [("entity_id", &f.entity_id), ("entity_kind", &f.entity_kind), ("action", &f.action), ("actor", &f.actor)]
        {
            if let Some(v) = v {
                values.push(v);
                sql.push_str(&format!(" AND {col} = ${}", values.len() + 2));
            }
        }
        sql.push_str(" ORDER BY seq LIMIT $2");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(f.after_seq.unwrap_or(0)).bind(limit_of(f.limit));
        for v in values {
            q = q.bind(v);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(ledger_from_row).collect()
    }

    async fn verify_ledger(&self) -> Result<LedgerVerification> {
        const CHUNK: i64 = 10_000;
        let mut c = self.conn().await?;
        let mut v = ChainVerifier::default();
        let mut after = i64::MIN;
        loop {
            let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2");
            let rows =
                sqlx::query(AssertSqlSafe(sql)).bind(after).bind(CHUNK).fetch_all(&mut *c).await.map_err(db_err)?;
            for row in &rows {
                let e = ledger_from_row(row)?;
                after = e.seq;
                if let Err(bad) = v.push(&e) {
                    return Ok(bad);
                }
            }
            if (rows.len() as i64) < CHUNK {
                return Ok(v.finish());
            }
        }
    }
}

impl PgStore {
    /// Stores vectors of klusters or docs in one transaction.
    async fn put_plain_embeddings<T: plain_search::Searchable>(
        &self,
        model: &str,
        mut items: Vec<plain_search::Vectored>,
    ) -> Result<()> {
        // rows in the same order in every batch: two batches never deadlock
        items.sort_by_key(|e| e.0);
        let mut dims: Vec<usize> = items.iter().map(|e| e.2.len()).collect();
        dims.sort_unstable();
        dims.dedup();
        for dim in dims {
            plain_search::ensure_index::<T>(&mut *self.conn().await?, model, dim).await?;
        }
        let (mut tx, _) = self.begin().await?;
        let out = async {
            for e in &items {
                plain_search::put::<T>(&mut tx, model, e).await?;
            }
            Ok(())
        }
        .await;
        finish(tx, out).await
    }

    async fn change_mission<F>(&self, ctx: &WriteCtx, id: MissionId, action: &'static str, f: F) -> Result<Mission>
    where
        F: FnOnce(&mut Mission) -> Result<()> + Send,
    {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let mut m = load_mission(&mut tx, id, Lock::Update).await?;
            f(&mut m)?;
            m.updated_at = now;
            sqlx::query("UPDATE missions SET name = $2, description = $3, status = $4, updated_at = $5 WHERE id = $1")
                .bind(m.id.as_uuid())
                .bind(&m.name)
                .bind(&m.description)
                .bind(m.status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            append_ledger(&mut tx, ctx, action, "mission", &m.id.to_string(), &m, now).await?;
            Ok(m)
        }
        .await;
        finish(tx, out).await
    }

    async fn change_kluster<F>(&self, ctx: &WriteCtx, id: KlusterId, action: &'static str, f: F) -> Result<Kluster>
    where
        F: FnOnce(&mut Kluster) -> Result<()> + Send,
    {
        let (mut tx, now) = self.begin().await?;
        let out = async {
            let mut k = load_kluster(&mut tx, id, Lock::Update).await?;
            f(&mut k)?;
            k.updated_at = now;
            sqlx::query("UPDATE klusters SET name = $2, description = $3, status = $4, updated_at = $5 WHERE id = $1")
                .bind(k.id.as_uuid())
                .bind(&k.name)
                .bind(&k.description)
                .bind(k.status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            append_ledger(&mut tx, ctx, action, "kluster", &k.id.to_string(), &k, now).await?;
            Ok(k)
        }
        .await;
        finish(tx, out).await
    }
}
