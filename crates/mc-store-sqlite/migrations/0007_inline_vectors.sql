-- Doc and kluster vectors move to rowid tables. In a WITHOUT ROWID table a row is stored like an
-- index entry, and an index entry keeps at most about 1,000 bytes in its page on 4 KiB pages: a
-- 384-dimension vector (1,536 bytes) spilled to an overflow page, and SQLite reads overflow pages
-- of a read transaction straight from the file, past its page cache, so the doc vector scan made a
-- system call per doc. A rowid table keeps up to about 4,000 bytes of a row in its page.

CREATE TABLE doc_embeddings_inline (
    doc_id    TEXT NOT NULL REFERENCES docs(id),
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim       INTEGER NOT NULL,
    vector    BLOB NOT NULL,
    UNIQUE (doc_id, model)
);
INSERT INTO doc_embeddings_inline (doc_id, model, text_hash, dim, vector)
    SELECT doc_id, model, text_hash, dim, vector FROM doc_embeddings;
DROP TABLE doc_embeddings;
ALTER TABLE doc_embeddings_inline RENAME TO doc_embeddings;

CREATE TABLE kluster_embeddings_inline (
    kluster_id TEXT NOT NULL REFERENCES klusters(id),
    model      TEXT NOT NULL,
    text_hash  TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    vector     BLOB NOT NULL,
    UNIQUE (kluster_id, model)
);
INSERT INTO kluster_embeddings_inline (kluster_id, model, text_hash, dim, vector)
    SELECT kluster_id, model, text_hash, dim, vector FROM kluster_embeddings;
DROP TABLE kluster_embeddings;
ALTER TABLE kluster_embeddings_inline RENAME TO kluster_embeddings;
