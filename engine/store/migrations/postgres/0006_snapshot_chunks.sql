-- Snapshots in pieces (see migrations/sqlite/0006_snapshot_chunks.sql): numbered pieces of
-- at most 16 MiB of a snapshot's byte stream; the row in `snapshots` is its header, written
-- last, and pieces of snapshots no longer kept are deleted with them.
CREATE TABLE snapshot_chunks (
    authority     TEXT   NOT NULL,
    authority_seq BIGINT NOT NULL,
    chunk         INTEGER NOT NULL CHECK (chunk >= 0),
    bytes         BYTEA  NOT NULL,
    PRIMARY KEY (authority, authority_seq, chunk)
);
