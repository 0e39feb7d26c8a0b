-- The doc vector scan reads, per stored vector, the doc's mission, kluster, kind and the hash of
-- its current text. `text_hash` sits after the body in a row, and a body of up to 256 KiB spans
-- overflow pages that reading it would walk: this index holds all of them, so the scan never
-- touches the rows of docs that are not among the nearest.
CREATE INDEX docs_scan ON docs (id, mission_id, kluster_id, kind, text_hash);
