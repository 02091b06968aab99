"""`claim_ingest_ids_together`: the claims of several ingest requests in one round trip (issue 13).

Ingest gathers the claims of the requests that arrive while one round trip is under way and sends
them together (services/ingest/claims.py). Each request's claim is exactly `claim_ingest_ids`
(migration 0018): its source's check, and its ids claimed all or none, one request after the
other in the order given, as if each had made its own call in turn. So one request refused (a
changed source, an id taken) claims nothing and changes nothing for the others. What the group
saves is the round trip and the transaction of each: a single-event request's claim cost
PostgreSQL about 0.26 ms of CPU and ingest a fifth of its own, most of it the call rather than
the insert.

Every id lock of the whole group is taken first, in one order, before any request's claim: two
groups naming the same ids in other orders wait for each other and never deadlock. The claims'
own locks are then already held (advisory locks nest within one transaction).

`claim_ingest_ids` stays: the claim of one request, and what an ingest replica of the release
before calls during a rolling upgrade.

Revision ID: 0020
Revises: 0019
"""
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# `requests`: one object per request, in order: the token's digest ("token"), the source it was
# validated against ("source", "topics", "companies": null for any), and how many of the id
# arrays' entries are its own ("ids"), which follow the previous request's.
CLAIM_INGEST_IDS_TOGETHER = """
CREATE FUNCTION claim_ingest_ids_together(requests jsonb, company_keys text[], ids text[], digests bytea[])
RETURNS TABLE (request_index int, event_index int, reason text) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    request jsonb;
    first int := 1;
    last int;
    id_lock int;
BEGIN
    FOR id_lock IN SELECT DISTINCT hashtext(i) FROM unnest(ids) AS i ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(18, id_lock);  -- the lock claim_ingest_ids takes for each id
    END LOOP;
    request_index := 0;
    FOR request IN SELECT value FROM jsonb_array_elements(requests) LOOP
        last := first + (request->>'ids')::int - 1;
        FOR event_index, reason IN
            SELECT c.event_index, c.reason FROM claim_ingest_ids(
                request->>'token', request->>'source',
                ARRAY(SELECT t FROM jsonb_array_elements_text(request->'topics') WITH ORDINALITY AS a(t, n)
                      ORDER BY n),
                CASE WHEN jsonb_typeof(request->'companies') = 'array'
                     THEN ARRAY(SELECT t FROM jsonb_array_elements_text(request->'companies') WITH ORDINALITY AS a(t, n)
                                ORDER BY n) END,
                company_keys[first:last], ids[first:last], digests[first:last]) AS c
        LOOP
            RETURN NEXT;
        END LOOP;
        first := last + 1;
        request_index := request_index + 1;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM_INGEST_IDS_TOGETHER)


def downgrade() -> None:
    op.execute("DROP FUNCTION claim_ingest_ids_together(jsonb, text[], text[], bytea[])")
