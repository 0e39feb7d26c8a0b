//! Kluster search on the embedded profile: FTS5 over name and description, vectors in a plain
//! table compared with sqlite-vec's cosine distance during the scan (a mission has tens of
//! klusters, not thousands of them), fused by reciprocal rank like task search.

use mc_domain::{Error, Kluster, KlusterId, Result};
use mc_store::{KlusterEmbeddingJob, KlusterHit, SearchRequest};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::conn::db_err;
use crate::rows::{kluster_from_row, load_kluster};
use mc_store::fusion::fuse;

use crate::search::{blob, dot, query_words, scope_token, text_hash, unblob};

const COLUMNS: &str = "k.id, k.mission_id, k.name, k.description, k.status, k.created_at, k.updated_at";

/// Indexes a kluster's text and status (new or changed).
pub(crate) fn index(c: &Connection, k: &Kluster) -> Result<()> {
    let doc: Option<i64> = c
        .prepare_cached("SELECT doc_id FROM kluster_docs WHERE kluster_id = ?1")
        .map_err(db_err)?
        .query_row([k.id.to_string()], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    let doc = match doc {
        Some(d) => {
            c.prepare_cached("DELETE FROM kluster_fts WHERE rowid = ?1")
                .map_err(db_err)?
                .execute([d])
                .map_err(db_err)?;
            d
        }
        None => {
            c.prepare_cached("INSERT INTO kluster_docs (kluster_id) VALUES (?1)")
                .map_err(db_err)?
                .execute([k.id.to_string()])
                .map_err(db_err)?;
            c.last_insert_rowid()
        }
    };
    let scope = format!("{} s{}", scope_token('m', &k.mission_id.to_string()), k.status.as_str());
    c.prepare_cached("INSERT INTO kluster_fts (rowid, name, description, scope) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?
        .execute(params![doc, k.name, k.description, scope])
        .map_err(db_err)?;
    Ok(())
}

fn text_candidates(c: &Connection, req: &SearchRequest, n: usize) -> Result<Vec<Kluster>> {
    let words = query_words(&req.text);
    if words.is_empty() {
        return Ok(vec![]);
    }
    let any = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" OR ");
    let mut q = format!("{{name description}} : ({any}) AND scope : sactive");
    if let Some(m) = req.filter.mission_id {
        q.push_str(&format!(" AND scope : {}", scope_token('m', &m.to_string())));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM (SELECT rowid AS doc, rank FROM kluster_fts WHERE kluster_fts MATCH ?1 \
         ORDER BY rank LIMIT ?2) f JOIN kluster_docs d ON d.doc_id = f.doc JOIN klusters k ON k.id = d.kluster_id \
         ORDER BY f.rank"
    );
    c.prepare_cached(&sql)
        .map_err(db_err)?
        .query_map(params![q, n as i64], kluster_from_row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)
}

/// Nearest klusters by cosine, among those whose stored vector is of `model` and still matches
/// their text.
fn vector_candidates(
    c: &Connection,
    model: &str,
    v: &[f32],
    req: &SearchRequest,
    n: usize,
) -> Result<Vec<(Kluster, f32)>> {
    let mut sql = format!(
        "SELECT {COLUMNS}, e.text_hash, vec_distance_cosine(e.vector, ?1) AS d FROM kluster_embeddings e \
         JOIN klusters k ON k.id = e.kluster_id WHERE e.model = ?2 AND e.dim = ?3 AND k.status = 'active'"
    );
    let mut args = vec![Value::Blob(blob(v)), Value::Text(model.to_owned()), Value::Integer(v.len() as i64)];
    if let Some(m) = req.filter.mission_id {
        sql.push_str(" AND k.mission_id = ?4");
        args.push(Value::Text(m.to_string()));
    }
    sql.push_str(&format!(" ORDER BY d LIMIT {}", n * 2));
    let rows: Vec<(Kluster, String, f64)> = c
        .prepare_cached(&sql)
        .map_err(db_err)?
        .query_map(params_from_iter(args), |r| Ok((kluster_from_row(r)?, r.get(7)?, r.get(8)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .filter(|(k, hash, _)| *hash == text_hash(&k.embedding_text()))
        .take(n)
        .map(|(k, _, d)| (k, 1.0 - d as f32))
        .collect())
}

pub(crate) fn search(c: &Connection, req: &SearchRequest) -> Result<Vec<KlusterHit>> {
    let n = (req.limit * 4).clamp(20, 400);
    let text = text_candidates(c, req, n)?;
    let vector = match &req.vector {
        Some(v) => vector_candidates(c, &v.model, &v.vector, req, n)?,
        None => vec![],
    };
    let mut out: Vec<KlusterHit> = fuse(text, vector, |k| k.id, req.limit).into_iter().map(KlusterHit::from).collect();
    if let Some(v) = &req.vector {
        // text-only hits get their similarity too
        for h in out.iter_mut().filter(|h| h.cosine.is_none()) {
            h.cosine = current_vector(c, h.kluster.id, &h.kluster, &v.model)?
                .filter(|kv| kv.len() == v.vector.len())
                .map(|kv| {
                    dot(&kv, &v.vector)
                        / (dot(&kv, &kv).sqrt() * dot(&v.vector, &v.vector).sqrt()).max(f32::MIN_POSITIVE)
                });
        }
    }
    Ok(out)
}

fn current_vector(c: &Connection, id: KlusterId, k: &Kluster, model: &str) -> Result<Option<Vec<f32>>> {
    let row: Option<(String, Vec<u8>)> = c
        .prepare_cached("SELECT text_hash, vector FROM kluster_embeddings WHERE kluster_id = ?1 AND model = ?2")
        .map_err(db_err)?
        .query_row(params![id.to_string(), model], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    Ok(row.filter(|(hash, _)| *hash == text_hash(&k.embedding_text())).map(|(_, b)| unblob(&b)))
}

pub(crate) fn pending(c: &Connection, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, e.text_hash FROM klusters k LEFT JOIN kluster_embeddings e \
             ON e.kluster_id = k.id AND e.model = ?1 WHERE k.status = 'active' ORDER BY k.id DESC"
        ))
        .map_err(db_err)?;
    let mut rows = st.query([model]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let k = kluster_from_row(r).map_err(db_err)?;
        let have: Option<String> = r.get(7).map_err(db_err)?;
        let text = k.embedding_text();
        let hash = text_hash(&text);
        if have.as_deref() != Some(hash.as_str()) {
            out.push(KlusterEmbeddingJob { kluster_id: k.id, text, text_hash: hash });
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

pub(crate) fn put(c: &Connection, model: &str, id: KlusterId, hash: &str, vector: &[f32]) -> Result<()> {
    if vector.is_empty() || vector.len() > 8192 {
        return Err(Error::validation("vector", format!("dimension {} is not supported", vector.len())));
    }
    let k = match load_kluster(c, id) {
        Ok(k) => k,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if text_hash(&k.embedding_text()) != hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    c.prepare_cached(
        "INSERT INTO kluster_embeddings (kluster_id, model, text_hash, dim, vector) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (kluster_id, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim, \
         vector = excluded.vector",
    )
    .map_err(db_err)?
    .execute(params![id.to_string(), model, hash, vector.len() as i64, blob(vector)])
    .map_err(db_err)?;
    Ok(())
}
