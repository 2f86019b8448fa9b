-- The idempotency key's index leaves the log (see src/postgres.rs, "Idempotency keys").
-- `log_key` took one insert per keyed submission at a random place of a B-tree over random
-- digests, a page write per submission once it outgrew the cache. The key's digest stays
-- inside each hashed record; the authority's single writer (fenced in cluster mode) keeps
-- every key's position in memory (rebuilt from the records on replay, kept in snapshots)
-- and decides a key's uniqueness before the commit. The `key` column repeated the record's
-- digest and goes with its index (PostgreSQL drops a column without rewriting the table).
DROP INDEX log_key;
ALTER TABLE log DROP COLUMN key;
