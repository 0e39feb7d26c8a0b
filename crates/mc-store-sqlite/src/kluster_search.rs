//! Kluster search on the embedded profile: FTS5 over name and description (scope: the mission and
//! the status), vectors compared during the scan (tens per mission) (see [`scan_search`](crate::scan_search)).

use mc_domain::{Kluster, KlusterId, Result};
use mc_store::{KlusterEmbeddingJob, KlusterHit, SearchRequest};
use rusqlite::{Connection, Row};

use crate::rows::{KLUSTER_COLUMNS, kluster_from_row, load_kluster};
use crate::scan_search::{self, Cond, Scanned, Tables};
use crate::search::{MatchCounts, scope_token};
use crate::vindex::VecIndex;

impl Scanned for Kluster {
    type Id = KlusterId;
    const TABLES: Tables = Tables {
        entity: "klusters",
        columns: KLUSTER_COLUMNS,
        docs: "kluster_docs",
        row_id: "doc_id",
        key: "kluster_id",
        fts: "kluster_fts",
        text: ["name", "description"],
        embeddings: "kluster_embeddings",
        text_hash: None,
        memory: None,
    };

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        kluster_from_row(r)
    }

    fn load(c: &Connection, id: KlusterId) -> Result<Self> {
        load_kluster(c, id)
    }

    fn id(&self) -> KlusterId {
        self.id
    }

    fn texts(&self) -> [&str; 2] {
        [&self.name, &self.description]
    }

    fn embedding_text(&self) -> String {
        Kluster::embedding_text(self)
    }

    fn scope(&self) -> String {
        format!("{} s{}", scope_token('m', &self.mission_id.to_string()), self.status.as_str())
    }
}

/// Only active klusters are searched and embedded.
fn active() -> Cond {
    Cond::new('s', "status", "active")
}

pub(crate) fn search(
    c: &Connection,
    index: &VecIndex,
    counts: &MatchCounts,
    req: &SearchRequest,
) -> Result<Vec<KlusterHit>> {
    let mut conds = vec![active()];
    if let Some(m) = req.filter.mission_id {
        conds.push(Cond::new('m', "mission_id", m));
    }
    Ok(scan_search::search::<Kluster>(c, index, counts, req, &conds)?.into_iter().map(KlusterHit::from).collect())
}

pub(crate) fn pending(c: &Connection, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>> {
    Ok(scan_search::pending::<Kluster>(c, model, limit, &[active()])?
        .into_iter()
        .map(|(kluster_id, text, text_hash)| KlusterEmbeddingJob { kluster_id, text, text_hash })
        .collect())
}
