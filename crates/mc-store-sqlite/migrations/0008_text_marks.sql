-- Every change of a task's embedded text gets a mark that grows with each write (writes are
-- serial here), so the embedding worker reads only the texts changed since its last finished
-- sweep instead of checking every task for a vector (see mc_store::TextCursor). Triggers keep the
-- mark on every path that writes the text hash: a new task, a changed text, the hash backfill.
ALTER TABLE search_docs ADD COLUMN text_seq INTEGER NOT NULL DEFAULT 0;
UPDATE search_docs SET text_seq = doc_id;
CREATE INDEX search_docs_by_text_seq ON search_docs (text_seq);

CREATE TRIGGER search_docs_mark_new AFTER INSERT ON search_docs BEGIN
    UPDATE search_docs SET text_seq = (SELECT max(text_seq) FROM search_docs) + 1 WHERE doc_id = NEW.doc_id;
END;
CREATE TRIGGER search_docs_mark_changed AFTER UPDATE OF text_hash ON search_docs BEGIN
    UPDATE search_docs SET text_seq = (SELECT max(text_seq) FROM search_docs) + 1 WHERE doc_id = NEW.doc_id;
END;
