//! Search on PostgreSQL: full text over an english `tsvector` per task (GIN index) and nearest
//! neighbours over pgvector tables, one per model and dimension, each with an HNSW index on
//! cosine distance; both are filtered by mission, kluster, status and labels and fused by
//! reciprocal rank exactly as on the embedded profile.

use std::collections::HashMap;

use mc_domain::id::Uuid;
use mc_domain::ledger::sha256_hex;
use mc_domain::{Error, Result, Task, TaskId};
use mc_store::fusion::fuse;
use mc_store::{Embedded, EmbeddingJob, PendingPage, SearchFilter, SearchHit, SearchRequest, TextCursor};
use pgvector::Vector;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};

use crate::rows::{db_err, t_task_columns, task_from_row};

/// Candidates taken from each index before fusion, per requested result.
pub(crate) const OVERSAMPLE: usize = 4;
/// Most documents the full-text stage ranks (as on the embedded profile): the words searched for
/// are the rarest ones whose documents add up to at most this many. Rare words say most about
/// which task is meant; a word found in thousands of documents would make every query slow
/// while barely changing the ranking.
const RANK_BUDGET: i64 = 1_000;
/// Largest dimension an HNSW index takes for `vector`; larger vectors are searched exactly.
pub(crate) const HNSW_MAX_DIM: usize = 2_000;
/// Largest dimension stored at all (as on the embedded profile).
const MAX_DIM: usize = 8_192;

/// Words too common to search for (the embedded profile's list, so both rank the same words).
const FTS_STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "for", "of", "in", "on", "with", "and", "or", "by", "from", "at", "as", "is", "are", "be",
    "it", "its", "into", "this", "that", "we", "our", "should", "can", "so", "all", "any", "when", "after", "before",
];

/// Hash of the text a vector was made from.
pub(crate) fn text_hash(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// The vector table of one model and dimension: vectors of different models never share a table
/// (so they are never compared, and a model change starts a fresh index). The name is derived
/// from a hash, so it is always a safe identifier.
pub(crate) fn vec_table(model: &str, dim: usize) -> String {
    format!("task_vec_{}", index_key(model, dim))
}

/// The key of a model and dimension among vector tables and indexes (hex digits and a number,
/// so it is safe in an identifier and a literal). Migration 0007 computes the same in SQL.
pub(crate) fn index_key(model: &str, dim: usize) -> String {
    format!("{}_{dim}", &sha256_hex(model.as_bytes())[..12])
}

/// The full-text document of a task: title (weight A), description (B), labels (C), from the
/// three parameters numbered from `first`.
fn tsv_sql(first: usize) -> String {
    format!(
        "setweight(to_tsvector('english', ${}), 'A') || setweight(to_tsvector('english', ${}), 'B') \
         || setweight(to_tsvector('english', ${}), 'C')",
        first,
        first + 1,
        first + 2
    )
}

/// Indexes a new task (its search document), in the transaction that creates it.
pub(crate) async fn index_new(c: &mut PgConnection, t: &Task) -> Result<()> {
    let sql = format!(
        "INSERT INTO task_search (task_id, mission_id, kluster_id, status, labels, text_hash, tsv) \
         VALUES ($1, $2, $3, $4, $5, $6, {})",
        tsv_sql(7)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(t.id.as_uuid())
        .bind(t.mission_id.as_uuid())
        .bind(t.kluster_id.as_uuid())
        .bind(t.status.as_str())
        .bind(&t.labels)
        .bind(text_hash(&t.embedding_text()))
        .bind(&t.title)
        .bind(&t.description)
        .bind(t.labels.join(" "))
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// What changed in a task, for its search rows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Changed {
    /// Title or description: the text that is embedded.
    pub embedded_text: bool,
    pub labels: bool,
    pub status: bool,
}

/// Re-indexes a changed task in the transaction that changed it: the document when its text
/// changed, the status column when its status did (a heartbeat touches nothing here). Its
/// vectors follow: dropped when the embedded text changed (the worker embeds the new one),
/// otherwise given the new status and labels, so every filter applies inside the index scan.
pub(crate) async fn reindex(c: &mut PgConnection, t: &Task, changed: Changed) -> Result<()> {
    if changed.embedded_text || changed.labels {
        let sql = format!(
            "UPDATE task_search SET status = $2, labels = $3, text_hash = $4, tsv = {} WHERE task_id = $1",
            tsv_sql(5)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(t.id.as_uuid())
            .bind(t.status.as_str())
            .bind(&t.labels)
            .bind(text_hash(&t.embedding_text()))
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.labels.join(" "))
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    } else if changed.status {
        sqlx::query("UPDATE task_search SET status = $2 WHERE task_id = $1")
            .bind(t.id.as_uuid())
            .bind(t.status.as_str())
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    if !(changed.embedded_text || changed.labels || changed.status) {
        return Ok(());
    }
    let tables: Vec<(String, i32)> = if changed.embedded_text {
        sqlx::query_as("DELETE FROM task_embeddings WHERE task_id = $1 RETURNING model, dim")
    } else {
        sqlx::query_as("SELECT model, dim FROM task_embeddings WHERE task_id = $1")
    }
    .bind(t.id.as_uuid())
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    for (model, dim) in tables {
        let table = vec_table(&model, dim as usize);
        let q = if changed.embedded_text {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE task_id = $1"))).bind(t.id.as_uuid())
        } else {
            sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET status = $2, labels = $3 WHERE task_id = $1")))
                .bind(t.id.as_uuid())
                .bind(t.status.as_str())
                .bind(&t.labels)
        };
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

/// One page of the embedding worker's walk (see [`TextCursor`]): the marks are the writing
/// transactions' ids (`text_xid`, ties broken by task id), and the first unsettled mark is the
/// oldest transaction still running in the page's snapshot, read in the same snapshot.
pub(crate) async fn pending(
    c: &mut PgConnection,
    model: &str,
    limit: usize,
    from: &TextCursor,
) -> Result<PendingPage<EmbeddingJob>> {
    if limit == 0 {
        return Ok(PendingPage { jobs: vec![], next: from.clone() });
    }
    let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(db_err)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let top: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let (below_mark, below_task) = match &from.after {
        Some((mark, task)) => {
            let task = mc_domain::id::Uuid::parse_str(task)
                .map_err(|e| Error::validation("cursor", format!("not a task id: {e}")))?;
            (*mark, task)
        }
        None => (i64::MAX, mc_domain::id::Uuid::max()),
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        t_task_columns!(),
        ", p.text_xid::text::bigint AS mark FROM (SELECT s.task_id, s.text_xid FROM task_search s \
             LEFT JOIN task_embeddings e ON e.task_id = s.task_id AND e.model = $1 \
             WHERE s.text_xid >= $2::text::xid8 AND (s.text_xid, s.task_id) < ($3::text::xid8, $4) \
             AND e.text_hash IS DISTINCT FROM s.text_hash \
             ORDER BY s.text_xid DESC, s.task_id DESC LIMIT $5) p \
         JOIN tasks t ON t.id = p.task_id ORDER BY p.text_xid DESC, p.task_id DESC"
    ))
    .bind(model)
    .bind(from.done_below.to_string())
    .bind(below_mark.to_string())
    .bind(below_task)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let mut jobs = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in &rows {
        let t = task_from_row(r)?;
        let mark: i64 = sqlx::Row::try_get(r, "mark").map_err(db_err)?;
        last = Some((mark, t.id.to_string()));
        let text = t.embedding_text();
        jobs.push(EmbeddingJob { task_id: t.id, text_hash: text_hash(&text), text });
    }
    let next = from.advance(top, last.filter(|_| jobs.len() >= limit));
    Ok(PendingPage { jobs, next })
}

/// Creates the vector table of a model and dimension (and its HNSW index) unless it exists, in
/// its own transaction: DDL commits before any vector is written, and concurrent callers wait on
/// an advisory lock instead of racing to create the same table.
pub(crate) async fn ensure_vec_table(c: &mut PgConnection, model: &str, dim: usize) -> Result<String> {
    if dim == 0 || dim > MAX_DIM {
        return Err(Error::validation("vector", format!("dimension {dim} is not supported")));
    }
    let table = vec_table(model, dim);
    let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&table)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM vector_indexes WHERE table_name = $1)")
        .bind(&table)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if !exists {
        let mut ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 task_id    uuid PRIMARY KEY REFERENCES tasks (id),
                 model      text NOT NULL,
                 text_hash  text NOT NULL,
                 mission_id uuid NOT NULL,
                 kluster_id uuid NOT NULL,
                 status     text NOT NULL,
                 labels     text[] NOT NULL,
                 embedding  vector({dim}) NOT NULL
             ) WITH (fillfactor = 80);"
        );
        if dim <= HNSW_MAX_DIM {
            ddl.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops);"
            ));
        }
        // exact scans of one mission (when the graph walk comes back short)
        ddl.push_str(&format!("CREATE INDEX IF NOT EXISTS {table}_mission ON {table} (mission_id);"));
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query("INSERT INTO vector_indexes (model, dim, table_name) VALUES ($1, $2, $3)")
            .bind(model)
            .bind(dim as i32)
            .bind(&table)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tracing::info!(model, dim, table, "created a vector table");
    }
    tx.commit().await.map_err(db_err)?;
    Ok(table)
}

/// Whether the vector table of a model and dimension exists.
async fn vec_table_exists(c: &mut PgConnection, model: &str, dim: usize) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM vector_indexes WHERE model = $1 AND dim = $2)")
        .bind(model)
        .bind(dim as i32)
        .fetch_one(c)
        .await
        .map_err(db_err)
}

/// Stores one vector (the table exists); a vector made from a text that is no longer the task's
/// is ignored.
pub(crate) async fn put(c: &mut PgConnection, model: &str, table: &str, e: &Embedded) -> Result<()> {
    // the share lock keeps the text from changing until this vector is stored (a change of
    // text drops the task's vectors in its own transaction)
    let doc: Option<(Uuid, Uuid, String, Vec<String>, String)> = sqlx::query_as(
        "SELECT mission_id, kluster_id, status, labels, text_hash FROM task_search WHERE task_id = $1 FOR SHARE",
    )
    .bind(e.task_id.as_uuid())
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    let Some((mission, kluster, status, labels, current)) = doc else { return Ok(()) };
    if current != e.text_hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    let dim = e.vector.len() as i32;
    // a task has one vector per model; drop any other dimension it had for this model
    let old_dims: Vec<i32> =
        sqlx::query_scalar("SELECT dim FROM task_embeddings WHERE task_id = $1 AND model = $2 AND dim <> $3")
            .bind(e.task_id.as_uuid())
            .bind(model)
            .bind(dim)
            .fetch_all(&mut *c)
            .await
            .map_err(db_err)?;
    for d in old_dims {
        let sql = format!("DELETE FROM {} WHERE task_id = $1", vec_table(model, d as usize));
        sqlx::query(AssertSqlSafe(sql)).bind(e.task_id.as_uuid()).execute(&mut *c).await.map_err(db_err)?;
    }
    let sql = format!(
        "INSERT INTO {table} (task_id, model, text_hash, mission_id, kluster_id, status, labels, embedding) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (task_id) DO UPDATE SET text_hash = excluded.text_hash, status = excluded.status, \
         labels = excluded.labels, embedding = excluded.embedding"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(e.task_id.as_uuid())
        .bind(model)
        .bind(&e.text_hash)
        .bind(mission)
        .bind(kluster)
        .bind(status)
        .bind(labels)
        .bind(Vector::from(e.vector.clone()))
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO task_embeddings (task_id, model, text_hash, dim) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (task_id, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim",
    )
    .bind(e.task_id.as_uuid())
    .bind(model)
    .bind(&e.text_hash)
    .bind(dim)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The current vector of a task for a model (none when it was made from an older text).
pub(crate) async fn embedding_of(c: &mut PgConnection, task: TaskId, model: &str) -> Result<Option<Vec<f32>>> {
    let row: Option<i32> = sqlx::query_scalar(
        "SELECT e.dim FROM task_embeddings e JOIN task_search s ON s.task_id = e.task_id \
         WHERE e.task_id = $1 AND e.model = $2 AND e.text_hash = s.text_hash",
    )
    .bind(task.as_uuid())
    .bind(model)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    let Some(dim) = row else { return Ok(None) };
    let sql = format!(
        "SELECT v.embedding FROM {} v JOIN task_search s ON s.task_id = v.task_id \
         WHERE v.task_id = $1 AND v.model = $2 AND v.text_hash = s.text_hash",
        vec_table(model, dim as usize)
    );
    let v: Option<Vector> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(task.as_uuid())
        .bind(model)
        .fetch_optional(c)
        .await
        .map_err(db_err)?;
    Ok(v.map(|v| v.to_vec()))
}

/// The meaningful words of a query, lower-cased, deduplicated.
pub(crate) fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 2 && !FTS_STOPWORDS.contains(&w.as_str()))
        .collect();
    words.sort();
    words.dedup();
    words.truncate(32);
    words
}

/// A lexeme quoted for the `tsquery` syntax.
fn quote_lexeme(l: &str) -> String {
    format!("'{}'", l.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `tsquery` for free text, with bounded cost: the words are stemmed by the english
/// configuration (its stop words dropped), and the rarest lexemes whose documents fit the
/// ranking budget are OR-ed (ranking does the rest); if even the rarest is too common, all of
/// them are AND-ed (which only near restatements match) and not ranked (see [`TsQuery::ranked`]).
/// How many documents hold a
/// common lexeme is estimated from the frequencies ANALYZE keeps for `task_search.tsv` (no
/// index scan), times the rows the table holds now: the rows per page ANALYZE saw times its
/// pages now, as the planner estimates (a table that grew since ANALYZE would otherwise look
/// smaller than it is, and a common lexeme rare enough to rank). A lexeme it does not list is
/// rare, and counted exactly (up to the budget).
/// Lexemes found nowhere are left out, as on the embedded profile.
/// `table` is the one holding the `tsv` column searched (`task_search`, `docs`, `klusters`).
pub(crate) async fn ts_query(c: &mut PgConnection, table: &'static str, text: &str) -> Result<Option<TsQuery>> {
    let words = query_words(text);
    if words.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "WITH st AS (SELECT most_common_elems::text::text[] AS e, most_common_elem_freqs AS f \
                     FROM pg_stats WHERE schemaname = current_schema() AND tablename = $3 \
                     AND attname = 'tsv'), \
              l AS (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', w))) AS lex \
                    FROM unnest($1::text[]) AS w), \
              p AS (SELECT l.lex, array_position(st.e, l.lex) AS pos, st.f FROM l LEFT JOIN st ON true) \
         SELECT CASE WHEN p.pos IS NOT NULL \
                THEN p.f[p.pos]::float8 * (SELECT CASE WHEN relpages > 0 \
                                            THEN reltuples::float8 / relpages \
                                                 * (pg_relation_size(oid) / current_setting('block_size')::float8) \
                                            ELSE GREATEST(reltuples, 0)::float8 END \
                                            FROM pg_class WHERE oid = to_regclass($3)) \
                ELSE (SELECT count(*) FROM (SELECT 1 FROM {table} s \
                      WHERE s.tsv @@ plainto_tsquery('simple', p.lex) LIMIT $2) x)::float8 END, p.lex \
         FROM p"
    );
    let mut counted: Vec<(f64, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&words)
        .bind(RANK_BUDGET + 1)
        .bind(table)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?;
    counted.retain(|(docs, _)| *docs > 0.0);
    if counted.is_empty() {
        return Ok(None);
    }
    counted.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut specific = Vec::new();
    let mut total = 0.0;
    for (docs, lex) in &counted {
        if total + docs > RANK_BUDGET as f64 {
            break;
        }
        total += docs;
        specific.push(quote_lexeme(lex));
    }
    if !specific.is_empty() {
        return Ok(Some(TsQuery { expr: specific.join(" | "), ranked: true }));
    }
    let expr = counted.iter().map(|(_, l)| quote_lexeme(l)).collect::<Vec<_>>().join(" & ");
    Ok(Some(TsQuery { expr, ranked: false }))
}

/// A full-text match and whether its documents are few enough to rank.
pub(crate) struct TsQuery {
    pub(crate) expr: String,
    /// False when every lexeme is too common to rank and all of them are AND-ed: every match
    /// holds every lexeme, so ranking would only reorder near equals at a `ts_rank_cd` per
    /// document (and counting them first would cost a scan of their own). The newest matches are
    /// taken (task ids are time-ordered), and the vector half of the search orders what is alike.
    pub(crate) ranked: bool,
}

/// Filter clauses on `task_search s` or a vector table `v`, with their values bound in order.
struct Filters {
    sql: String,
    mission: Option<Uuid>,
    kluster: Option<Uuid>,
    statuses: Option<Vec<String>>,
    labels: Option<Vec<String>>,
}

impl Filters {
    /// `first` is the number of the first placeholder; `a` the alias of the filtered table.
    fn new(f: &SearchFilter, first: usize, a: &str) -> Self {
        let mut sql = String::new();
        let mut n = first;
        let mut next = || {
            let p = n;
            n += 1;
            p
        };
        let mission = f.mission_id.map(|m| m.as_uuid());
        if mission.is_some() {
            sql.push_str(&format!(" AND {a}.mission_id = ${}", next()));
        }
        let kluster = f.kluster_id.map(|k| k.as_uuid());
        if kluster.is_some() {
            sql.push_str(&format!(" AND {a}.kluster_id = ${}", next()));
        }
        let statuses = (!f.statuses.is_empty()).then(|| f.statuses.iter().map(|s| s.as_str().to_owned()).collect());
        if statuses.is_some() {
            sql.push_str(&format!(" AND {a}.status = ANY(${}::text[])", next()));
        }
        let labels = (!f.labels.is_empty()).then(|| f.labels.iter().map(|l| l.trim().to_lowercase()).collect());
        if labels.is_some() {
            sql.push_str(&format!(" AND {a}.labels @> ${}::text[]", next()));
        }
        Self { sql, mission, kluster, statuses, labels }
    }

    fn bind<'q>(self, mut q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        if let Some(m) = self.mission {
            q = q.bind(m);
        }
        if let Some(k) = self.kluster {
            q = q.bind(k);
        }
        if let Some(s) = self.statuses {
            q = q.bind(s);
        }
        if let Some(l) = self.labels {
            q = q.bind(l);
        }
        q
    }
}

/// Full-text candidates, best first.
async fn text_candidates(c: &mut PgConnection, tsquery: &TsQuery, f: &SearchFilter, n: usize) -> Result<Vec<Task>> {
    let filters = Filters::new(f, 3, "s");
    let (rank, inner_order, outer_order) = if tsquery.ranked {
        ("ts_rank_cd(s.tsv, $1::tsquery)", "rank DESC, s.task_id", "f.rank DESC, f.task_id")
    } else {
        ("0::real", "s.task_id DESC", "f.task_id DESC")
    };
    let sql = format!(
        "WITH f AS MATERIALIZED (SELECT s.task_id, {rank} AS rank FROM task_search s \
             WHERE s.tsv @@ $1::tsquery{} ORDER BY {inner_order} LIMIT $2) \
         SELECT {} FROM f JOIN tasks t ON t.id = f.task_id WHERE t.id = ANY(ARRAY(SELECT task_id FROM f)) \
         ORDER BY {outer_order}",
        filters.sql,
        t_task_columns!()
    );
    let q = sqlx::query(AssertSqlSafe(sql)).bind(&tsquery.expr).bind(n as i64);
    let rows = filters.bind(q).fetch_all(c).await.map_err(db_err)?;
    rows.iter().map(task_from_row).collect()
}

/// Vector candidates, nearest first, with their cosine similarity. Every filter is a column of
/// the vector table, so it applies inside the HNSW scan, which is iterative: filters that reject
/// many neighbours still leave enough rows. (A vector made from an older text is not there: a
/// change of text drops it.)
async fn vector_candidates(
    c: &mut PgConnection,
    model: &str,
    v: &[f32],
    f: &SearchFilter,
    n: usize,
) -> Result<Vec<(Task, f32)>> {
    if !vec_table_exists(c, model, v.len()).await? {
        return Ok(vec![]);
    }
    let filters = Filters::new(f, 4, "v");
    let sql = format!(
        "WITH knn AS MATERIALIZED (SELECT v.task_id, v.embedding <=> $1 AS distance FROM {} v \
             WHERE v.model = $2{} ORDER BY v.embedding <=> $1 LIMIT $3) \
         SELECT {}, knn.distance FROM knn JOIN tasks t ON t.id = knn.task_id \
         WHERE t.id = ANY(ARRAY(SELECT task_id FROM knn)) ORDER BY knn.distance, knn.task_id",
        vec_table(model, v.len()),
        filters.sql,
        t_task_columns!()
    );
    let q = sqlx::query(AssertSqlSafe(sql)).bind(Vector::from(v.to_vec())).bind(model).bind(n as i64);
    let rows = filters.bind(q).fetch_all(c).await.map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let d: f64 = sqlx::Row::try_get(r, 17).map_err(db_err)?;
            Ok((task_from_row(r)?, 1.0 - d as f32))
        })
        .collect()
}

/// Cosine similarity of the query to the current vectors of `tasks` (for text-only hits).
async fn cosines(c: &mut PgConnection, model: &str, v: &[f32], tasks: &[TaskId]) -> Result<HashMap<TaskId, f32>> {
    if tasks.is_empty() || !vec_table_exists(c, model, v.len()).await? {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT v.task_id, 1 - (v.embedding <=> $1) FROM {} v WHERE v.task_id = ANY($2) AND v.model = $3",
        vec_table(model, v.len())
    );
    let ids: Vec<Uuid> = tasks.iter().map(TaskId::as_uuid).collect();
    let rows: Vec<(Uuid, f64)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(Vector::from(v.to_vec()))
        .bind(ids)
        .bind(model)
        .fetch_all(c)
        .await
        .map_err(db_err)?;
    Ok(rows.into_iter().map(|(id, cos)| (TaskId::from(id), cos as f32)).collect())
}

/// How the next nearest-neighbour queries of a transaction are planned (`SET LOCAL` settings):
/// as a walk of an HNSW graph that yields `n` rows, or as an exact scan. Callers walk first and
/// scan exactly when the walk came back short, then [`reset_knn_plan`].
///
/// The planner would rather scan a mission's vectors whole than walk the graph with a filter (it
/// cannot tell how soon the walk finds enough rows): the walk is bounded and far cheaper once a
/// mission holds thousands of rows. An iterative walk goes on past neighbours the filters reject
/// (order is restored by the caller's outer sort). It can still come back short: HNSW loses its
/// way among many identical vectors (the same text in many rows) and iterative scans stop at a
/// memory bound. The exact scan of the filtered rows (by mission through its index) then
/// decides, so a short answer means there are no more vectors, never a missed one.
pub(crate) async fn plan_knn(c: &mut PgConnection, n: usize, exact: bool) -> Result<()> {
    // a walk may take no other path: a bitmap scan of a mission's rows (then sorted) looks
    // cheaper to the planner than the graph until the mission holds many thousands of rows
    let (seqscan, indexscan) = if exact { ("on", "off") } else { ("off", "on") };
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), \
         set_config('hnsw.iterative_scan', 'relaxed_order', true), \
         set_config('enable_seqscan', $2, true), set_config('enable_bitmapscan', $2, true), \
         set_config('enable_indexscan', $3, true)",
    )
    .bind(n.clamp(40, 1_000).to_string())
    .bind(seqscan)
    .bind(indexscan)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Plans the rest of the transaction as usual again (see [`plan_knn`]).
pub(crate) async fn reset_knn_plan(c: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "SELECT set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true), \
         set_config('enable_indexscan', 'on', true)",
    )
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Hybrid search in one transaction (for the `SET LOCAL` scan settings).
pub(crate) async fn search(c: &mut PgConnection, req: &SearchRequest) -> Result<Vec<SearchHit>> {
    let text = text_part(c, req).await?;
    rank(c, req, text).await
}

/// Candidates taken from each index for a search's `limit`.
fn candidates(limit: usize) -> usize {
    (limit * OVERSAMPLE).clamp(20, 400)
}

/// The full-text half of a search, best first. It needs no vector, so it can run while the query is embedded.
pub(crate) async fn text_part(c: &mut PgConnection, req: &SearchRequest) -> Result<Vec<Task>> {
    match ts_query(c, "task_search", &req.text).await? {
        Some(q) => text_candidates(c, &q, &req.filter, candidates(req.limit)).await,
        None => Ok(vec![]),
    }
}

/// The rest of a search given its full-text candidates, in a transaction (for the `SET LOCAL` scan settings):
/// nearest vectors, fusion, and the similarity of text-only hits.
pub(crate) async fn rank(c: &mut PgConnection, req: &SearchRequest, text: Vec<Task>) -> Result<Vec<SearchHit>> {
    let n = candidates(req.limit);
    let vector = match &req.vector {
        Some(v) => {
            let mut found = vec![];
            for exact in [false, true] {
                plan_knn(c, n, exact).await?;
                found = vector_candidates(c, &v.model, &v.vector, &req.filter, n).await?;
                if found.len() >= n {
                    break;
                }
            }
            reset_knn_plan(c).await?;
            found
        }
        None => vec![],
    };
    let mut out: Vec<SearchHit> = fuse(text, vector, |t| t.id, req.limit)
        .into_iter()
        .map(|f| SearchHit {
            task: f.item,
            score: f.score,
            text_rank: f.text_rank,
            vector_rank: f.vector_rank,
            cosine: f.cosine,
        })
        .collect();
    if let Some(v) = &req.vector {
        // text-only hits get their similarity too (callers judge overlap on it)
        let missing: Vec<TaskId> = out.iter().filter(|h| h.cosine.is_none()).map(|h| h.task.id).collect();
        let found = cosines(c, &v.model, &v.vector, &missing).await?;
        for h in out.iter_mut().filter(|h| h.cosine.is_none()) {
            h.cosine = found.get(&h.task.id).copied();
        }
    }
    Ok(out)
}

pub(crate) async fn with_paths(c: &mut PgConnection, f: &SearchFilter, limit: usize) -> Result<Vec<Task>> {
    let mut sql = format!("SELECT {} FROM tasks t WHERE t.paths <> '{{}}'", t_task_columns!());
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    let mission = f.mission_id.map(|m| m.as_uuid());
    if mission.is_some() {
        sql.push_str(&format!(" AND t.mission_id = ${}", next()));
    }
    let kluster = f.kluster_id.map(|k| k.as_uuid());
    if kluster.is_some() {
        sql.push_str(&format!(" AND t.kluster_id = ${}", next()));
    }
    let statuses: Option<Vec<String>> =
        (!f.statuses.is_empty()).then(|| f.statuses.iter().map(|s| s.as_str().to_owned()).collect());
    if statuses.is_some() {
        sql.push_str(&format!(" AND t.status = ANY(${}::text[])", next()));
    }
    let labels: Option<Vec<String>> =
        (!f.labels.is_empty()).then(|| f.labels.iter().map(|l| l.trim().to_lowercase()).collect());
    if labels.is_some() {
        sql.push_str(&format!(" AND t.labels @> ${}::text[]", next()));
    }
    sql.push_str(" ORDER BY t.id DESC LIMIT $1");
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(limit as i64);
    if let Some(m) = mission {
        q = q.bind(m);
    }
    if let Some(k) = kluster {
        q = q.bind(k);
    }
    if let Some(s) = statuses {
        q = q.bind(s);
    }
    if let Some(l) = labels {
        q = q.bind(l);
    }
    let rows = q.fetch_all(c).await.map_err(db_err)?;
    rows.iter().map(task_from_row).collect()
}
