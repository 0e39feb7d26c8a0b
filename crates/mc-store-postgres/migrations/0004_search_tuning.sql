-- Full-text indexes without a pending list: with `fastupdate` on, new entries wait in an
-- unsorted list that every search scans whole until a vacuum merges it (milliseconds per query
-- after a few thousand creates); off, each insert goes straight into the index.
ALTER INDEX task_search_tsv SET (fastupdate = off);
ALTER INDEX klusters_tsv SET (fastupdate = off);
-- Lexeme frequencies from ANALYZE decide which query words are rare enough to rank on: keep
-- more of them.
ALTER TABLE task_search ALTER COLUMN tsv SET STATISTICS 1000;
