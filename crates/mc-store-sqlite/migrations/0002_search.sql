-- Search: a stable integer id per task for the full-text and vector indexes, the FTS5 index, and
-- which text of which task has been embedded by which model. The vectors themselves live in
-- sqlite-vec `vec0` tables, one per dimension (`task_vec_<dim>`), created when first needed.

CREATE TABLE search_docs (
    doc_id  INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE REFERENCES tasks(id)
);

CREATE VIRTUAL TABLE task_fts USING fts5(
    title, description, labels,
    content = '', contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TABLE task_embeddings (
    task_id   TEXT NOT NULL REFERENCES tasks(id),
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim       INTEGER NOT NULL,
    PRIMARY KEY (task_id, model)
) WITHOUT ROWID;

INSERT INTO search_docs (task_id) SELECT id FROM tasks ORDER BY id;
INSERT INTO task_fts (rowid, title, description, labels)
    SELECT d.doc_id, t.title, t.description, t.labels FROM search_docs d JOIN tasks t ON t.id = d.task_id;

-- the rest of a creating call's response (overlap suggestions), replayed with the entity
ALTER TABLE idempotency_keys ADD COLUMN extra TEXT;
