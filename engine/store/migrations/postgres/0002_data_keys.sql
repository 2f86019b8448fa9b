-- Per-applicant data keys (crypto-shredding), OUTSIDE the hash-chained log: one random
-- 256-bit key per (authority, person), stored wrapped (encrypted) under the server's master
-- key-encryption key. Destroying a row makes that person's sealed personal data in the log
-- unreadable for good; the log itself, and so its chain, never changes.
-- `person` is the lower-case hex of the person key (the keyed hash of the document).
CREATE TABLE data_keys (
    authority  TEXT        NOT NULL,
    person     TEXT        NOT NULL,
    wrapped    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (authority, person)
);
