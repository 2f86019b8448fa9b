-- The append-only, hash-chained event log (SQLite).
-- recorded_at is the canonical RFC 3339 text with microseconds and `Z`, exactly the bytes that were hashed.
-- payload and metadata are JSON text stored byte for byte.
-- global_seq is a plain rowid alias, not AUTOINCREMENT: SQLite gives a new row
-- max(rowid) + 1, which only repeats a number after the newest row was deleted, and this
-- log is append-only (an UPDATE or DELETE is tampering that `verify` reports). AUTOINCREMENT
-- would read and rewrite the `sqlite_sequence` row on every INSERT statement, an extra
-- B-tree update per event for no guarantee the chain needs.
CREATE TABLE events (
    global_seq     INTEGER PRIMARY KEY,
    authority      TEXT    NOT NULL,
    authority_seq  INTEGER NOT NULL,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    UNIQUE (authority, authority_seq),
    UNIQUE (authority, stream_id, stream_version)
);

CREATE TABLE idempotency (
    authority     TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    response      TEXT    NOT NULL,
    authority_seq INTEGER,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (authority, key)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    authority     TEXT    NOT NULL,
    authority_seq INTEGER NOT NULL,
    state         BLOB    NOT NULL,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (authority, authority_seq)
);
