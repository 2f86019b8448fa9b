-- The idempotency key's index leaves the log (see src/sqlite/mod.rs, "Idempotency keys").
-- `log_key` took one insert per keyed submission at a random place of a B-tree over random
-- digests: once it outgrew the cache, nearly every submission of a commit dirtied an index
-- page of its own (about 8 KB written per submission for 620 bytes stored). The key's
-- digest stays inside each hashed record; the authority's single writer keeps every key's
-- position in memory (rebuilt from the records on replay, kept in snapshots) and decides a
-- key's uniqueness before the commit. The `key` column repeated the record's digest and
-- goes with its index. On a large existing file this statement rewrites the `log` table
-- once.
DROP INDEX log_key;
ALTER TABLE log DROP COLUMN key;
