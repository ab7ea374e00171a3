-- The "cloud" of the sqlite backend: one file, shared by every process that
-- connects to it. Applied with CREATE ... IF NOT EXISTS on first use, so any
-- number of processes may open a new file at once.

-- One row per machine. The state a reader sees is derived from `target` and
-- `ready_at` (see translate.effective_state): `pending` until a machine
-- heading for `running` reaches ready_at, `stopping` for one heading for
-- `stopped`. A reader never writes, so a listing is a read-only call.
CREATE TABLE IF NOT EXISTS machines (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    workload    TEXT NOT NULL,
    replica     INTEGER,
    spec_hash   TEXT NOT NULL,
    size        TEXT NOT NULL,
    image       TEXT,
    private_ip  TEXT NOT NULL,
    target      TEXT NOT NULL CHECK (target IN ('running', 'stopped', 'failed')),
    ready_at    REAL NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS machines_by_workload ON machines (workload, replica);

-- The user's labels, one row per key; vmkit's own tags are columns above.
CREATE TABLE IF NOT EXISTS tags (
    machine_id  TEXT NOT NULL REFERENCES machines (id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (machine_id, key)
);

-- The console of each machine. A line with `at` in the future is not written
-- yet: the "booted" line of a pending machine appears when it runs.
CREATE TABLE IF NOT EXISTS console (
    machine_id  TEXT NOT NULL REFERENCES machines (id),
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_by_machine ON console (machine_id, at);

-- Idempotency keys of create requests: a request whose key is here already
-- returns the machines it made (by position), and creates nothing.
CREATE TABLE IF NOT EXISTS create_requests (
    client_token TEXT NOT NULL,
    position     INTEGER NOT NULL,
    machine_id   TEXT NOT NULL,
    workload     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (client_token, position)
);

-- What the replicas of a workload share (the analogue of a firewall): the
-- ports opened for it. Written by every deploy, removed by destroy.
CREATE TABLE IF NOT EXISTS workloads (
    name        TEXT PRIMARY KEY,
    ports       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS snapshots (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    workload    TEXT NOT NULL,
    machine_id  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    replica     INTEGER
);
