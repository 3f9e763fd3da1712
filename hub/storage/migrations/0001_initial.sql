-- The hub catalog: cars, sessions, datasets, models with lineage, deployments, jobs.
-- JSON columns hold documents validated by the hub before they are written.

CREATE TABLE cars (
    car            TEXT PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('online', 'offline')),
    bdseq          INTEGER NOT NULL,
    status         TEXT NOT NULL,            -- the last birth or death (CarStatus JSON)
    model_state    TEXT,                     -- the last ModelState JSON
    first_seen     REAL NOT NULL,
    last_seen      REAL NOT NULL,
    births         INTEGER NOT NULL DEFAULT 0,
    stale_deaths   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    car            TEXT NOT NULL,
    session        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('recording', 'sealed')),
    frame_count    INTEGER NOT NULL DEFAULT 0,
    bytes          INTEGER NOT NULL DEFAULT 0,
    seq_first      INTEGER,
    seq_last       INTEGER,
    sealed         TEXT NOT NULL DEFAULT '[]',   -- seq ranges in shards
    trimmed        TEXT NOT NULL DEFAULT '[]',   -- seq ranges removed on purpose
    shards         TEXT NOT NULL DEFAULT '[]',   -- ShardInfo list
    stats          TEXT NOT NULL DEFAULT '{}',   -- running sums behind SessionStats
    next_shard     INTEGER NOT NULL DEFAULT 0,
    created        REAL NOT NULL,
    updated        REAL NOT NULL,
    PRIMARY KEY (car, session)
);
CREATE INDEX sessions_updated ON sessions (updated);

-- Frames of a deleted session that were spooled before the deletion are dropped, not re-recorded.
CREATE TABLE session_tombstones (
    car            TEXT NOT NULL,
    session        TEXT NOT NULL,
    spool_segment  INTEGER NOT NULL,
    spool_offset   INTEGER NOT NULL,
    deleted        REAL NOT NULL,
    PRIMARY KEY (car, session)
);

CREATE TABLE datasets (
    name           TEXT PRIMARY KEY,
    manifest       TEXT NOT NULL,            -- DatasetManifest JSON
    created        REAL NOT NULL
);

CREATE TABLE models (
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    format         TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    card           TEXT NOT NULL,            -- ModelCard JSON
    lineage        TEXT NOT NULL DEFAULT '{}',  -- dataset, run, job, metrics, parent
    description    TEXT NOT NULL DEFAULT '',
    artifact_key   TEXT NOT NULL,
    created        REAL NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE evaluations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name     TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    job            TEXT,
    metrics        TEXT NOT NULL DEFAULT '{}',
    artifacts      TEXT NOT NULL DEFAULT '{}',
    created        REAL NOT NULL
);
CREATE INDEX evaluations_model ON evaluations (model_name, model_version);

-- Every deployment action on a target; the current model is found by replaying them.
CREATE TABLE deployments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    target_kind    TEXT NOT NULL CHECK (target_kind IN ('car', 'group')),
    target         TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('deploy', 'rollback', 'clear')),
    model_name     TEXT,
    model_version  TEXT,
    sha256         TEXT,
    inline         INTEGER,
    published      INTEGER NOT NULL DEFAULT 0,
    requested_by   TEXT,
    created        REAL NOT NULL
);
CREATE INDEX deployments_target ON deployments (target_kind, target, id);

CREATE TABLE jobs (
    job            TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    state          TEXT NOT NULL,
    request        TEXT,                     -- the JobRequest JSON as published
    progress       TEXT,                     -- the last JobProgress JSON
    result         TEXT,                     -- the JobResult JSON
    published      INTEGER NOT NULL DEFAULT 0,
    created        REAL NOT NULL,
    updated        REAL NOT NULL
);
CREATE INDEX jobs_created ON jobs (created);

CREATE TABLE job_progress (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job            TEXT NOT NULL,
    ts             REAL NOT NULL,
    progress       TEXT NOT NULL
);
CREATE INDEX job_progress_job ON job_progress (job, id);
