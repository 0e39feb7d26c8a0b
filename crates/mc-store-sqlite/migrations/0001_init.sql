-- Missions, klusters, tasks with leases, the hash-chained ledger, idempotency keys, API tokens.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE missions (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE klusters (
    id          TEXT PRIMARY KEY,
    mission_id  TEXT NOT NULL REFERENCES missions(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX klusters_by_mission ON klusters (mission_id, id);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    mission_id       TEXT NOT NULL REFERENCES missions(id),
    kluster_id       TEXT NOT NULL REFERENCES klusters(id),
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('open', 'claimed', 'in_progress', 'review', 'done', 'blocked', 'cancelled')),
    priority         INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 4),
    labels           TEXT NOT NULL,  -- JSON array, normalised
    paths            TEXT NOT NULL,  -- JSON array of globs
    depends_on       TEXT NOT NULL,  -- JSON array of task ids (mirrors task_deps)
    holder           TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    fencing_token    INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CHECK ((holder IS NULL) = (lease_expires_at IS NULL))
);
-- ready work: open tasks of a kluster (or of everything), most urgent first, then oldest
CREATE INDEX tasks_ready_in_kluster ON tasks (kluster_id, status, priority, created_at, id);
CREATE INDEX tasks_ready ON tasks (status, priority, created_at, id);
CREATE INDEX tasks_by_mission ON tasks (mission_id, id);
CREATE INDEX tasks_by_kluster ON tasks (kluster_id, id);
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE holder IS NOT NULL;
CREATE INDEX tasks_by_holder ON tasks (holder, id) WHERE holder IS NOT NULL;

CREATE TABLE task_deps (
    task_id    TEXT NOT NULL REFERENCES tasks(id),
    depends_on TEXT NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX task_deps_reverse ON task_deps (depends_on, task_id);

CREATE TABLE task_labels (
    label   TEXT NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (label, task_id)
) WITHOUT ROWID;

CREATE TABLE ledger (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    entity_kind  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    request_id   TEXT,
    state_digest TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX ledger_by_entity ON ledger (entity_id, seq);

CREATE TABLE idempotency_keys (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
