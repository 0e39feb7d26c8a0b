-- Every change of a task's embedded text is marked with the id of the transaction that wrote it,
-- so the embedding worker reads only the texts changed since its last finished sweep instead of
-- checking every task for a vector (see mc_store::TextCursor). Transaction ids are not in commit
-- order, so a finished sweep settles only the marks below the oldest transaction still running
-- in its snapshot (pg_snapshot_xmin). The trigger keeps the mark on every path that writes the
-- text hash. Rows from before this migration have mark 0, which the first sweep reads.
ALTER TABLE task_search ADD COLUMN text_xid xid8 NOT NULL DEFAULT '0';

CREATE FUNCTION task_search_mark_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.text_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE TRIGGER task_search_mark_text BEFORE INSERT OR UPDATE OF text_hash ON task_search
    FOR EACH ROW EXECUTE FUNCTION task_search_mark_text();

CREATE INDEX task_search_by_text_xid ON task_search (text_xid, task_id);
