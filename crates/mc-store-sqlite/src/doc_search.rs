//! Doc search on the embedded profile: FTS5 over title and body (scope: the mission, the kluster
//! when it has one, the kind), vectors in the in-memory index, partitioned by mission, with the
//! kluster and the kind of each (see [`scan_search`](crate::scan_search)).

use mc_domain::{Doc, DocId, DocKind, Result};
use mc_store::{DocEmbeddingJob, DocHit, SearchRequest};
use rusqlite::{Connection, Row};

use crate::rows::{DOC_COLUMNS, doc_from_row, load_doc};
use crate::scan_search::{self, Cond, Memory, Scanned, Tables};
use crate::search::{MatchCounts, scope_token};
use crate::vindex::VecIndex;

impl Scanned for Doc {
    type Id = DocId;
    const TABLES: Tables = Tables {
        entity: "docs",
        columns: DOC_COLUMNS,
        docs: "doc_docs",
        row_id: "row_id",
        key: "doc_id",
        fts: "doc_fts",
        text: ["title", "body"],
        embeddings: "doc_embeddings",
        text_hash: Some("text_hash"),
        memory: Some(Memory {
            prefix: "doc_vec",
            mission: "mission_id",
            kluster: "kluster_id",
            class: "kind",
            class_code: kind_class,
        }),
    };

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        doc_from_row(r)
    }

    fn load(c: &Connection, id: DocId) -> Result<Self> {
        load_doc(c, id)
    }

    fn id(&self) -> DocId {
        self.id
    }

    fn texts(&self) -> [&str; 2] {
        [&self.title, &self.body]
    }

    fn embedding_text(&self) -> String {
        Doc::embedding_text(self)
    }

    fn scope(&self) -> String {
        let mut scope = scope_token('m', &self.mission_id.to_string());
        if let Some(k) = self.kluster_id {
            scope.push(' ');
            scope.push_str(&scope_token('k', &k.to_string()));
        }
        scope.push_str(&format!(" t{}", self.kind.as_str()));
        scope
    }
}

/// A doc kind as a class of the in-memory index.
fn kind_class(kind: &str) -> u8 {
    match DocKind::parse(kind) {
        Some(DocKind::Doc) => 0,
        Some(DocKind::Artifact) => 1,
        None => 7,
    }
}

pub(crate) fn search(
    c: &Connection,
    index: &VecIndex,
    counts: &MatchCounts,
    req: &SearchRequest,
    kind: Option<DocKind>,
) -> Result<Vec<DocHit>> {
    let mut conds = vec![];
    if let Some(m) = req.filter.mission_id {
        conds.push(Cond::new('m', "mission_id", m));
    }
    if let Some(k) = req.filter.kluster_id {
        conds.push(Cond::new('k', "kluster_id", k));
    }
    if let Some(kind) = kind {
        conds.push(Cond::new('t', "kind", kind.as_str()));
    }
    Ok(scan_search::search::<Doc>(c, index, counts, req, &conds)?.into_iter().map(DocHit::from).collect())
}

pub(crate) fn pending(c: &Connection, model: &str, limit: usize) -> Result<Vec<DocEmbeddingJob>> {
    Ok(scan_search::pending::<Doc>(c, model, limit, &[])?
        .into_iter()
        .map(|(doc_id, text, text_hash)| DocEmbeddingJob { doc_id, text, text_hash })
        .collect())
}
