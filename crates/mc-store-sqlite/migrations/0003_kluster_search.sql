-- Kluster search: a stable integer id per kluster for the full-text index, the FTS5 index over
-- name and description (scope: m<hex mission id> and s<status>), and kluster vectors. Klusters
-- are few per mission, so their vectors sit in a plain table and are compared with sqlite-vec's
-- distance function during the scan; a model is never compared with another.

CREATE TABLE kluster_docs (
    doc_id     INTEGER PRIMARY KEY,
    kluster_id TEXT NOT NULL UNIQUE REFERENCES klusters(id)
);

CREATE VIRTUAL TABLE kluster_fts USING fts5(
    name, description, scope,
    content = '', contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TABLE kluster_embeddings (
    kluster_id TEXT NOT NULL REFERENCES klusters(id),
    model      TEXT NOT NULL,
    text_hash  TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    vector     BLOB NOT NULL,
    PRIMARY KEY (kluster_id, model)
) WITHOUT ROWID;

INSERT INTO kluster_docs (kluster_id) SELECT id FROM klusters ORDER BY id;
INSERT INTO kluster_fts (rowid, name, description, scope)
    SELECT d.doc_id, k.name, k.description, 'm' || replace(k.mission_id, '-', '') || ' s' || k.status
    FROM kluster_docs d JOIN klusters k ON k.id = d.kluster_id;
