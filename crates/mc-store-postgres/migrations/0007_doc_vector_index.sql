-- Doc vectors get an HNSW index. Comparing every doc's vector during a scan (0005) cost about
-- 50 ms at 10,000 docs in a mission. Doc vectors stay in one table, whatever their model and
-- dimension, and each model and dimension gets a partial HNSW index over the rows of its
-- `index_key` (`<first 12 hex digits of the model's SHA-256>_<dim>`, as for task vector tables),
-- created with its first vector. The doc's mission, kluster and kind (which never change) are
-- copied into each vector row, so search filters apply inside the index scan. A vector is
-- deleted when its doc's text changes, so every stored vector is current.

ALTER TABLE doc_embeddings
    ADD COLUMN mission_id uuid,
    ADD COLUMN kluster_id uuid,
    ADD COLUMN kind       text,
    ADD COLUMN index_key  text;

DELETE FROM doc_embeddings e USING docs x WHERE x.id = e.doc_id AND x.text_hash <> e.text_hash;

UPDATE doc_embeddings e
   SET mission_id = x.mission_id,
       kluster_id = x.kluster_id,
       kind       = x.kind,
       index_key  = substr(encode(sha256(convert_to(e.model, 'UTF8')), 'hex'), 1, 12) || '_' || e.dim
  FROM docs x
 WHERE x.id = e.doc_id;

ALTER TABLE doc_embeddings
    ALTER COLUMN mission_id SET NOT NULL,
    ALTER COLUMN kind SET NOT NULL,
    ALTER COLUMN index_key SET NOT NULL;

-- exact scans of one mission (when a graph walk comes back short)
CREATE INDEX doc_embeddings_by_mission ON doc_embeddings (mission_id);

-- the indexes of the models whose vectors are already stored (later ones come with their first
-- vector); an HNSW index takes vectors of up to 2,000 dimensions, larger ones are searched exactly
-- (read into arrays first: an index cannot be built on a table that an open loop still reads)
DO $$
DECLARE
    keys text[];
    dims integer[];
BEGIN
    SELECT array_agg(index_key ORDER BY index_key), array_agg(dim ORDER BY index_key) INTO keys, dims
      FROM (SELECT DISTINCT index_key, dim FROM doc_embeddings WHERE dim <= 2000) k;
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        EXECUTE format(
            'CREATE INDEX %I ON doc_embeddings USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE index_key = %L',
            'doc_embeddings_' || keys[i], dims[i], keys[i]);
    END LOOP;
END $$;
