//! Kluster search on PostgreSQL (see [`crate::plain_search`]): full text over a generated tsvector
//! of name and description, vectors in one plain table. Only active klusters are found, and only
//! `filter.mission_id` applies.

use mc_domain::id::Uuid;
use mc_domain::{Kluster, Result};
use mc_store::{KlusterHit, SearchRequest};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::plain_search::{self, Conds, Searchable};
use crate::rows::{KLUSTER_COLUMNS, kluster_from_row};

impl Searchable for Kluster {
    const TABLE: &'static str = "klusters";
    const COLUMNS: &'static str = KLUSTER_COLUMNS;
    const EMBEDDINGS: &'static str = "kluster_embeddings";
    const KEY: &'static str = "kluster_id";
    const LIVE: &'static str = "x.status = 'active'";

    fn from_row(r: &PgRow) -> Result<Self> {
        kluster_from_row(r)
    }

    fn key(&self) -> Uuid {
        self.id.as_uuid()
    }

    fn text(&self) -> String {
        self.embedding_text()
    }
}

pub(crate) async fn search(c: &mut PgConnection, req: &SearchRequest) -> Result<Vec<KlusterHit>> {
    let conds = Conds::default().uuid("mission_id", req.filter.mission_id.map(|m| m.as_uuid()));
    let hits = plain_search::search::<Kluster>(c, req, conds).await?;
    Ok(hits.into_iter().map(KlusterHit::from).collect())
}
