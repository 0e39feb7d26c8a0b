-- Missions, klusters, tasks with leases, the hash-chained ledger and its head, idempotency keys,
-- API tokens. Times are timestamptz holding whole milliseconds (what the domain's Clock gives).

CREATE TABLE missions (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'archived')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE klusters (
    id          uuid PRIMARY KEY,
    mission_id  uuid NOT NULL REFERENCES missions (id),
    name        text NOT NULL,
    description text NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'archived')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX klusters_by_mission ON klusters (mission_id, id);

CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    mission_id       uuid NOT NULL REFERENCES missions (id),
    kluster_id       uuid NOT NULL REFERENCES klusters (id),
    title            text NOT NULL,
    description      text NOT NULL,
    status           text NOT NULL CHECK (status IN
                       ('open', 'claimed', 'in_progress', 'review', 'done', 'blocked', 'cancelled')),
    priority         smallint NOT NULL CHECK (priority BETWEEN 0 AND 4),
    labels           text[] NOT NULL,  -- normalised: trimmed, lower-cased, sorted
    paths            text[] NOT NULL,  -- globs
    depends_on       uuid[] NOT NULL,  -- in the order given (mirrors task_deps)
    holder           text,
    claimed_at       timestamptz,
    lease_expires_at timestamptz,
    fencing_token    bigint NOT NULL DEFAULT 0,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK ((holder IS NULL) = (lease_expires_at IS NULL))
);
-- ready work: open tasks of a kluster (or of everything), most urgent first, then oldest
CREATE INDEX tasks_ready_in_kluster ON tasks (kluster_id, priority, created_at, id) WHERE status = 'open';
CREATE INDEX tasks_ready ON tasks (priority, created_at, id) WHERE status = 'open';
CREATE INDEX tasks_by_mission ON tasks (mission_id, id);
CREATE INDEX tasks_by_kluster ON tasks (kluster_id, id);
CREATE INDEX tasks_by_status ON tasks (status, id);
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE holder IS NOT NULL;
CREATE INDEX tasks_by_holder ON tasks (holder, id) WHERE holder IS NOT NULL;
CREATE INDEX tasks_by_label ON tasks USING gin (labels);
-- tasks that declare paths, per mission: the candidates of path overlap
CREATE INDEX tasks_with_paths ON tasks (mission_id, id) WHERE paths <> '{}';

CREATE TABLE task_deps (
    task_id    uuid NOT NULL REFERENCES tasks (id),
    depends_on uuid NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_deps_reverse ON task_deps (depends_on, task_id);

CREATE TABLE ledger (
    seq          bigint PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    entity_kind  text NOT NULL,
    entity_id    text NOT NULL,
    request_id   text,
    state_digest text NOT NULL,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX ledger_by_entity ON ledger (entity_id, seq);

-- The head of the chain: one row, locked by every appending transaction until it commits, so
-- sequence numbers and previous hashes never fork under concurrent writers.
CREATE TABLE ledger_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL,
    hash     text NOT NULL
);
INSERT INTO ledger_head (only_row, seq, hash)
    VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE idempotency_keys (
    scope       text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    entity_kind text NOT NULL,
    entity_id   text NOT NULL,
    created_at  timestamptz NOT NULL,
    extra       jsonb,  -- the rest of a creating call's response, replayed with the entity
    PRIMARY KEY (scope, key)
);

CREATE TABLE api_tokens (
    token_hash text PRIMARY KEY,
    principal  text NOT NULL,
    role       text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
