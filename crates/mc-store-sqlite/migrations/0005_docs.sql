-- Docs and artifacts: the knowledge and work products of a mission, optionally of one of its
-- klusters, versioned (every update adds one). Their search mirrors kluster search: a stable
-- integer id per doc for the full-text index, the FTS5 index over title and body (scope:
-- m<hex mission id>, k<hex kluster id> when it has one, t<kind>), and doc vectors in a plain table
-- compared with sqlite-vec's distance function during the scan (a mission has few docs).

CREATE TABLE docs (
    id         TEXT PRIMARY KEY,
    mission_id TEXT NOT NULL REFERENCES missions(id),
    kluster_id TEXT REFERENCES klusters(id),
    kind       TEXT NOT NULL CHECK (kind IN ('doc', 'artifact')),
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    paths      TEXT NOT NULL,  -- JSON array of globs
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_by TEXT NOT NULL,
    -- hash of the embedded text (title and body): the embedding worker finds docs without a
    -- current vector from it, without reading their bodies
    text_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX docs_by_mission ON docs (mission_id, id);
CREATE INDEX docs_by_kluster ON docs (kluster_id, id) WHERE kluster_id IS NOT NULL;
-- docs that declare paths, per mission: the candidates of path overlap
CREATE INDEX docs_with_paths ON docs (mission_id, id) WHERE paths <> '[]';

-- (`doc_id` names the doc here, as `kluster_id` does in `kluster_docs`; the integer is `row_id`)
CREATE TABLE doc_docs (
    row_id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE REFERENCES docs(id)
);

CREATE VIRTUAL TABLE doc_fts USING fts5(
    title, body, scope,
    content = '', contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TABLE doc_embeddings (
    doc_id    TEXT NOT NULL REFERENCES docs(id),
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim       INTEGER NOT NULL,
    vector    BLOB NOT NULL,
    PRIMARY KEY (doc_id, model)
) WITHOUT ROWID;
