-- Kluster search: full text over name (weight A) and description (B) in a generated tsvector
-- column (so every change of a kluster re-indexes it in its own transaction), and kluster
-- vectors. Klusters are few per mission, so their vectors sit in one plain table, compared by
-- cosine distance during the scan; only vectors of the query's model and dimension are compared.

ALTER TABLE klusters ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english'::regconfig, name), 'A')
    || setweight(to_tsvector('english'::regconfig, description), 'B')
) STORED;
CREATE INDEX klusters_tsv ON klusters USING gin (tsv);

CREATE TABLE kluster_embeddings (
    kluster_id uuid NOT NULL REFERENCES klusters (id),
    model      text NOT NULL,
    text_hash  text NOT NULL,
    dim        integer NOT NULL,
    embedding  vector NOT NULL,
    PRIMARY KEY (kluster_id, model)
);
