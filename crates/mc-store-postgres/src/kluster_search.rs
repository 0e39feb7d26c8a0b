//! Kluster search on PostgreSQL: full text over a generated tsvector of name and description,
//! vectors in one plain table compared by cosine distance during the scan (a mission has tens of
//! klusters, not thousands), fused by reciprocal rank like task search. Only active klusters are
//! found; a vector made from an older text is not compared.

use std::collections::HashMap;

use mc_domain::id::Uuid;
use mc_domain::{Error, Kluster, KlusterId, Result};
use mc_store::{KlusterEmbedded, KlusterEmbeddingJob, KlusterHit, SearchRequest};
use pgvector::Vector;
use sqlx::{PgConnection, Row};

use crate::rows::{Lock, db_err, kluster_from_row, load_kluster};
use mc_store::fusion::fuse;

use crate::search::{OVERSAMPLE, query_words, text_hash};

/// Largest dimension stored (as on the embedded profile).
const MAX_DIM: usize = 8_192;

/// The columns of `klusters k`, in the order `kluster_from_row` reads them.
macro_rules! k_columns {
    () => {
        "k.id, k.mission_id, k.name, k.description, k.status, k.created_at, k.updated_at"
    };
}

/// Klusters matching any of the query's words (stemmed), best first.
async fn text_candidates(c: &mut PgConnection, req: &SearchRequest, n: usize) -> Result<Vec<Kluster>> {
    let words = query_words(&req.text);
    if words.is_empty() {
        return Ok(vec![]);
    }
    let rows = sqlx::query(concat!(
        "WITH q AS (SELECT to_tsquery('simple', string_agg(quote_literal(lex), ' | ')) AS q \
             FROM (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', w))) AS lex \
                   FROM unnest($1::text[]) AS w) l) \
         SELECT ",
        k_columns!(),
        " FROM klusters k, q WHERE k.tsv @@ q.q AND k.status = 'active' \
         AND ($3::uuid IS NULL OR k.mission_id = $3) ORDER BY ts_rank_cd(k.tsv, q.q) DESC, k.id LIMIT $2"
    ))
    .bind(&words)
    .bind(n as i64)
    .bind(req.filter.mission_id.map(|m| m.as_uuid()))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    rows.iter().map(kluster_from_row).collect()
}

/// Nearest active klusters by cosine, among those whose vector is of `model` and still matches
/// their text.
async fn vector_candidates(
    c: &mut PgConnection,
    model: &str,
    v: &[f32],
    req: &SearchRequest,
    n: usize,
) -> Result<Vec<(Kluster, f32)>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        k_columns!(),
        ", e.text_hash, e.embedding <=> $1 AS d FROM kluster_embeddings e JOIN klusters k ON k.id = e.kluster_id \
         WHERE e.model = $2 AND e.dim = $3 AND k.status = 'active' AND ($4::uuid IS NULL OR k.mission_id = $4) \
         ORDER BY d, k.id LIMIT $5"
    ))
    .bind(Vector::from(v.to_vec()))
    .bind(model)
    .bind(v.len() as i32)
    .bind(req.filter.mission_id.map(|m| m.as_uuid()))
    .bind((n * 2) as i64)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    let mut out = Vec::with_capacity(n);
    for r in &rows {
        let k = kluster_from_row(r)?;
        let hash: String = r.try_get(7).map_err(db_err)?;
        let d: f64 = r.try_get(8).map_err(db_err)?;
        if hash == text_hash(&k.embedding_text()) && out.len() < n {
            out.push((k, 1.0 - d as f32));
        }
    }
    Ok(out)
}

pub(crate) async fn search(c: &mut PgConnection, req: &SearchRequest) -> Result<Vec<KlusterHit>> {
    let n = (req.limit * OVERSAMPLE).clamp(20, 400);
    let text = text_candidates(c, req, n).await?;
    let vector = match &req.vector {
        Some(v) => vector_candidates(c, &v.model, &v.vector, req, n).await?,
        None => vec![],
    };
    let mut out: Vec<KlusterHit> = fuse(text, vector, |k| k.id, req.limit).into_iter().map(KlusterHit::from).collect();
    if let Some(v) = &req.vector {
        // text-only hits get their similarity too, from their current vector
        let missing: Vec<Uuid> = out.iter().filter(|h| h.cosine.is_none()).map(|h| h.kluster.id.as_uuid()).collect();
        if !missing.is_empty() {
            let rows: Vec<(Uuid, String, f64)> = sqlx::query_as(
                "SELECT kluster_id, text_hash, 1 - (embedding <=> $1) FROM kluster_embeddings \
                 WHERE kluster_id = ANY($2) AND model = $3 AND dim = $4",
            )
            .bind(Vector::from(v.vector.clone()))
            .bind(missing)
            .bind(&v.model)
            .bind(v.vector.len() as i32)
            .fetch_all(c)
            .await
            .map_err(db_err)?;
            let found: HashMap<KlusterId, (String, f32)> =
                rows.into_iter().map(|(id, hash, cos)| (KlusterId::from(id), (hash, cos as f32))).collect();
            for h in out.iter_mut().filter(|h| h.cosine.is_none()) {
                h.cosine = found
                    .get(&h.kluster.id)
                    .filter(|(hash, _)| *hash == text_hash(&h.kluster.embedding_text()))
                    .map(|(_, cos)| *cos);
            }
        }
    }
    Ok(out)
}

pub(crate) async fn pending(c: &mut PgConnection, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        k_columns!(),
        ", e.text_hash FROM klusters k LEFT JOIN kluster_embeddings e ON e.kluster_id = k.id AND e.model = $1 \
         WHERE k.status = 'active' ORDER BY k.id DESC"
    ))
    .bind(model)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    let mut out = Vec::new();
    for r in &rows {
        let k = kluster_from_row(r)?;
        let have: Option<String> = r.try_get(7).map_err(db_err)?;
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

/// Stores one kluster vector; one made from a text that is no longer the kluster's is ignored.
pub(crate) async fn put(c: &mut PgConnection, model: &str, e: &KlusterEmbedded) -> Result<()> {
    if e.vector.is_empty() || e.vector.len() > MAX_DIM {
        return Err(Error::validation("vector", format!("dimension {} is not supported", e.vector.len())));
    }
    let k = match load_kluster(c, e.kluster_id, Lock::None).await {
        Ok(k) => k,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(err) => return Err(err),
    };
    if text_hash(&k.embedding_text()) != e.text_hash {
        return Ok(()); // the text changed since; the worker will embed the new one
    }
    sqlx::query(
        "INSERT INTO kluster_embeddings (kluster_id, model, text_hash, dim, embedding) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kluster_id, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim, \
         embedding = excluded.embedding",
    )
    .bind(e.kluster_id.as_uuid())
    .bind(model)
    .bind(&e.text_hash)
    .bind(e.vector.len() as i32)
    .bind(Vector::from(e.vector.clone()))
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}
