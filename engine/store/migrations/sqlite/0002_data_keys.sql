-- Per-applicant data keys (crypto-shredding), OUTSIDE the hash-chained log: one random
-- 256-bit key per (authority, person), stored wrapped (encrypted) under the server's master
-- key-encryption key. Destroying a row makes that person's sealed personal data in the log
-- unreadable for good; the log itself, and so its chain, never changes.
-- `person` is the lower-case hex of the person key (the keyed hash of the document).
-- The store opens its connections with `PRAGMA secure_delete=ON`, so a deleted row's bytes
-- are overwritten with zeros instead of lingering in free space.
CREATE TABLE data_keys (
    authority  TEXT NOT NULL,
    person     TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (authority, person)
) WITHOUT ROWID;
