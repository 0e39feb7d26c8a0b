//! Hybrid search over klusters and docs: full text over a generated `tsvector` column of the
//! entity's own table, vectors in one table per kind of entity, fused by reciprocal rank like task
//! search. Kluster vectors are compared by cosine distance during a scan (a mission has tens of
//! klusters, not thousands). Doc vectors carry the doc's filter columns and have a partial HNSW
//! index per model and dimension. A vector is compared only when it is of the query's model and
//! dimension and was made from the entity's current text (its text hash), so a stale vector, or
//! another model's, never counts.

use std::collections::HashMap;

use mc_domain::id::Uuid;
use mc_domain::{Error, Result};
use mc_store::SearchRequest;
use mc_store::fusion::{Fused, fuse};
use pgvector::Vector;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row};

use crate::rows::db_err;
use crate::search::{HNSW_MAX_DIM, OVERSAMPLE, index_key, plan_knn, reset_knn_plan, text_hash, ts_query};

/// Largest dimension stored (as on the embedded profile).
const MAX_DIM: usize = 8_192;

/// An entity searched this way. Its table (aliased `x` in every query) has an `id` and a
/// generated `tsv` column; its vectors table has (`KEY`, `model`, `text_hash`, `dim`,
/// `embedding`), one row per entity and model.
pub(crate) trait Searchable: Sized + Send {
    const TABLE: &'static str;
    /// Its columns (unqualified), in the order `from_row` reads them.
    const COLUMNS: &'static str;
    const EMBEDDINGS: &'static str;
    /// The column of the vectors table naming the entity.
    const KEY: &'static str;
    /// Which rows are searched and embedded at all (a condition on `x`).
    const LIVE: &'static str;
    /// A column of the entity holding the hash of its embedded text, if it keeps one: pending
    /// work is then found in SQL, without reading and hashing every text (docs are long).
    const TEXT_HASH: Option<&'static str> = None;
    /// Columns of the entity (which never change) copied into each of its vector rows, so that
    /// search filters on them apply inside the vector index scan. None: vectors are compared
    /// during a scan of the entity's table. With them, the vectors table has these columns and an
    /// `index_key` ([`index_key`]), each model and dimension has a partial HNSW index
    /// ([`ensure_index`]), and the entity's writes delete its vectors when its text changes, so
    /// every stored vector is current.
    const VECTOR_COLUMNS: Option<&'static str> = None;

    fn from_row(r: &PgRow) -> Result<Self>;
    fn key(&self) -> Uuid;
    /// The text that is indexed and embedded.
    fn text(&self) -> String;
}

/// The entity's columns qualified with `x`.
fn columns<T: Searchable>() -> String {
    T::COLUMNS.split(',').map(|c| format!("x.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// Index of the first column after the entity's own.
fn after_columns<T: Searchable>() -> usize {
    T::COLUMNS.split(',').count()
}

/// A value compared for equality with a column.
#[derive(Debug, Clone, Copy)]
enum Value {
    Uuid(Uuid),
    Text(&'static str),
}

/// Equality conditions on columns of `x`, numbered after a query's own parameters.
#[derive(Debug, Default)]
pub(crate) struct Conds(Vec<(&'static str, Value)>);

impl Conds {
    /// `x.column = v` when there is a `v`.
    pub(crate) fn uuid(mut self, column: &'static str, v: Option<Uuid>) -> Self {
        if let Some(v) = v {
            self.0.push((column, Value::Uuid(v)));
        }
        self
    }

    /// `x.column = v` when there is a `v`.
    pub(crate) fn text(mut self, column: &'static str, v: Option<&'static str>) -> Self {
        if let Some(v) = v {
            self.0.push((column, Value::Text(v)));
        }
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The ` AND x.column = $n` clauses, the first numbered `first`.
    pub(crate) fn sql(&self, first: usize) -> String {
        self.sql_on("x", first)
    }

    /// The same clauses on the columns of `alias`.
    fn sql_on(&self, alias: &str, first: usize) -> String {
        self.0.iter().enumerate().map(|(i, (col, _))| format!(" AND {alias}.{col} = ${}", first + i)).collect()
    }

    /// Binds the values, in the order of [`Conds::sql`].
    pub(crate) fn bind<'q>(&self, mut q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        for (_, v) in &self.0 {
            q = match *v {
                Value::Uuid(u) => q.bind(u),
                Value::Text(t) => q.bind(t),
            };
        }
        q
    }
}

/// Entities matching the query's words (stemmed), best first. The query is [`ts_query`]'s, as for
/// tasks: a doc's overlap check asks with its title and the first words of its body, and ranking
/// every doc that shares one of thirty common words took most of the check's time at a few
/// thousand docs.
async fn text_candidates<T: Searchable>(c: &mut PgConnection, text: &str, conds: &Conds, n: usize) -> Result<Vec<T>> {
    let Some(tsquery) = ts_query(c, T::TABLE, text).await? else {
        return Ok(vec![]);
    };
    // unranked, the newest matches come first (ids are time-ordered)
    let order = if tsquery.ranked { "ts_rank_cd(x.tsv, $1::tsquery) DESC, x.id" } else { "x.id DESC" };
    let sql = format!(
        "SELECT {} FROM {} x WHERE x.tsv @@ $1::tsquery AND {}{} ORDER BY {order} LIMIT $2",
        columns::<T>(),
        T::TABLE,
        T::LIVE,
        conds.sql(3)
    );
    let q = sqlx::query(AssertSqlSafe(sql)).bind(&tsquery.expr).bind(n as i64);
    let rows = conds.bind(q).fetch_all(c).await.map_err(db_err)?;
    rows.iter().map(T::from_row).collect()
}

/// Nearest entities by cosine, among those whose vector is of `model` and still matches their
/// text.
async fn vector_candidates<T: Searchable>(
    c: &mut PgConnection,
    model: &str,
    v: &[f32],
    conds: &Conds,
    n: usize,
) -> Result<Vec<(T, f32)>> {
    if T::VECTOR_COLUMNS.is_some() {
        let mut found = vec![];
        for exact in [false, true] {
            plan_knn(c, n, exact).await?;
            found = indexed_candidates(c, model, v, conds, n).await?;
            if found.len() >= n {
                break;
            }
        }
        reset_knn_plan(c).await?;
        return Ok(found);
    }
    // distances are ranked over ids alone, and only the nearest rows are read whole (a doc's body
    // can be 256 KiB); an entity that keeps the hash of its text is checked against it here
    let current = T::TEXT_HASH.map(|col| format!(" AND e.text_hash = x.{col}")).unwrap_or_default();
    let sql = format!(
        "WITH v AS MATERIALIZED (SELECT e.{key} AS id, e.text_hash, e.embedding <=> $1 AS d FROM {emb} e \
             JOIN {table} x ON x.id = e.{key} WHERE e.model = $2 AND e.dim = $3 AND {live}{current}{conds} \
             ORDER BY d, e.{key} LIMIT $4) \
         SELECT {}, v.text_hash, v.d FROM v JOIN {table} x ON x.id = v.id ORDER BY v.d, x.id",
        columns::<T>(),
        key = T::KEY,
        emb = T::EMBEDDINGS,
        table = T::TABLE,
        live = T::LIVE,
        conds = conds.sql(5)
    );
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(Vector::from(v.to_vec()))
        .bind(model)
        .bind(v.len() as i32)
        .bind((n * 2) as i64);
    let rows = conds.bind(q).fetch_all(c).await.map_err(db_err)?;
    let at = after_columns::<T>();
    let mut out = Vec::with_capacity(n);
    for r in &rows {
        let item = T::from_row(r)?;
        let hash: String = r.try_get(at).map_err(db_err)?;
        let d: f64 = r.try_get(at + 1).map_err(db_err)?;
        if hash == text_hash(&item.text()) && out.len() < n {
            out.push((item, 1.0 - d as f32));
        }
    }
    Ok(out)
}

/// [`vector_candidates`] of an entity whose vectors carry its filter columns, through the index
/// of the model and dimension when there is one (the query names its `index_key` as a literal, so
/// that every plan, a prepared statement's generic one too, can use the partial index).
async fn indexed_candidates<T: Searchable>(
    c: &mut PgConnection,
    model: &str,
    v: &[f32],
    conds: &Conds,
    n: usize,
) -> Result<Vec<(T, f32)>> {
    let dim = v.len();
    let distance = format!("(e.embedding::vector({dim})) <=> $1");
    let current = T::TEXT_HASH.map(|col| format!(" AND x.{col} = knn.text_hash")).unwrap_or_default();
    let sql = format!(
        "WITH knn AS MATERIALIZED (SELECT e.{key} AS id, e.text_hash, {distance} AS d FROM {emb} e \
             WHERE e.index_key = '{index}' AND e.model = $2{conds} ORDER BY {distance} LIMIT $3) \
         SELECT {}, knn.d FROM knn JOIN {table} x ON x.id = knn.id WHERE {live}{current} ORDER BY knn.d, x.id",
        columns::<T>(),
        key = T::KEY,
        emb = T::EMBEDDINGS,
        index = index_key(model, dim),
        conds = conds.sql_on("e", 4),
        table = T::TABLE,
        live = T::LIVE,
    );
    let q = sqlx::query(AssertSqlSafe(sql)).bind(Vector::from(v.to_vec())).bind(model).bind(n as i64);
    let rows = conds.bind(q).fetch_all(c).await.map_err(db_err)?;
    let at = after_columns::<T>();
    rows.iter()
        .map(|r| {
            let d: f64 = r.try_get(at).map_err(db_err)?;
            Ok((T::from_row(r)?, 1.0 - d as f32))
        })
        .collect()
}

/// Creates the partial HNSW index of a model and dimension over an entity's vectors unless it
/// exists, in its own transaction (DDL commits before vectors are written; concurrent callers
/// wait on an advisory lock instead of racing). Entities without [`Searchable::VECTOR_COLUMNS`],
/// and dimensions an HNSW index does not take, have none.
pub(crate) async fn ensure_index<T: Searchable>(c: &mut PgConnection, model: &str, dim: usize) -> Result<()> {
    if T::VECTOR_COLUMNS.is_none() || dim == 0 || dim > HNSW_MAX_DIM {
        return Ok(());
    }
    let key = index_key(model, dim);
    let name = format!("{}_{key}", T::EMBEDDINGS);
    let exists = "SELECT to_regclass($1) IS NOT NULL";
    if sqlx::query_scalar(exists).bind(&name).fetch_one(&mut *c).await.map_err(db_err)? {
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(db_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if !sqlx::query_scalar::<_, bool>(exists).bind(&name).fetch_one(&mut *tx).await.map_err(db_err)? {
        let ddl = format!(
            "CREATE INDEX {name} ON {} USING hnsw ((embedding::vector({dim})) vector_cosine_ops) \
             WHERE index_key = '{key}'",
            T::EMBEDDINGS
        );
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await.map_err(db_err)?;
        tracing::info!(model, dim, index = name, "created a vector index");
    }
    tx.commit().await.map_err(db_err)
}

/// Hybrid search among the live entities that meet `conds`; text-only hits get their cosine
/// too (from their current vector) when the request has a vector.
pub(crate) async fn search<T: Searchable>(
    c: &mut PgConnection,
    req: &SearchRequest,
    conds: Conds,
) -> Result<Vec<Fused<T>>> {
    let n = (req.limit * OVERSAMPLE).clamp(20, 400);
    let text = text_candidates(c, &req.text, &conds, n).await?;
    let vector = match &req.vector {
        Some(v) => vector_candidates(c, &v.model, &v.vector, &conds, n).await?,
        None => vec![],
    };
    let mut out = fuse(text, vector, T::key, req.limit);
    if let Some(v) = &req.vector {
        let missing: Vec<Uuid> = out.iter().filter(|h| h.cosine.is_none()).map(|h| h.item.key()).collect();
        if !missing.is_empty() {
            let sql = format!(
                "SELECT {key}, text_hash, 1 - (embedding <=> $1) FROM {} \
                 WHERE {key} = ANY($2) AND model = $3 AND dim = $4",
                T::EMBEDDINGS,
                key = T::KEY
            );
            let rows: Vec<(Uuid, String, f64)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(Vector::from(v.vector.clone()))
                .bind(missing)
                .bind(&v.model)
                .bind(v.vector.len() as i32)
                .fetch_all(c)
                .await
                .map_err(db_err)?;
            let found: HashMap<Uuid, (String, f32)> =
                rows.into_iter().map(|(id, hash, cos)| (id, (hash, cos as f32))).collect();
            for h in out.iter_mut().filter(|h| h.cosine.is_none()) {
                h.cosine = found
                    .get(&h.item.key())
                    .filter(|(hash, _)| *hash == text_hash(&h.item.text()))
                    .map(|(_, cos)| *cos);
            }
        }
    }
    Ok(out)
}

/// Up to `limit` live entities, newest first, whose current text has no vector of `model`, each
/// made into a job by `job(entity, text, text hash)`.
pub(crate) async fn pending<T: Searchable, J>(
    c: &mut PgConnection,
    model: &str,
    limit: usize,
    job: impl Fn(T, String, String) -> J,
) -> Result<Vec<J>> {
    let (stale, cap) = match T::TEXT_HASH {
        Some(col) => (format!(" AND e.text_hash IS DISTINCT FROM x.{col}"), format!(" LIMIT {limit}")),
        None => (String::new(), String::new()),
    };
    let sql = format!(
        "SELECT {}, e.text_hash FROM {} x LEFT JOIN {} e ON e.{} = x.id AND e.model = $1 \
         WHERE {}{stale} ORDER BY x.id DESC{cap}",
        columns::<T>(),
        T::TABLE,
        T::EMBEDDINGS,
        T::KEY,
        T::LIVE
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(model).fetch_all(c).await.map_err(db_err)?;
    let at = after_columns::<T>();
    let mut out = Vec::new();
    for r in &rows {
        let item = T::from_row(r)?;
        let have: Option<String> = r.try_get(at).map_err(db_err)?;
        let text = item.text();
        let hash = text_hash(&text);
        if have.as_deref() != Some(hash.as_str()) {
            out.push(job(item, text, hash));
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// A computed vector: the entity's id, the hash of the text it was made from, the vector.
pub(crate) type Vectored = (Uuid, String, Vec<f32>);

/// Stores one vector; one made from a text that is no longer the entity's is ignored, and so is
/// one of an entity that does not exist.
pub(crate) async fn put<T: Searchable>(c: &mut PgConnection, model: &str, e: &Vectored) -> Result<()> {
    let (id, hash, vector) = e;
    if vector.is_empty() || vector.len() > MAX_DIM {
        return Err(Error::validation("vector", format!("dimension {} is not supported", vector.len())));
    }
    // the share lock keeps the text from changing until this vector is stored (a write that
    // changes the text of an entity with vector columns deletes its vectors)
    let sql = format!("SELECT {} FROM {} x WHERE x.id = $1 FOR SHARE", columns::<T>(), T::TABLE);
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *c).await.map_err(db_err)?;
    let Some(item) = row.as_ref().map(T::from_row).transpose()? else { return Ok(()) };
    if text_hash(&item.text()) != *hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    let (extra, copied) = match T::VECTOR_COLUMNS {
        Some(cols) => {
            let from = cols.split(',').map(|c| format!("x.{}", c.trim())).collect::<Vec<_>>().join(", ");
            (format!(", index_key, {cols}"), format!(", '{}', {from}", index_key(model, vector.len())))
        }
        None => (String::new(), String::new()),
    };
    let refresh = if T::VECTOR_COLUMNS.is_some() { ", index_key = excluded.index_key" } else { "" };
    let sql = format!(
        "INSERT INTO {} ({key}, model, text_hash, dim, embedding{extra}) \
         SELECT $1, $2, $3, $4, $5{copied} FROM {} x WHERE x.id = $1 \
         ON CONFLICT ({key}, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim, \
         embedding = excluded.embedding{refresh}",
        T::EMBEDDINGS,
        T::TABLE,
        key = T::KEY
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(model)
        .bind(hash)
        .bind(vector.len() as i32)
        .bind(Vector::from(vector.clone()))
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}
