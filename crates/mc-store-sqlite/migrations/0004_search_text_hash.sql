-- The hash of each task's embedding text, kept beside its search document, so that finding the
-- tasks whose vector is missing or stale is one join instead of reading and hashing every task.
-- Rows from before this migration are filled in when the store opens.
ALTER TABLE search_docs ADD COLUMN text_hash TEXT;
