-- Signed tree heads (docs/TRANSPARENCY.md), kept OUTSIDE the hash-chained log: each row is
-- one head the server signed and published for an authority, with the consistency proof
-- from the authority's previous head, exactly as served (`head`, a JSON text). One head per
-- (authority, tree_size): a head, once stored, is never replaced, so a size never gets a
-- second head with another root, also across restarts. `root_hash` repeats the head's root
-- for checks in SQL.
CREATE TABLE tree_heads (
    authority  TEXT   NOT NULL,
    tree_size  BIGINT NOT NULL CHECK (tree_size > 0),
    root_hash  BYTEA  NOT NULL,
    head       TEXT   NOT NULL,
    PRIMARY KEY (authority, tree_size)
);
