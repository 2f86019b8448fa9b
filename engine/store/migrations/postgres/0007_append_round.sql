-- One round of the committer (src/postgres.rs, `commit_group`) in ONE statement, so ONE
-- round trip and one implicit transaction (one commit, one WAL flush), whatever the number
-- of authorities in the round. Before, each authority's append cost four round trips inside
-- the round's transaction (SAVEPOINT, the head, the INSERT, RELEASE) plus BEGIN and COMMIT:
-- 46 for eleven authorities, each a wake-up of this backend and of the server on a machine
-- whose cores the server, its clients and PostgreSQL share.
--
-- The caller chains each append's rows after the head it believes (kept in its memory: one
-- writer per authority) and passes that head; here, per append, in order:
--   1. cluster mode (p_epochs[i] not NULL): the authority's fence epoch must still be the
--      caller's, read FOR SHARE so that a takeover's epoch bump waits for this transaction
--      (status 2, head_seq = the epoch found);
--   2. the head must be the one the rows were chained after: its position and hash (the last
--      v2 row, else with p_legacy the last v1 event, else 0 / genesis) (status 1, with the
--      head found, for the caller to chain again or refuse);
--   3. the rows are inserted, inside a block of their own: a duplicate position (a writer
--      the caller did not know of) undoes only them (status 1, head NULL);
--   4. in cluster mode, a notification to the followers (delivered only if this commits).
-- A failure of anything else aborts the whole statement: nothing of any append is written.
-- Arrays run in parallel per append (p_ids .. p_counts); the rows of all appends are
-- concatenated in p_seqs, p_records and p_hashes, p_counts[i] of them for append i.
CREATE FUNCTION ochered_append_round(
    p_ids     INT4[],
    p_names   TEXT[],
    p_after   INT8[],
    p_prev    BYTEA[],
    p_epochs  INT8[],
    p_counts  INT4[],
    p_seqs    INT8[],
    p_records BYTEA[],
    p_hashes  BYTEA[],
    p_legacy  BOOLEAN,
    p_notify  TEXT
) RETURNS TABLE (status INT4, head_seq INT8, head_hash BYTEA)
LANGUAGE plpgsql AS $$
DECLARE
    i        INT4;
    first    INT4 := 1;
    last     INT4;
    found_epoch INT8;
    hs       INT8;
    hh       BYTEA;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        last := first + p_counts[i] - 1;
        status := 0;
        head_seq := NULL;
        head_hash := NULL;
        IF p_epochs[i] IS NOT NULL THEN
            found_epoch := NULL;
            SELECT o.epoch INTO found_epoch FROM authority_owners o
                WHERE o.authority = p_names[i] FOR SHARE;
            IF found_epoch IS DISTINCT FROM p_epochs[i] THEN
                status := 2;
                head_seq := found_epoch;
                RETURN NEXT;
                first := last + 1;
                CONTINUE;
            END IF;
        END IF;
        hs := NULL;
        hh := NULL;
        SELECT l.authority_seq, l.hash INTO hs, hh FROM log l
            WHERE l.authority = p_ids[i] ORDER BY l.authority_seq DESC LIMIT 1;
        IF hs IS NULL AND p_legacy THEN
            SELECT e.authority_seq, decode(e.hash, 'hex') INTO hs, hh FROM events e
                WHERE e.authority = p_names[i] ORDER BY e.authority_seq DESC LIMIT 1;
        END IF;
        IF hs IS NULL THEN
            hs := 0;
        END IF;
        IF hs <> p_after[i] OR (hs > 0 AND hh IS DISTINCT FROM p_prev[i]) THEN
            status := 1;
            head_seq := hs;
            head_hash := hh;
            RETURN NEXT;
            first := last + 1;
            CONTINUE;
        END IF;
        IF last >= first THEN
            BEGIN
                INSERT INTO log (authority, authority_seq, record, hash)
                    SELECT p_ids[i], u.s, u.r, u.h
                    FROM UNNEST(p_seqs[first:last], p_records[first:last], p_hashes[first:last])
                        AS u(s, r, h);
            EXCEPTION WHEN unique_violation THEN
                status := 1;
                RETURN NEXT;
                first := last + 1;
                CONTINUE;
            END;
        END IF;
        IF p_notify IS NOT NULL THEN
            PERFORM pg_notify(p_notify, p_names[i]);
        END IF;
        RETURN NEXT;
        first := last + 1;
    END LOOP;
END
$$;
