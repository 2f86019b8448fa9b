-- Schema v2 of the log: one row per event (one per submission), binary hashes, the
-- idempotency facts inside the hashed record. See src/sqlite/mod.rs for what each part is
-- for; the v1 tables `events` and `idempotency` stay, read-only, for logs written before.

-- A small integer per authority name, so rows carry 8-byte ids instead of names.
CREATE TABLE authority_ids (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);

-- id = authority_id << 40 | authority_seq (the rowid: the table's own B-tree orders each
-- authority's chain, and a duplicate position is a primary-key conflict).
-- record: the hashed record (deterministic CBOR), hash: its 32-byte SHA-256 chain hash.
-- key: the first 16 bytes of the idempotency key's digest, NULL without a key.
CREATE TABLE log (
    id     INTEGER PRIMARY KEY,
    record BLOB    NOT NULL,
    hash   BLOB    NOT NULL,
    key    BLOB
);

-- Finds a retry's first answer in one probe, and refuses a second use of a key within an
-- authority. The only index besides the table itself.
CREATE UNIQUE INDEX log_key ON log (key, id >> 40) WHERE key IS NOT NULL;
