//! Search of klusters and docs: FTS5 over two text columns, vectors in a plain table, fused by
//! reciprocal rank like task search. A stored vector counts only while the hash of the text it was
//! made from is the current one (a text change deletes the others), and only against its own
//! model. Vectors are compared either with sqlite-vec's cosine distance during the scan (klusters:
//! tens per mission) or, for an entity with a [`Memory`] (docs: thousands per mission), in the
//! in-memory index that holds task vectors ([`vindex`]), loaded at open and kept by the writer.
//!
//! Each searched entity names its tables ([`Tables`]) and maps its rows ([`Scanned`]); filters are
//! [`Cond`]s, each both a scope token of the full-text index and a column value of the entity.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

use mc_domain::{Error, Result};
use mc_store::SearchRequest;
use mc_store::fusion::{Fused, fuse};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::conn::db_err;
use crate::rows::prefixed;
use crate::search::{FtsIndex, MatchCounts, blob, dot, fts_query, scope_token, text_hash, unblob, vec_key};
use crate::vindex::{self, Op, VecIndex};

/// The tables of one searched entity.
pub(crate) struct Tables {
    /// The entity's table (its key column is `id`) and the columns its row mapper reads, in order.
    pub(crate) entity: &'static str,
    pub(crate) columns: &'static str,
    /// The table giving each entity the stable integer id of its full-text document.
    pub(crate) docs: &'static str,
    /// The integer column of `docs`.
    pub(crate) row_id: &'static str,
    /// The column naming the entity in `docs` and in `embeddings`.
    pub(crate) key: &'static str,
    /// The FTS5 table: two text columns, then `scope`.
    pub(crate) fts: &'static str,
    pub(crate) text: [&'static str; 2],
    /// Vectors: (key, model, text_hash, dim, vector), one per entity and model.
    pub(crate) embeddings: &'static str,
    /// A column of the entity holding the hash of its embedded text, if it keeps one: pending
    /// work is then found in SQL, without reading and hashing every text (docs are long).
    pub(crate) text_hash: Option<&'static str>,
    /// Whether, and how, its current vectors are also held in the in-memory index.
    pub(crate) memory: Option<Memory>,
}

/// How an entity's vectors sit in the in-memory index: one index table per model and dimension,
/// rows keyed by the integer id of the entity's full-text document ([`Tables::row_id`]),
/// partitioned by mission, with the kluster and a class code of each row. The three columns must
/// never change once the entity exists (the index is told of new and stale vectors only).
pub(crate) struct Memory {
    /// Prefix of its index tables' names.
    pub(crate) prefix: &'static str,
    pub(crate) mission: &'static str,
    /// Nullable (no kluster).
    pub(crate) kluster: &'static str,
    pub(crate) class: &'static str,
    /// The class code (below 8) of a value of the class column.
    pub(crate) class_code: fn(&str) -> u8,
}

impl Memory {
    fn table(&self, model: &str, dim: usize) -> String {
        format!("{}_{}", self.prefix, vec_key(model, dim))
    }

    /// The index filter of `conds` (each must name one of the three columns).
    fn filter<'a>(&self, conds: &'a [Cond]) -> Result<vindex::Filter<'a>> {
        let mut f = vindex::Filter::default();
        for cond in conds {
            match cond.column {
                c if c == self.mission => f.mission = Some(&cond.value),
                c if c == self.kluster => f.kluster = Some(&cond.value),
                c if c == self.class => {
                    f.classes = Some(f.classes.unwrap_or(u8::MAX) & 1 << (self.class_code)(&cond.value))
                }
                other => return Err(Error::Internal(format!("{other} is not a column of the vector index"))),
            }
        }
        Ok(f)
    }
}

/// An entity searched by scanning its few vectors.
pub(crate) trait Scanned: Sized {
    type Id: Copy + Eq + Hash + Ord + Display;
    const TABLES: Tables;

    /// Maps a row of [`Tables::columns`] (read from index 0).
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self>;
    /// Loads one (`NotFound` when missing).
    fn load(c: &Connection, id: Self::Id) -> Result<Self>;
    fn id(&self) -> Self::Id;
    /// The texts of [`Tables::text`], in order.
    fn texts(&self) -> [&str; 2];
    /// The text that gets embedded (its hash decides whether a stored vector is current).
    fn embedding_text(&self) -> String;
    /// The scope tokens of its full-text document, space separated (see [`Cond`]).
    fn scope(&self) -> String;
}

/// A filter: the scope token `<prefix><value without dashes>` in the full-text index, and
/// `<column> = <value>` on the entity's row.
pub(crate) struct Cond {
    token: String,
    column: &'static str,
    value: String,
}

impl Cond {
    pub(crate) fn new(prefix: char, column: &'static str, value: impl Display) -> Self {
        let value = value.to_string();
        Self { token: scope_token(prefix, &value), column, value }
    }
}

fn ncols<T: Scanned>() -> usize {
    T::TABLES.columns.split(", ").count()
}

/// Indexes an entity's text and scope (new or changed).
pub(crate) fn index<T: Scanned>(c: &Connection, x: &T) -> Result<()> {
    let Tables { docs, row_id, key, fts, text: [a, b], .. } = T::TABLES;
    let doc: Option<i64> = c
        .prepare_cached(&format!("SELECT {row_id} FROM {docs} WHERE {key} = ?1"))
        .map_err(db_err)?
        .query_row([x.id().to_string()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    let doc = match doc {
        Some(d) => {
            c.prepare_cached(&format!("DELETE FROM {fts} WHERE rowid = ?1"))
                .map_err(db_err)?
                .execute([d])
                .map_err(db_err)?;
            forget_stale(c, x, d)?;
            d
        }
        None => {
            c.prepare_cached(&format!("INSERT INTO {docs} ({key}) VALUES (?1)"))
                .map_err(db_err)?
                .execute([x.id().to_string()])
                .map_err(db_err)?;
            c.last_insert_rowid()
        }
    };
    let [ta, tb] = x.texts();
    c.prepare_cached(&format!("INSERT INTO {fts} (rowid, {a}, {b}, scope) VALUES (?1, ?2, ?3, ?4)"))
        .map_err(db_err)?
        .execute(params![doc, ta, tb, x.scope()])
        .map_err(db_err)?;
    Ok(())
}

/// Deletes an entity's vectors made from another text than its current one (its text changed),
/// and takes them out of the in-memory index. `row` is its full-text document.
fn forget_stale<T: Scanned>(c: &Connection, x: &T, row: i64) -> Result<()> {
    let Tables { key, embeddings, memory, .. } = T::TABLES;
    let stale: Vec<(String, i64)> = c
        .prepare_cached(&format!("DELETE FROM {embeddings} WHERE {key} = ?1 AND text_hash <> ?2 RETURNING model, dim"))
        .map_err(db_err)?
        .query_map(params![x.id().to_string(), text_hash(&x.embedding_text())], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    if let Some(m) = &memory {
        for (model, dim) in stale {
            vindex::record(Op::Delete { table: m.table(&model, dim as usize), doc: row });
        }
    }
    Ok(())
}

/// Full-text candidates, best first. The query is [`fts_query`]'s, as for tasks: a doc's overlap
/// check asks with its title and the first words of its body, and ranking every doc that shares
/// one of thirty common words took most of the check's time at a few thousand docs.
fn text_candidates<T: Scanned>(
    c: &Connection,
    counts: &MatchCounts,
    req: &SearchRequest,
    conds: &[Cond],
    n: usize,
) -> Result<Vec<T>> {
    let Tables { entity, columns, docs, row_id, key, fts, text, .. } = T::TABLES;
    let Some(words) = fts_query(c, counts, FtsIndex { table: fts, columns: &text }, &req.text)? else {
        return Ok(vec![]);
    };
    let mut q = format!("({})", words.expr);
    for cond in conds {
        q.push_str(&format!(" AND scope : {}", cond.token));
    }
    // unranked, the newest matches come first (FTS5 walks rowids backwards without sorting)
    let (fts_cols, inner_order, outer_order) = if words.ranked {
        ("rowid AS doc, rank", "rank", "f.rank")
    } else {
        ("rowid AS doc", "rowid DESC", "f.doc DESC")
    };
    let sql = format!(
        "SELECT {} FROM (SELECT {fts_cols} FROM {fts} WHERE {fts} MATCH ?1 ORDER BY {inner_order} LIMIT ?2) f \
         JOIN {docs} d ON d.{row_id} = f.doc JOIN {entity} x ON x.id = d.{key} ORDER BY {outer_order}",
        prefixed(columns, "x")
    );
    c.prepare_cached(&sql)
        .map_err(db_err)?
        .query_map(params![q, n as i64], T::from_row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)
}

/// Nearest entities by cosine, scanned in SQL (entities without a [`Memory`]), among those whose
/// stored vector is of `model` and still matches their text. Distances are ranked over ids alone,
/// and only the nearest rows are read whole (sorting whole rows is slow when texts are long). An entity
/// that keeps the hash of its text is checked against it in SQL (from an index that holds it),
/// others by hashing their text here.
fn vector_candidates<T: Scanned>(
    c: &Connection,
    model: &str,
    v: &[f32],
    conds: &[Cond],
    n: usize,
) -> Result<Vec<(T, f32)>> {
    let Tables { entity, columns, key, embeddings, text_hash: kept, .. } = T::TABLES;
    let mut inner = format!(
        "SELECT e.{key} AS id, e.text_hash, vec_distance_cosine(e.vector, ?1) AS d FROM {embeddings} e \
         JOIN {entity} x ON x.id = e.{key} WHERE e.model = ?2 AND e.dim = ?3"
    );
    if let Some(col) = kept {
        inner.push_str(&format!(" AND e.text_hash = x.{col}"));
    }
    let mut args = vec![Value::Blob(blob(v)), Value::Text(model.to_owned()), Value::Integer(v.len() as i64)];
    for cond in conds {
        args.push(Value::Text(cond.value.clone()));
        inner.push_str(&format!(" AND x.{} = ?{}", cond.column, args.len()));
    }
    inner.push_str(&format!(" ORDER BY d LIMIT {}", n * 2));
    let sql = format!(
        "SELECT {}, v.text_hash, v.d FROM ({inner}) v JOIN {entity} x ON x.id = v.id ORDER BY v.d",
        prefixed(columns, "x")
    );
    let cols = ncols::<T>();
    let rows: Vec<(T, String, f64)> = c
        .prepare_cached(&sql)
        .map_err(db_err)?
        .query_map(params_from_iter(args), |r| Ok((T::from_row(r)?, r.get(cols)?, r.get(cols + 1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .filter(|(x, hash, _)| kept.is_some() || *hash == text_hash(&x.embedding_text()))
        .take(n)
        .map(|(x, _, d)| (x, 1.0 - d as f32))
        .collect())
}

/// Nearest entities from the in-memory index, with their (int8 approximate) cosine similarity.
fn indexed_candidates<T: Scanned>(
    c: &Connection,
    index: &VecIndex,
    memory: &Memory,
    model: &str,
    v: &[f32],
    conds: &[Cond],
    n: usize,
) -> Result<Vec<(T, f32)>> {
    let Tables { entity, columns, docs, row_id, key, .. } = T::TABLES;
    let nearest = index.nearest(&memory.table(model, v.len()), v, &memory.filter(conds)?, n);
    if nearest.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {}, d.{row_id} FROM {docs} d JOIN {entity} x ON x.id = d.{key} WHERE d.{row_id} IN ({})",
        prefixed(columns, "x"),
        vec!["?"; nearest.len()].join(", ")
    );
    let cols = ncols::<T>();
    let mut found: HashMap<i64, T> = c
        .prepare_cached(&sql)
        .map_err(db_err)?
        .query_map(params_from_iter(nearest.iter().map(|(row, _)| *row)), |r| Ok((r.get(cols)?, T::from_row(r)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<HashMap<_, _>>>()
        .map_err(db_err)?;
    Ok(nearest.into_iter().filter_map(|(row, sim)| Some((found.remove(&row)?, sim))).collect())
}

/// Hybrid search among the entities meeting every condition of `conds`: the best `req.limit`,
/// text-only hits with their cosine too when a vector is given.
pub(crate) fn search<T: Scanned>(
    c: &Connection,
    index: &VecIndex,
    counts: &MatchCounts,
    req: &SearchRequest,
    conds: &[Cond],
) -> Result<Vec<Fused<T>>> {
    let n = (req.limit * 4).clamp(20, 400);
    let text = text_candidates::<T>(c, counts, req, conds, n)?;
    let vector = match (&req.vector, &T::TABLES.memory) {
        (Some(v), Some(m)) => indexed_candidates::<T>(c, index, m, &v.model, &v.vector, conds, n)?,
        (Some(v), None) => vector_candidates::<T>(c, &v.model, &v.vector, conds, n)?,
        (None, _) => vec![],
    };
    let mut out = fuse(text, vector, T::id, req.limit);
    if let Some(v) = &req.vector {
        // text-only hits get their similarity too
        for h in out.iter_mut().filter(|h| h.cosine.is_none()) {
            h.cosine = current_vector(c, &h.item, &v.model)?.filter(|xv| xv.len() == v.vector.len()).map(|xv| {
                dot(&xv, &v.vector) / (dot(&xv, &xv).sqrt() * dot(&v.vector, &v.vector).sqrt()).max(f32::MIN_POSITIVE)
            });
        }
    }
    Ok(out)
}

fn current_vector<T: Scanned>(c: &Connection, x: &T, model: &str) -> Result<Option<Vec<f32>>> {
    let Tables { key, embeddings, .. } = T::TABLES;
    let row: Option<(String, Vec<u8>)> = c
        .prepare_cached(&format!("SELECT text_hash, vector FROM {embeddings} WHERE {key} = ?1 AND model = ?2"))
        .map_err(db_err)?
        .query_row(params![x.id().to_string(), model], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    Ok(row.filter(|(hash, _)| *hash == text_hash(&x.embedding_text())).map(|(_, b)| unblob(&b)))
}

/// An entity whose current text has no vector of a model: (id, text, text hash).
pub(crate) type Job<Id> = (Id, String, String);

/// Up to `limit` entities meeting `conds` whose current text has no vector of `model`, newest
/// first.
pub(crate) fn pending<T: Scanned>(
    c: &Connection,
    model: &str,
    limit: usize,
    conds: &[Cond],
) -> Result<Vec<Job<T::Id>>> {
    let Tables { entity, columns, key, embeddings, text_hash: kept, .. } = T::TABLES;
    let mut sql = format!(
        "SELECT {}, e.text_hash FROM {entity} x LEFT JOIN {embeddings} e ON e.{key} = x.id AND e.model = ?1 \
         WHERE 1",
        prefixed(columns, "x")
    );
    if let Some(col) = kept {
        sql.push_str(&format!(" AND e.text_hash IS NOT x.{col}"));
    }
    let mut args = vec![Value::Text(model.to_owned())];
    for cond in conds {
        args.push(Value::Text(cond.value.clone()));
        sql.push_str(&format!(" AND x.{} = ?{}", cond.column, args.len()));
    }
    sql.push_str(" ORDER BY x.id DESC");
    let mut st = c.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = st.query(params_from_iter(args)).map_err(db_err)?;
    let cols = ncols::<T>();
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(r) = rows.next().map_err(db_err)?
    {
        let x = T::from_row(r).map_err(db_err)?;
        let have: Option<String> = r.get(cols).map_err(db_err)?;
        let text = x.embedding_text();
        let hash = text_hash(&text);
        if have.as_deref() != Some(hash.as_str()) {
            out.push((x.id(), text, hash));
        }
    }
    Ok(out)
}

/// Stores a vector of `model` for an entity's text; one whose text hash is no longer current (or
/// whose entity is gone) is ignored.
pub(crate) fn put<T: Scanned>(c: &Connection, model: &str, id: T::Id, hash: &str, vector: &[f32]) -> Result<()> {
    if vector.is_empty() || vector.len() > 8192 {
        return Err(Error::validation("vector", format!("dimension {} is not supported", vector.len())));
    }
    let x = match T::load(c, id) {
        Ok(x) => x,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if text_hash(&x.embedding_text()) != hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    let Tables { key, embeddings, memory, .. } = T::TABLES;
    let placed = match &memory {
        Some(m) => Some(placement::<T>(c, m, id, model)?),
        None => None,
    };
    c.prepare_cached(&format!(
        "INSERT INTO {embeddings} ({key}, model, text_hash, dim, vector) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT ({key}, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim, \
         vector = excluded.vector"
    ))
    .map_err(db_err)?
    .execute(params![id.to_string(), model, hash, vector.len() as i64, blob(vector)])
    .map_err(db_err)?;
    if let (Some(m), Some(p)) = (&memory, placed) {
        if let Some(old) = p.old_dim.filter(|d| *d != vector.len()) {
            vindex::record(Op::Delete { table: m.table(model, old), doc: p.row });
        }
        vindex::record(Op::Upsert {
            table: m.table(model, vector.len()),
            doc: p.row,
            mission: p.mission,
            kluster: p.kluster,
            class: p.class,
            vector: vector.to_vec(),
        });
    }
    Ok(())
}

/// Where an entity's vector goes in the in-memory index, and the dimension of the vector of a model it has now.
struct Placement {
    row: i64,
    mission: String,
    kluster: String,
    class: u8,
    old_dim: Option<usize>,
}

fn placement<T: Scanned>(c: &Connection, m: &Memory, id: T::Id, model: &str) -> Result<Placement> {
    let Tables { entity, docs, row_id, key, embeddings, .. } = T::TABLES;
    let Memory { mission, kluster, class, class_code, .. } = m;
    c.prepare_cached(&format!(
        "SELECT d.{row_id}, x.{mission}, coalesce(x.{kluster}, ''), x.{class}, \
         (SELECT e.dim FROM {embeddings} e WHERE e.{key} = x.id AND e.model = ?2) \
         FROM {docs} d JOIN {entity} x ON x.id = d.{key} WHERE d.{key} = ?1"
    ))
    .map_err(db_err)?
    .query_row(params![id.to_string(), model], |r| {
        Ok(Placement {
            row: r.get(0)?,
            mission: r.get(1)?,
            kluster: r.get(2)?,
            class: class_code(&r.get::<_, String>(3)?),
            old_dim: r.get::<_, Option<i64>>(4)?.map(|d| d as usize),
        })
    })
    .map_err(db_err)
}

/// Loads the current vectors of an entity with a [`Memory`] into the in-memory index (at open,
/// before the writer starts); returns how many.
pub(crate) fn load_index<T: Scanned>(c: &Connection, index: &VecIndex) -> Result<usize> {
    let Tables { entity, docs, row_id, key, embeddings, text_hash: kept, memory, .. } = T::TABLES;
    let Some(m) = &memory else { return Ok(0) };
    let Some(kept) = kept else {
        return Err(Error::Internal(format!("{entity} are held in memory but keep no text hash")));
    };
    let Memory { mission, kluster, class, class_code, .. } = m;
    let mut st = c
        .prepare(&format!(
            "SELECT d.{row_id}, e.model, e.vector, x.{mission}, coalesce(x.{kluster}, ''), x.{class} \
             FROM {embeddings} e JOIN {entity} x ON x.id = e.{key} AND x.{kept} = e.text_hash \
             JOIN {docs} d ON d.{key} = x.id"
        ))
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            let (model, vector): (String, Vec<u8>) = (r.get(1)?, r.get(2)?);
            let vector = unblob(&vector);
            Ok(Op::Upsert {
                table: m.table(&model, vector.len()),
                doc: r.get(0)?,
                vector,
                mission: r.get(3)?,
                kluster: r.get(4)?,
                class: class_code(&r.get::<_, String>(5)?),
            })
        })
        .map_err(db_err)?;
    index.load(rows.map(|r| r.map_err(db_err)))
}
