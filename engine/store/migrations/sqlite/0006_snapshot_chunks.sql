-- Snapshots in pieces. A snapshot of a large state is a byte stream of many megabytes (over
-- SQLite's 1 GB limit for one value at ten million applications): the writer stores it as
-- numbered pieces of at most 16 MiB here, each in a short transaction of its own, and then
-- a row in `snapshots` whose `state` is the snapshot's header (its layout, the number of
-- pieces, the stream's length and SHA-256: engine/writer/src/replay.rs). A snapshot without
-- its header row is not read; pieces of snapshots no longer kept are deleted with them.
CREATE TABLE snapshot_chunks (
    authority     TEXT    NOT NULL,
    authority_seq INTEGER NOT NULL,
    chunk         INTEGER NOT NULL CHECK (chunk >= 0),
    bytes         BLOB    NOT NULL,
    PRIMARY KEY (authority, authority_seq, chunk)
) WITHOUT ROWID;
