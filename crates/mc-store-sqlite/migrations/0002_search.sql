-- Search: a stable integer id per task for the full-text and vector indexes, the FTS5 index, and
-- which text of which task has been embedded by which model. The vectors themselves live in
-- sqlite-vec `vec0` tables, one per dimension (`task_vec_<dim>`), created when first needed.

CREATE TABLE search_docs (
    doc_id  INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE REFERENCES tasks(id)
);

-- `scope` holds one token each for the mission (m<hex id>), kluster (k<hex id>) and status
-- (s<status>), so filters are posting-list intersections inside the match, not joins.
CREATE VIRTUAL TABLE task_fts USING fts5(
    title, description, labels, scope,
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

-- tasks that declare paths, per mission: the candidates of path overlap
CREATE INDEX tasks_with_paths ON tasks (mission_id, id) WHERE paths <> '[]';

INSERT INTO search_docs (task_id) SELECT id FROM tasks ORDER BY id;
INSERT INTO task_fts (rowid, title, description, labels, scope)
    SELECT d.doc_id, t.title, t.description, t.labels,
           'm' || replace(t.mission_id, '-', '') || ' k' || replace(t.kluster_id, '-', '') || ' s' || t.status
    FROM search_docs d JOIN tasks t ON t.id = d.task_id;

-- the rest of a creating call's response (overlap suggestions), replayed with the entity
ALTER TABLE idempotency_keys ADD COLUMN extra TEXT;
