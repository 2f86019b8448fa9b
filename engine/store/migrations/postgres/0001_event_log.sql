-- The append-only, hash-chained event log (PostgreSQL).
-- payload and metadata are TEXT, not jsonb: jsonb would reorder keys and break the hash.
-- recorded_at is timestamptz (microsecond precision, the precision that is hashed).
CREATE TABLE events (
    global_seq     BIGSERIAL   PRIMARY KEY,
    authority      TEXT        NOT NULL,
    authority_seq  BIGINT      NOT NULL,
    stream_id      TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    payload        TEXT        NOT NULL,
    metadata       TEXT        NOT NULL,
    prev_hash      TEXT        NOT NULL,
    hash           TEXT        NOT NULL,
    CONSTRAINT events_authority_seq_key UNIQUE (authority, authority_seq),
    CONSTRAINT events_stream_version_key UNIQUE (authority, stream_id, stream_version)
);

CREATE TABLE idempotency (
    authority     TEXT        NOT NULL,
    key           TEXT        NOT NULL,
    request_hash  TEXT        NOT NULL,
    response      TEXT        NOT NULL,
    authority_seq BIGINT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (authority, key)
);

CREATE TABLE snapshots (
    authority     TEXT        NOT NULL,
    authority_seq BIGINT      NOT NULL,
    state         BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (authority, authority_seq)
);
