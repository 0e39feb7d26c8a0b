//! Docs and artifacts: rows, writes (each inside the caller's transaction, with its ledger event)
//! and search (see [`crate::plain_search`]: full text over a generated tsvector of title and body,
//! vectors in one table with a partial HNSW index per model and dimension).

use mc_domain::doc::{DocPatch, NewDoc, next_version};
use mc_domain::id::Uuid;
use mc_domain::mission::ensure_active;
use mc_domain::{Doc, DocId, DocKind, Error, KlusterId, MissionId, Result, Timestamp};
use mc_store::{Created, DocFilter, DocHit, Page, SearchRequest, WriteCtx};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::plain_search::{self, Conds, Searchable};
use crate::rows::{Claimed, Lock, append_ledger, bad, db_err, get, idempotency_claim, load_kluster, load_mission};
use crate::search::text_hash;
use crate::{cursor_id, limit_of, page_of};

/// The columns of a doc row, in the order `doc_from_row` reads them.
const DOC_COLUMNS: &str =
    "id, mission_id, kluster_id, kind, title, body, paths, version, created_by, created_at, updated_at";

fn doc_from_row(r: &PgRow) -> Result<Doc> {
    let kind: String = get(r, 3)?;
    let version: i64 = get(r, 7)?;
    Ok(Doc {
        id: DocId::from(get::<Uuid>(r, 0)?),
        mission_id: MissionId::from(get::<Uuid>(r, 1)?),
        kluster_id: get::<Option<Uuid>>(r, 2)?.map(KlusterId::from),
        kind: DocKind::parse(&kind).ok_or_else(|| bad("doc kind", &kind))?,
        title: get(r, 4)?,
        body: get(r, 5)?,
        paths: get(r, 6)?,
        version: u64::try_from(version).map_err(|_| bad("doc version", version))?,
        created_by: get(r, 8)?,
        created_at: get(r, 9)?,
        updated_at: get(r, 10)?,
    })
}

impl Searchable for Doc {
    const TABLE: &'static str = "docs";
    const COLUMNS: &'static str = DOC_COLUMNS;
    const EMBEDDINGS: &'static str = "doc_embeddings";
    const KEY: &'static str = "doc_id";
    const LIVE: &'static str = "true";
    const TEXT_HASH: Option<&'static str> = Some("text_hash");
    const VECTOR_COLUMNS: Option<&'static str> = Some("mission_id, kluster_id, kind");

    fn from_row(r: &PgRow) -> Result<Self> {
        doc_from_row(r)
    }

    fn key(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn text(&self) -> String {
        self.embedding_text()
    }
}

/// Loads a doc; `lock` takes its row lock (`FOR NO KEY UPDATE`) until the transaction ends.
pub(crate) async fn load(c: &mut PgConnection, id: DocId, lock: bool) -> Result<Doc> {
    let lock = if lock { " FOR NO KEY UPDATE" } else { "" };
    let sql = format!("SELECT {DOC_COLUMNS} FROM docs WHERE id = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id.as_uuid()).fetch_optional(c).await.map_err(db_err)?;
    row.as_ref().map(doc_from_row).transpose()?.ok_or_else(|| Error::not_found("doc", id))
}

/// Creates a doc in its kluster's mission (or the one named), both active and kept so (share
/// locks) until the transaction ends.
pub(crate) async fn create(c: &mut PgConnection, ctx: &WriteCtx, new: NewDoc, now: Timestamp) -> Result<Created<Doc>> {
    let id = DocId::new();
    if let Claimed::Replay(id, extra) = idempotency_claim(c, ctx, "doc", &id.to_string(), now).await? {
        let value = load(c, DocId::parse_field(&id, "id")?, false).await?;
        return Ok(Created { value, replayed: true, extra });
    }
    let kluster = match new.kluster_id {
        Some(k) => Some(load_kluster(c, k, Lock::Share).await?),
        None => None,
    };
    let mission_id = match (new.mission_id, &kluster) {
        (Some(m), Some(k)) if k.mission_id != m => {
            return Err(Error::validation(
                "kluster_id",
                format!("kluster {} belongs to another mission than {m}", k.id),
            ));
        }
        (Some(m), _) => m,
        (None, Some(k)) => k.mission_id,
        (None, None) => return Err(Error::validation("mission_id", "name a mission or a kluster")),
    };
    let mission = load_mission(c, mission_id, Lock::Share).await?;
    ensure_active("mission", &mission.id.to_string(), mission.status)?;
    if let Some(k) = &kluster {
        ensure_active("kluster", &k.id.to_string(), k.status)?;
    }
    let doc = new.into_doc(id, mission_id, ctx.actor.ledger_name(), now);
    sqlx::query(
        "INSERT INTO docs (id, mission_id, kluster_id, kind, title, body, paths, version, created_by, created_at, \
         updated_at, text_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
    )
    .bind(doc.id.as_uuid())
    .bind(doc.mission_id.as_uuid())
    .bind(doc.kluster_id.map(|k| k.as_uuid()))
    .bind(doc.kind.as_str())
    .bind(&doc.title)
    .bind(&doc.body)
    .bind(&doc.paths)
    .bind(version_of(&doc)?)
    .bind(&doc.created_by)
    .bind(now)
    .bind(text_hash(&doc.embedding_text()))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    append_ledger(c, ctx, "doc.create", "doc", &doc.id.to_string(), &doc, now).await?;
    Ok(Created { value: doc, replayed: false, extra: None })
}

fn version_of(doc: &Doc) -> Result<i64> {
    i64::try_from(doc.version).map_err(|_| Error::Internal(format!("doc version {} is out of range", doc.version)))
}

/// Applies `patch` to a doc (locked) as its next version; an empty patch changes nothing.
pub(crate) async fn update(
    c: &mut PgConnection,
    ctx: &WriteCtx,
    id: DocId,
    patch: DocPatch,
    if_version: Option<u64>,
    now: Timestamp,
) -> Result<Doc> {
    let mut doc = load(c, id, true).await?;
    let text_before = doc.embedding_text();
    if !next_version(&mut doc, &patch, if_version, now)? {
        return Ok(doc);
    }
    if doc.embedding_text() != text_before {
        // its vectors are of the old text (the worker embeds the new one)
        sqlx::query("DELETE FROM doc_embeddings WHERE doc_id = $1")
            .bind(doc.id.as_uuid())
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    sqlx::query(
        "UPDATE docs SET title = $2, body = $3, paths = $4, version = $5, updated_at = $6, text_hash = $7 WHERE id = $1",
    )
        .bind(doc.id.as_uuid())
        .bind(&doc.title)
        .bind(&doc.body)
        .bind(&doc.paths)
        .bind(version_of(&doc)?)
        .bind(now)
        .bind(text_hash(&doc.embedding_text()))
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    append_ledger(c, ctx, "doc.update", "doc", &doc.id.to_string(), &doc, now).await?;
    Ok(doc)
}

/// Newest first (ids are time-ordered); a cursor is the id of the previous page's last doc.
pub(crate) async fn list(c: &mut PgConnection, f: &DocFilter) -> Result<Page<Doc>> {
    let before = cursor_id(&f.cursor)?;
    let conds = Conds::default()
        .uuid("mission_id", f.mission_id.map(|m| m.as_uuid()))
        .uuid("kluster_id", f.kluster_id.map(|k| k.as_uuid()))
        .text("kind", f.kind.map(DocKind::as_str));
    let mut sql = format!("SELECT {DOC_COLUMNS} FROM docs x WHERE true{}", conds.sql(2));
    if before.is_some() {
        sql.push_str(&format!(" AND x.id < ${}", conds.len() + 2));
    }
    if f.with_paths {
        sql.push_str(" AND x.paths <> '{}'");
    }
    sql.push_str(" ORDER BY x.id DESC LIMIT $1");
    let mut q = conds.bind(sqlx::query(AssertSqlSafe(sql)).bind(limit_of(f.limit).saturating_add(1)));
    if let Some(b) = before {
        q = q.bind(b);
    }
    let rows = q.fetch_all(c).await.map_err(db_err)?;
    let items = rows.iter().map(doc_from_row).collect::<Result<Vec<_>>>()?;
    Ok(page_of(items, f.limit, |d| d.id.to_string()))
}

/// Hybrid search over docs; `filter.mission_id`, `filter.kluster_id` and `kind` apply.
pub(crate) async fn search(c: &mut PgConnection, req: &SearchRequest, kind: Option<DocKind>) -> Result<Vec<DocHit>> {
    let conds = Conds::default()
        .uuid("mission_id", req.filter.mission_id.map(|m| m.as_uuid()))
        .uuid("kluster_id", req.filter.kluster_id.map(|k| k.as_uuid()))
        .text("kind", kind.map(DocKind::as_str));
    let hits = plain_search::search::<Doc>(c, req, conds).await?;
    Ok(hits.into_iter().map(DocHit::from).collect())
}
