"""Two hot-path operations as functions, so each costs one round trip (issue 13):

- `claim_ingest_ids`: ingest's check that a request's source token still holds, and its
  idempotency claim (services/ingest/app.py), which were a lookup and a transaction of four
  statements (BEGIN, INSERT, SELECT the holders, COMMIT);
- `take_rate_limit_tokens`: a rate-limit take (shared/ratelimit.py) that may take several tokens
  at once, a lease a replica then spends without asking again.

PL/pgSQL, not one SQL statement: each statement of a volatile function sees what other
transactions committed before it started, which the claim needs (a holder that committed while
our INSERT waited on its row), and the take must tell how many tokens it took.

The claim commits without waiting for its WAL record to reach disk (synchronous_commit off, for
its own transaction only). Waiting cost a single-event request 0.5 ms of ingest CPU and 0.3 ms of
PostgreSQL's, a third of the request's cost (measured). What it risks: the event itself is safe
once the broker acknowledged it, and the claim only guards its id; a crash of PostgreSQL itself (not
of a client) may forget the claims of its last fraction of a second (at most three times
wal_writer_delay), so an id claimed just then could later be accepted from another source, whose
event the matcher then drops as a duplicate. That is a double fault in a window under a second,
traded for the capacity every request pays for.

Both plan their statements once per connection (generic plans): with arrays for parameters,
PostgreSQL judged custom plans cheaper and planned again on every call (a single-event claim cost
it 0.57 ms of CPU, 0.40 ms with the generic plan; measured). A plan made once must not depend on
the table's size when it was made: made on a new, empty `ingest_ids` it scanned the whole table
on every later call. Every statement here finds rows by key, so sequential scans are off: an index
scan is right at any size.

Revision ID: 0018
Revises: 0017
"""
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# The source a token names: its current token, or its previous one within the rotation's overlap,
# by the database's clock. The one place of this rule: ingest's lookup and the claim's check both
# read it. A single-SELECT SQL function, so PostgreSQL inlines it and uses the token indexes.
SOURCE_OF_TOKEN = """
CREATE FUNCTION source_of_token(token text) RETURNS SETOF sources LANGUAGE sql STABLE AS $$
    SELECT * FROM sources
    WHERE token_digest = token OR (previous_token_digest = token AND previous_token_expires_at > now())
$$
"""

CLAIM_INGEST_IDS = """
CREATE FUNCTION claim_ingest_ids(token text, source text, granted_topics text[], granted_companies text[],
                                 company_keys text[], ids text[], digests bytea[])
RETURNS TABLE (event_index int, reason text) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
-- First checks that the token (its digest) still names `source`, enabled, with the topics and
-- companies the request was validated against; if not, claims nothing and returns one row
-- (NULL, 'source changed'). Then claims every id for `source`, or none: returns the (0-based)
-- indexes whose id another source holds, or this source with other content, and why (for the
-- same company; a broadcast event, key '', collides with every company's). When there is any,
-- this call's own claims are removed again before its transaction ends, so no one sees them.
DECLARE
    claimed_keys text[];
    claimed_ids text[];
    id_lock int;
BEGIN
    PERFORM FROM source_of_token(token) s
    WHERE s.id = source AND s.enabled AND s.topics::text[] = granted_topics
      AND s.company_ids::text[] IS NOT DISTINCT FROM granted_companies;
    IF NOT FOUND THEN
        event_index := NULL; reason := 'source changed';
        RETURN NEXT;
        RETURN;
    END IF;
    -- Not waiting for the WAL flush: see the module's docstring.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Claims of one id go one at a time, locked in one order: a broadcast and a company event of
    -- the same id, whose rows do not collide, still see each other (the SELECT below runs once
    -- the other committed), and two batches naming the same ids never deadlock.
    FOR id_lock IN SELECT DISTINCT hashtext(i) FROM unnest(ids) AS i ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(18, id_lock);  -- 18: this migration's, apart from other locks
    END LOOP;
    WITH inserted AS (
        INSERT INTO ingest_ids (company_key, id, source_id, digest)
        SELECT k, i, source, d FROM unnest(company_keys, ids, digests) AS t(k, i, d)
        ON CONFLICT DO NOTHING
        RETURNING company_key, id
    )
    SELECT array_agg(inserted.company_key), array_agg(inserted.id) INTO claimed_keys, claimed_ids FROM inserted;
    -- A new statement: it sees holders committed while the INSERT waited, and this call's own.
    RETURN QUERY
        SELECT DISTINCT ON (g.n) (g.n - 1)::int,
               CASE WHEN h.source_id <> source THEN 'from another source' ELSE 'with other content' END
        FROM unnest(company_keys, ids, digests) WITH ORDINALITY AS g(k, i, d, n)
        JOIN ingest_ids h ON h.id = g.i AND (h.company_key = g.k OR '' IN (g.k, h.company_key))
        WHERE h.source_id <> source OR h.digest <> g.d
        ORDER BY g.n, h.source_id = source;
    IF FOUND AND claimed_ids IS NOT NULL THEN
        DELETE FROM ingest_ids
        WHERE (ingest_ids.company_key, ingest_ids.id) IN (SELECT * FROM unnest(claimed_keys, claimed_ids));
    END IF;
END
$$
"""

# Refills the subject's bucket (`capacity` per `window_seconds`, capacity being the company's own
# limit or `default_per_minute`) and takes up to `wanted` whole tokens, never more than a tenth of
# a second of the steady rate (so a replica's lease strands little), at least one when one is
# there. Returns what it took (0: refused), the capacity, and the tokens there were before.
TAKE_RATE_LIMIT_TOKENS = """
CREATE FUNCTION take_rate_limit_tokens(bucket text, company text, default_per_minute float8,
                                       window_seconds float8, wanted int)
RETURNS TABLE (taken int, capacity float8, available float8) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    tokens_then float8;
    refilled_then timestamptz;
    read_at timestamptz;
BEGIN
    capacity := coalesce((SELECT rate_limit_per_minute FROM companies WHERE id = company), default_per_minute);
    IF capacity < 1 THEN
        taken := 0; available := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT b.tokens, b.refilled_at INTO tokens_then, refilled_then
    FROM rate_limit_buckets b WHERE b.subject = bucket FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limit_buckets (subject, tokens, refilled_at) VALUES (bucket, capacity, clock_timestamp())
        ON CONFLICT (subject) DO NOTHING;
        SELECT b.tokens, b.refilled_at INTO tokens_then, refilled_then
        FROM rate_limit_buckets b WHERE b.subject = bucket FOR UPDATE;
    END IF;
    -- The clock is read once the row is ours: a take that waited for the lock refills from the
    -- moment the one before it wrote, never from before.
    read_at := clock_timestamp();
    -- A clock stepped back refills nothing, rather than a negative amount.
    available := least(capacity, tokens_then
                                 + greatest(0, extract(epoch FROM read_at - refilled_then)) * capacity / window_seconds);
    taken := least(floor(available), greatest(1, least(wanted, floor(capacity / window_seconds / 10))))::int;
    IF taken >= 1 THEN
        UPDATE rate_limit_buckets SET tokens = available - taken, refilled_at = read_at
        WHERE subject = bucket;
    ELSE
        taken := 0;
    END IF;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    op.execute(SOURCE_OF_TOKEN)
    op.execute(CLAIM_INGEST_IDS)
    op.execute(TAKE_RATE_LIMIT_TOKENS)


def downgrade() -> None:
    op.execute("DROP FUNCTION take_rate_limit_tokens(text, text, float8, float8, int)")
    op.execute("DROP FUNCTION claim_ingest_ids(text, text, text[], text[], text[], text[], bytea[])")
    op.execute("DROP FUNCTION source_of_token(text)")
