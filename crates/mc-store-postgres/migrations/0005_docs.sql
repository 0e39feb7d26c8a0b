-- Docs and artifacts: a mission's knowledge and work products, optionally in one of its
-- klusters, versioned (every update adds one). Searched like klusters (they are few per
-- mission): full text over title (weight A) and body (B) in a generated tsvector column, so
-- every change of a doc re-indexes it in its own transaction, and doc vectors in one plain
-- table, compared by cosine distance during the scan; only vectors of the query's model and
-- dimension, made from the doc's current text, are compared.

CREATE TABLE docs (
    id          uuid PRIMARY KEY,
    mission_id  uuid NOT NULL REFERENCES missions (id),
    kluster_id  uuid REFERENCES klusters (id),
    kind        text NOT NULL CHECK (kind IN ('doc', 'artifact')),
    title       text NOT NULL,
    body        text NOT NULL,
    paths       text[] NOT NULL,  -- globs
    version     bigint NOT NULL CHECK (version >= 1),
    created_by  text NOT NULL,
    -- hash of the embedded text (title and body): the embedding worker finds docs without a
    -- current vector from it, without reading their bodies
    text_hash   text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english'::regconfig, title), 'A')
                    || setweight(to_tsvector('english'::regconfig, body), 'B')
                ) STORED
);
-- lists are newest first (ids are time-ordered), per mission or per kluster
CREATE INDEX docs_by_mission ON docs (mission_id, id);
CREATE INDEX docs_by_kluster ON docs (kluster_id, id) WHERE kluster_id IS NOT NULL;
-- docs that declare paths, per mission: the candidates of path overlap
CREATE INDEX docs_with_paths ON docs (mission_id, id) WHERE paths <> '{}';
CREATE INDEX docs_tsv ON docs USING gin (tsv) WITH (fastupdate = off);

CREATE TABLE doc_embeddings (
    doc_id     uuid NOT NULL REFERENCES docs (id),
    model      text NOT NULL,
    text_hash  text NOT NULL,
    dim        integer NOT NULL,
    embedding  vector NOT NULL,
    PRIMARY KEY (doc_id, model)
);
