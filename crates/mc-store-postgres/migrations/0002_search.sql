-- Search. `task_search` is the full-text document of each task (english tsvector: title weighted
-- A, description B, labels C) with the columns search filters on, rewritten in the transaction
-- that changes a task's text or status (never on a heartbeat). `text_hash` is the SHA-256 of the
-- task's embedding text: a vector made from another text is stale and ignored.
--
-- Vectors live in one table per model and dimension (`task_vec_<model hash>_<dim>`, created when
-- the first vector arrives, with an HNSW index on cosine distance), so vectors of different
-- models are never compared; `vector_indexes` names them and `task_embeddings` records which
-- text of which task each model has embedded.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE task_search (
    task_id    uuid PRIMARY KEY REFERENCES tasks (id),
    mission_id uuid NOT NULL,
    kluster_id uuid NOT NULL,
    status     text NOT NULL,
    labels     text[] NOT NULL,
    text_hash  text NOT NULL,
    tsv        tsvector NOT NULL
);
CREATE INDEX task_search_tsv ON task_search USING gin (tsv);
CREATE INDEX task_search_by_mission ON task_search (mission_id);
CREATE INDEX task_search_by_kluster ON task_search (kluster_id);

CREATE TABLE vector_indexes (
    model      text NOT NULL,
    dim        integer NOT NULL,
    table_name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, dim)
);

CREATE TABLE task_embeddings (
    task_id   uuid NOT NULL REFERENCES tasks (id),
    model     text NOT NULL,
    text_hash text NOT NULL,
    dim       integer NOT NULL,
    PRIMARY KEY (task_id, model)
);
