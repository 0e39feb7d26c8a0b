//! Search indexes on the embedded profile: FTS5 for full text, sqlite-vec `vec0` tables for
//! vectors (one per dimension, partitioned by mission, with kluster, status and model as
//! metadata filtered during the KNN scan), and the reciprocal-rank fusion of both.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use mc_domain::ledger::sha256_hex;
use mc_domain::{Error, Result, Task, TaskId, TaskStatus};
use mc_store::fusion::fuse;
use mc_store::{EmbeddingJob, PendingPage, SearchFilter, SearchHit, SearchRequest, TextCursor};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::conn::db_err;
use crate::rows::{TASK_COLUMNS, load_task, task_from_row};
use crate::vindex::{self, Op, VecIndex};

/// Candidates taken from each index before fusion, per requested result.
const OVERSAMPLE: usize = 4;

/// Makes sqlite-vec available on every connection opened afterwards (process-wide, once).
#[allow(unsafe_code)]
pub(crate) fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vec_init` is the extension's entry point with the signature SQLite
        // expects of an auto-extension; it is linked statically into this binary next to the
        // bundled SQLite, and registration happens once before connections are opened.
        unsafe {
            rusqlite::ffi::sqlite3_auto_extension(Some(std::mem::transmute::<
                *const (),
                unsafe extern "C" fn(
                    *mut rusqlite::ffi::sqlite3,
                    *mut *mut std::os::raw::c_char,
                    *const rusqlite::ffi::sqlite3_api_routines,
                ) -> std::os::raw::c_int,
            >(sqlite_vec::sqlite3_vec_init as *const ())));
        }
    });
}

/// The vec0 table of one model and dimension: vectors of different models never share a table
/// (so they are never compared, and a model change starts a fresh index).
fn vec_table(model: &str, dim: usize) -> String {
    format!("task_vec_{}", vec_key(model, dim))
}

/// What names the vectors of one model and dimension: the first 12 hex digits of the model's
/// SHA-256 and the dimension.
pub(crate) fn vec_key(model: &str, dim: usize) -> String {
    format!("{}_{dim}", &sha256_hex(model.as_bytes())[..12])
}

fn ensure_vec_table(c: &Connection, model: &str, dim: usize) -> Result<()> {
    if dim == 0 || dim > 8192 {
        return Err(Error::validation("vector", format!("dimension {dim} is not supported")));
    }
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS {} USING vec0(doc_id integer primary key, \
         embedding float[{dim}] distance_metric=cosine, mission_id text partition key, \
         kluster_id text, status text)",
        vec_table(model, dim)
    ))
    .map_err(db_err)
}

pub(crate) fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn unblob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The search document id of a task.
pub(crate) fn doc_id(c: &Connection, task: TaskId) -> Result<Option<i64>> {
    c.prepare_cached("SELECT doc_id FROM search_docs WHERE task_id = ?1")
        .map_err(db_err)?
        .query_row([task.to_string()], |r| r.get(0))
        .optional()
        .map_err(db_err)
}

/// Indexes a new task for full text.
pub(crate) fn index_new(c: &Connection, t: &Task) -> Result<()> {
    c.prepare_cached("INSERT INTO search_docs (task_id, text_hash) VALUES (?1, ?2)")
        .map_err(db_err)?
        .execute([t.id.to_string(), text_hash(&t.embedding_text())])
        .map_err(db_err)?;
    let id = c.last_insert_rowid();
    insert_fts(c, id, t)
}

pub(crate) fn scope_token(prefix: char, id: &str) -> String {
    format!("{prefix}{}", id.replace('-', ""))
}

fn insert_fts(c: &Connection, doc: i64, t: &Task) -> Result<()> {
    let scope = format!(
        "{} {} s{}",
        scope_token('m', &t.mission_id.to_string()),
        scope_token('k', &t.kluster_id.to_string()),
        t.status.as_str()
    );
    c.prepare_cached("INSERT INTO task_fts (rowid, title, description, labels, scope) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db_err)?
        .execute(params![doc, t.title, t.description, t.labels.join(" "), scope])
        .map_err(db_err)?;
    Ok(())
}

/// Re-indexes a changed task: text for full text, status for the vector metadata.
pub(crate) fn reindex(c: &Connection, t: &Task, text_changed: bool, status_changed: bool) -> Result<()> {
    let Some(doc) = doc_id(c, t.id)? else { return index_new(c, t) };
    if text_changed || status_changed {
        c.prepare_cached("DELETE FROM task_fts WHERE rowid = ?1").map_err(db_err)?.execute([doc]).map_err(db_err)?;
        insert_fts(c, doc, t)?;
    }
    if text_changed {
        c.prepare_cached("UPDATE search_docs SET text_hash = ?2 WHERE doc_id = ?1")
            .map_err(db_err)?
            .execute(params![doc, text_hash(&t.embedding_text())])
            .map_err(db_err)?;
    }
    if status_changed {
        let tables: Vec<(String, i64)> = c
            .prepare_cached("SELECT model, dim FROM task_embeddings WHERE task_id = ?1")
            .map_err(db_err)?
            .query_map([t.id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        for (model, dim) in tables {
            let table = vec_table(&model, dim as usize);
            c.prepare_cached(&format!("UPDATE {table} SET status = ?1 WHERE doc_id = ?2"))
                .map_err(db_err)?
                .execute(params![t.status.as_str(), doc])
                .map_err(db_err)?;
            vindex::record(Op::Class { table, doc, class: vindex::status_class(t.status.as_str()) });
        }
    }
    Ok(())
}

/// Hash of the text a vector was made from.
pub(crate) fn text_hash(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// One page of the embedding worker's walk (see [`TextCursor`]): the marks are `text_seq`, unique
/// and growing with each write, read with the first unsettled mark in one snapshot.
pub(crate) fn pending(
    c: &Connection,
    model: &str,
    limit: usize,
    from: &TextCursor,
) -> Result<PendingPage<EmbeddingJob>> {
    if limit == 0 {
        return Ok(PendingPage { jobs: vec![], next: from.clone() });
    }
    let tx = c.unchecked_transaction().map_err(db_err)?;
    let top: i64 = tx
        .prepare_cached("SELECT coalesce(max(text_seq), 0) + 1 FROM search_docs")
        .map_err(db_err)?
        .query_row([], |r| r.get(0))
        .map_err(db_err)?;
    let below = from.after.as_ref().map_or(i64::MAX, |(mark, _)| *mark);
    let mut st = tx
        .prepare_cached(&format!(
            // newest changes first; tasks are read only for the documents found
            "SELECT {}, p.text_seq, p.doc_id FROM (SELECT d.doc_id, d.task_id, d.text_seq FROM search_docs d \
                 LEFT JOIN task_embeddings e ON e.task_id = d.task_id AND e.model = ?1 \
                 WHERE d.text_seq >= ?2 AND d.text_seq < ?3 AND e.text_hash IS NOT d.text_hash \
                 ORDER BY d.text_seq DESC LIMIT ?4) p \
             JOIN tasks t ON t.id = p.task_id ORDER BY p.text_seq DESC",
            prefixed()
        ))
        .map_err(db_err)?;
    let cols = TASK_COLUMNS.split(", ").count();
    let rows = st
        .query_map(params![model, from.done_below, below, limit as i64], |r| {
            Ok((task_from_row(r)?, r.get::<_, i64>(cols)?, r.get::<_, i64>(cols + 1)?))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let last = rows.last().filter(|_| rows.len() >= limit).map(|(_, mark, doc)| (*mark, doc.to_string()));
    let next = from.advance(top, last);
    let jobs = rows
        .into_iter()
        .map(|(t, _, _)| {
            let text = t.embedding_text();
            EmbeddingJob { task_id: t.id, text_hash: text_hash(&text), text }
        })
        .collect();
    Ok(PendingPage { jobs, next })
}

/// Fills in the text hash of search documents written before it was kept (see migration 4).
pub(crate) fn backfill_text_hashes(c: &Connection) -> Result<usize> {
    let tasks: Vec<(i64, Task)> = c
        .prepare(&format!(
            "SELECT {}, d.doc_id FROM search_docs d JOIN tasks t ON t.id = d.task_id WHERE d.text_hash IS NULL",
            prefixed()
        ))
        .map_err(db_err)?
        .query_map([], |r| Ok((r.get(17)?, task_from_row(r)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let tx = c.unchecked_transaction().map_err(db_err)?;
    for (doc, t) in &tasks {
        tx.prepare_cached("UPDATE search_docs SET text_hash = ?2 WHERE doc_id = ?1")
            .map_err(db_err)?
            .execute(params![doc, text_hash(&t.embedding_text())])
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(tasks.len())
}

pub(crate) fn put(c: &Connection, model: &str, task: TaskId, hash: &str, vector: &[f32]) -> Result<()> {
    let t = match load_task(c, task) {
        Ok(t) => t,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if text_hash(&t.embedding_text()) != hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    let dim = vector.len();
    ensure_vec_table(c, model, dim)?;
    let doc = match doc_id(c, task)? {
        Some(d) => d,
        None => {
            index_new(c, &t)?;
            c.last_insert_rowid()
        }
    };
    // a task has one vector per model; drop any other dimension it had for this model
    let old_dims: Vec<i64> = c
        .prepare_cached("SELECT dim FROM task_embeddings WHERE task_id = ?1 AND model = ?2")
        .map_err(db_err)?
        .query_map(params![task.to_string(), model], |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    for d in old_dims {
        let table = vec_table(model, d as usize);
        c.prepare_cached(&format!("DELETE FROM {table} WHERE doc_id = ?1"))
            .map_err(db_err)?
            .execute(params![doc])
            .map_err(db_err)?;
        vindex::record(Op::Delete { table, doc });
    }
    let table = vec_table(model, dim);
    let (mission, kluster) = (t.mission_id.to_string(), t.kluster_id.to_string());
    c.prepare_cached(&format!(
        "INSERT INTO {table} (doc_id, embedding, mission_id, kluster_id, status) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .map_err(db_err)?
    .execute(params![doc, blob(vector), mission, kluster, t.status.as_str()])
    .map_err(db_err)?;
    vindex::record(Op::Upsert {
        table,
        doc,
        mission,
        kluster,
        class: vindex::status_class(t.status.as_str()),
        vector: vector.to_vec(),
    });
    c.prepare_cached(
        "INSERT INTO task_embeddings (task_id, model, text_hash, dim) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (task_id, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim",
    )
    .map_err(db_err)?
    .execute(params![task.to_string(), model, hash, dim as i64])
    .map_err(db_err)?;
    Ok(())
}

pub(crate) fn embedding_of(c: &Connection, task: TaskId, model: &str) -> Result<Option<Vec<f32>>> {
    let row: Option<(String, i64)> = c
        .prepare_cached("SELECT text_hash, dim FROM task_embeddings WHERE task_id = ?1 AND model = ?2")
        .map_err(db_err)?
        .query_row(params![task.to_string(), model], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    let Some((hash, dim)) = row else { return Ok(None) };
    let t = load_task(c, task)?;
    if text_hash(&t.embedding_text()) != hash {
        return Ok(None);
    }
    let Some(doc) = doc_id(c, task)? else { return Ok(None) };
    let b: Option<Vec<u8>> = c
        .query_row(&format!("SELECT embedding FROM {} WHERE doc_id = ?1", vec_table(model, dim as usize)), [doc], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    Ok(b.map(|b| unblob(&b)))
}

/// Words too common to search for.
const FTS_STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "for", "of", "in", "on", "with", "and", "or", "by", "from", "at", "as", "is", "are", "be",
    "it", "its", "into", "this", "that", "we", "our", "should", "can", "so", "all", "any", "when", "after", "before",
];

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Most documents the full-text stage ranks. Ranking costs about a microsecond per matching
/// document, so the words searched for are the rarest ones whose documents add up to at most
/// this many: rare words say most about which task is meant, and a word found in thousands of
/// documents would make every query slow while barely changing the ranking.
const RANK_BUDGET: i64 = 1_000;

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

/// A full-text match and whether its documents are few enough to rank.
pub(crate) struct FtsQuery {
    pub(crate) expr: String,
    /// False when every word matches more documents than the ranking budget, so that all of them
    /// are AND-ed (see [`fts_query`]): the newest matches are taken.
    pub(crate) ranked: bool,
}

/// A full-text index and the text columns a free-text query matches in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FtsIndex<'a> {
    pub(crate) table: &'a str,
    /// The columns of `table` matched (the query's column filter).
    pub(crate) columns: &'a [&'a str],
}

/// The task index: free text matches title, description and labels.
pub(crate) const TASK_FTS: FtsIndex<'static> =
    FtsIndex { table: "task_fts", columns: &["title", "description", "labels"] };

fn count_matches(c: &Connection, counts: &MatchCounts, fts: FtsIndex<'_>, expr: &str) -> Result<i64> {
    let key = format!("{} {expr}", fts.table);
    if let Some(n) = counts.get(&key) {
        return Ok(n);
    }
    let generation = counts.generation();
    let table = fts.table;
    let n = c
        .prepare_cached(&format!("SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ?1 LIMIT ?2)"))
        .map_err(db_err)?
        .query_row(params![expr, RANK_BUDGET + 1], |r| r.get(0))
        .map_err(db_err)?;
    counts.put(&key, n, generation);
    Ok(n)
}

/// Document counts of full-text expressions (capped at `RANK_BUDGET + 1`), kept between queries.
///
/// Counting walks up to 1,001 postings per word, and a long query (an overlap check of a title and a description)
/// counts a dozen words: at 100,000 tasks that was the larger part of the store's time. The counts only choose the
/// query's plan (which words fit the ranking budget, whether a status filter is cheaper negated), so a count may
/// be slightly old: it is reused while fewer rows were changed since it was taken than an eighth of it (a
/// changed row moves a count by at most one), so a small count is taken afresh after any write.
#[derive(Debug, Default)]
pub(crate) struct MatchCounts {
    /// Rows changed by committed writes (the writer connection's total).
    changes: AtomicU64,
    cache: Mutex<HashMap<String, (i64, u64)>>,
}

/// Expressions whose counts are kept; beyond that the cache starts afresh.
const MAX_COUNTS: usize = 65_536;

impl MatchCounts {
    /// Called by the writer after each commit with its connection's total of changed rows.
    pub(crate) fn committed(&self, total_changes: u64) {
        self.changes.fetch_max(total_changes, Ordering::Relaxed);
    }

    fn generation(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    fn get(&self, expr: &str) -> Option<i64> {
        let now = self.generation();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (n, at) = *cache.get(expr)?;
        (now.saturating_sub(at) <= n.max(0) as u64 / 8).then_some(n)
    }

    fn put(&self, expr: &str, n: i64, generation: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_COUNTS {
            cache.clear();
        }
        cache.insert(expr.to_owned(), (n, generation));
    }
}

/// The FTS5 query for free text, with bounded cost: the rarest words whose documents fit the
/// ranking budget, OR-ed (ranking does the rest); if even the rarest word is too common, all of
/// the words AND-ed (which only near restatements match), unranked: every match holds every word,
/// so ranking would only reorder near equals, and at 100,000 tasks counting and ranking the
/// matches of a new text's common words cost 3–8 ms (half the p99 of an overlap check); the newest
/// matches are taken, and the vector half of the search orders what is alike.
/// Matching is restricted to the text columns.
pub(crate) fn fts_query(
    c: &Connection,
    counts: &MatchCounts,
    fts: FtsIndex<'_>,
    text: &str,
) -> Result<Option<FtsQuery>> {
    let words = query_words(text);
    if words.is_empty() {
        return Ok(None);
    }
    let mut counted = Vec::with_capacity(words.len());
    let columns = fts.columns.join(" ");
    let in_text = |body: &str| format!("{{{columns}}} : ({body})");
    for w in &words {
        let docs = count_matches(c, counts, fts, &in_text(&format!("\"{w}\"")))?;
        if docs > 0 {
            counted.push((docs, w));
        }
    }
    if counted.is_empty() {
        return Ok(None);
    }
    counted.sort();
    let mut specific = Vec::new();
    let mut total = 0;
    for (docs, w) in &counted {
        if total + docs > RANK_BUDGET {
            break;
        }
        total += docs;
        specific.push(*w);
    }
    let quoted = |ws: &[&String], op: &str| ws.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(op);
    if !specific.is_empty() {
        return Ok(Some(FtsQuery { expr: in_text(&quoted(&specific, " OR ")), ranked: true }));
    }
    let all: Vec<&String> = counted.iter().map(|(_, w)| *w).collect();
    let expr = in_text(&quoted(&all, " AND "));
    Ok(Some(FtsQuery { expr, ranked: false }))
}

/// Filters on `tasks t`. The unary `+` keeps SQLite from driving the query off a tasks index
/// (which would run the full-text match once per task of the mission); the index that drives
/// is the one being searched.
fn filter_sql(f: &SearchFilter, sql: &mut String, args: &mut Vec<Value>, drive_by_tasks: bool) {
    let p = if drive_by_tasks { "" } else { "+" };
    if let Some(m) = f.mission_id {
        sql.push_str(&format!(" AND {p}t.mission_id = ?"));
        args.push(Value::Text(m.to_string()));
    }
    if let Some(k) = f.kluster_id {
        sql.push_str(&format!(" AND {p}t.kluster_id = ?"));
        args.push(Value::Text(k.to_string()));
    }
    if !f.statuses.is_empty() {
        sql.push_str(&format!(" AND {p}t.status IN ({})", vec!["?"; f.statuses.len()].join(", ")));
        args.extend(f.statuses.iter().map(|s| Value::Text(s.as_str().to_owned())));
    }
    for l in &f.labels {
        sql.push_str(" AND EXISTS (SELECT 1 FROM task_labels l WHERE l.label = ? AND l.task_id = t.id)");
        args.push(Value::Text(l.trim().to_lowercase()));
    }
}

fn prefixed() -> String {
    crate::rows::prefixed(TASK_COLUMNS, "t")
}

/// Full-text candidates (document ids), best first. Mission, kluster and status filters are scope
/// tokens in the match itself; only labels are checked on joined task rows, when asked for.
fn text_candidates(
    c: &Connection,
    counts: &MatchCounts,
    words: &FtsQuery,
    f: &SearchFilter,
    n: usize,
) -> Result<Vec<i64>> {
    let mut q = format!("({})", words.expr);
    if let Some(m) = f.mission_id {
        q.push_str(&format!(" AND scope : {}", scope_token('m', &m.to_string())));
    }
    if let Some(k) = f.kluster_id {
        q.push_str(&format!(" AND scope : {}", scope_token('k', &k.to_string())));
    }
    if !f.statuses.is_empty() {
        let token = |s: &TaskStatus| format!("s{}", s.as_str());
        let wanted: Vec<String> = f.statuses.iter().map(token).collect();
        let others: Vec<String> = TaskStatus::ALL.iter().filter(|s| !f.statuses.contains(s)).map(token).collect();
        // The cheaper of "one of the wanted statuses" and "none of the others": a match walks the
        // posting lists it names, and the open tasks' list can hold every task.
        if !others.is_empty() {
            let others_expr = format!("scope : ({})", others.join(" OR "));
            if count_matches(c, counts, TASK_FTS, &others_expr)? <= RANK_BUDGET {
                q = format!("({q}) NOT {others_expr}");
            } else {
                q.push_str(&format!(" AND scope : ({})", wanted.join(" OR ")));
            }
        }
    }
    // Unranked, the newest matches come first (FTS5 walks rowids backwards without sorting).
    let (columns, inner_order, outer_order) = if words.ranked {
        ("rowid AS doc, rank", "rank", "f.rank")
    } else {
        ("rowid AS doc", "rowid DESC", "f.doc DESC")
    };
    let mut sql = format!(
        "SELECT f.doc FROM (SELECT {columns} FROM task_fts WHERE task_fts MATCH ? ORDER BY {inner_order} LIMIT ?) f"
    );
    let mut args = vec![Value::Text(q), Value::Integer(n as i64)];
    if !f.labels.is_empty() {
        sql.push_str(" JOIN search_docs d ON d.doc_id = f.doc JOIN tasks t ON t.id = d.task_id WHERE 1 = 1");
        let label_filter = SearchFilter { labels: f.labels.clone(), ..Default::default() };
        filter_sql(&label_filter, &mut sql, &mut args, false);
    }
    sql.push_str(&format!(" ORDER BY {outer_order}"));
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    st.query_map(params_from_iter(args), |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)
}

/// Vector candidates (document ids), nearest first, with their (approximate) cosine similarity:
/// the nearest documents come from the in-memory index, the label filter (if any) from SQLite.
fn vector_candidates(
    c: &Connection,
    index: &VecIndex,
    model: &str,
    v: &[f32],
    f: &SearchFilter,
    n: usize,
) -> Result<Vec<(i64, f32)>> {
    let (mission, kluster) = (f.mission_id.map(|m| m.to_string()), f.kluster_id.map(|k| k.to_string()));
    let filter = vindex::Filter {
        mission: mission.as_deref(),
        kluster: kluster.as_deref(),
        classes: (!f.statuses.is_empty()).then(|| vindex::status_mask(f.statuses.iter().map(|s| s.as_str()))),
    };
    let nearest = index.nearest(&vec_table(model, v.len()), v, &filter, n);
    if nearest.is_empty() || f.labels.is_empty() {
        return Ok(nearest);
    }
    let mut sql = format!(
        "SELECT d.doc_id FROM search_docs d JOIN tasks t ON t.id = d.task_id WHERE d.doc_id IN ({})",
        vec!["?"; nearest.len()].join(", ")
    );
    let mut args: Vec<Value> = nearest.iter().map(|(d, _)| Value::Integer(*d)).collect();
    let label_filter = SearchFilter { labels: f.labels.clone(), ..Default::default() };
    filter_sql(&label_filter, &mut sql, &mut args, false);
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    let labelled: HashSet<i64> = st
        .query_map(params_from_iter(args), |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<HashSet<_>>>()
        .map_err(db_err)?;
    Ok(nearest.into_iter().filter(|(d, _)| labelled.contains(d)).collect())
}

/// Loads every `vec0` table into the in-memory index (at open, before the writer starts).
pub(crate) fn load_index(c: &Connection, index: &VecIndex) -> Result<usize> {
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'task_vec_*' \
             AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        )
        .map_err(db_err)?
        .query_map([], |r| r.get(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let mut loaded = 0;
    for table in tables {
        let mut st = c
            .prepare(&format!("SELECT doc_id, embedding, mission_id, kluster_id, status FROM {table}"))
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(Op::Upsert {
                    table: table.clone(),
                    doc: r.get(0)?,
                    vector: unblob(&r.get::<_, Vec<u8>>(1)?),
                    mission: r.get(2)?,
                    kluster: r.get(3)?,
                    class: vindex::status_class(&r.get::<_, String>(4)?),
                })
            })
            .map_err(db_err)?;
        loaded += index.load(rows.map(|r| r.map_err(db_err)))?;
    }
    Ok(loaded)
}

pub(crate) fn search(
    c: &Connection,
    index: &VecIndex,
    counts: &MatchCounts,
    req: &SearchRequest,
) -> Result<Vec<SearchHit>> {
    let text = text_part(c, counts, req)?;
    rank(c, index, req, text)
}

/// Candidates taken from each index for a search's `limit`.
fn candidates(limit: usize) -> usize {
    (limit * OVERSAMPLE).clamp(20, 400)
}

/// The full-text half of a search: the candidates' document ids, best first. It needs no vector, so it can run
/// while the query is being embedded.
pub(crate) fn text_part(c: &Connection, counts: &MatchCounts, req: &SearchRequest) -> Result<Vec<i64>> {
    match fts_query(c, counts, TASK_FTS, &req.text)? {
        Some(q) => text_candidates(c, counts, &q, &req.filter, candidates(req.limit)),
        None => Ok(vec![]),
    }
}

/// The rest of a search, given its full-text candidates: nearest vectors, fusion, and the fused hits' tasks.
pub(crate) fn rank(c: &Connection, index: &VecIndex, req: &SearchRequest, text: Vec<i64>) -> Result<Vec<SearchHit>> {
    let vector = match &req.vector {
        Some(v) => vector_candidates(c, index, &v.model, &v.vector, &req.filter, candidates(req.limit))?,
        None => vec![],
    };
    // Fused on document ids; the tasks are read for the fused hits only (not for every candidate).
    let fused = fuse(text, vector, |d| *d, req.limit);
    let docs: Vec<i64> = fused.iter().map(|f| f.item).collect();
    let mut tasks = tasks_of_docs(c, &docs)?;
    let similarity = match &req.vector {
        // every hit gets its similarity, text-only hits too (callers judge overlap on it)
        Some(v) => index.similarities(&vec_table(&v.model, v.vector.len()), &v.vector, &docs),
        None => vec![None; fused.len()],
    };
    let out: Vec<SearchHit> = fused
        .into_iter()
        .zip(similarity)
        .filter_map(|(f, cos)| {
            Some(SearchHit {
                task: tasks.remove(&f.item)?,
                score: f.score,
                text_rank: f.text_rank,
                vector_rank: f.vector_rank,
                cosine: cos.or(f.cosine),
            })
        })
        .collect();
    Ok(out)
}

/// The tasks of search documents, by document id.
fn tasks_of_docs(c: &Connection, docs: &[i64]) -> Result<HashMap<i64, Task>> {
    if docs.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT {}, d.doc_id FROM search_docs d JOIN tasks t ON t.id = d.task_id WHERE d.doc_id IN ({})",
        prefixed(),
        vec!["?"; docs.len()].join(", ")
    );
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    st.query_map(params_from_iter(docs.iter().map(|d| Value::Integer(*d))), |r| {
        Ok((r.get::<_, i64>(17)?, task_from_row(r)?))
    })
    .map_err(db_err)?
    .collect::<rusqlite::Result<HashMap<_, _>>>()
    .map_err(db_err)
}

pub(crate) fn with_paths(c: &Connection, f: &SearchFilter, limit: usize) -> Result<Vec<Task>> {
    let mut sql = format!("SELECT {} FROM tasks t WHERE t.paths <> '[]'", prefixed());
    let mut args = vec![];
    filter_sql(f, &mut sql, &mut args, true);
    sql.push_str(" ORDER BY t.id DESC LIMIT ?");
    args.push(Value::Integer(limit as i64));
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    st.query_map(params_from_iter(args), task_from_row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)
}
