"""Ingest's claims of concurrent requests go to PostgreSQL together (services/ingest/claims.py),
and each request still gets its own outcome: one tenant's refused or failing claim never changes
another's."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from services.ingest.claims import Claim, Claims
from shared.db import asyncpg_dsn, create_pool
from shared.security import digest


@pytest.fixture
async def pool(stack):
    pool = await create_pool(asyncpg_dsn(stack.env["EM_DATABASE_URL"]), size=2)
    yield pool
    await pool.close()


async def _source(admin) -> dict:
    created = await admin.post("/v1/admin/sources", json={"name": f"s-{uuid.uuid4().hex[:8]}",
                                                          "topics": ["SCG-Message"]})
    assert created.status_code == 201, created.text
    return created.json()


def _claim(source: dict, company_id: str, *ids: str, content: bytes = b"same", token: str | None = None) -> Claim:
    return Claim(digest(token or source["token"]), source["id"], source["topics"], None,
                 [company_id] * len(ids), list(ids), [content] * len(ids))


def _groups() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("em_ingest_claim_group_requests_count") or 0
    return count, REGISTRY.get_sample_value("em_ingest_claim_group_requests_sum") or 0


def _fresh() -> str:
    return f"ev-{uuid.uuid4().hex}"


async def test_concurrent_claims_go_together_and_each_gets_its_own_answer(pool, admin, tenant, other_tenant):
    """No id appears twice in the group: each step is one statement for the whole group."""
    first, second = await _source(admin), await _source(admin)
    held, broadcast_held = _fresh(), _fresh()
    claims = Claims(pool)
    assert await claims.claim(_claim(first, tenant.id, held)) == []
    assert await claims.claim(_claim(first, "", broadcast_held)) == []  # a broadcast event's id
    refused_fresh, changed_fresh, free = _fresh(), _fresh(), _fresh()
    calls_before, requests_before = _groups()

    shared_id = _fresh()  # one id, two companies: their claims do not meet
    answers = await asyncio.gather(
        claims.claim(_claim(second, tenant.id, refused_fresh, held)),  # held by the first source: refused whole
        claims.claim(_claim(first, other_tenant.id, broadcast_held)),  # the broadcast's source and content
        claims.claim(_claim(first, tenant.id, changed_fresh, token="revoked")),  # token no longer its
        claims.claim(_claim(second, other_tenant.id, free)),
        claims.claim(_claim(second, other_tenant.id, _fresh(), _fresh())),
        claims.claim(_claim(first, tenant.id, _fresh(), held, _fresh(), broadcast_held, content=b"other")),
        claims.claim(_claim(first, tenant.id, shared_id)),
        claims.claim(_claim(second, other_tenant.id, shared_id)),
    )

    calls, requests = _groups()
    assert (calls - calls_before, requests - requests_before) == (1, 8), "the eight went in one call"
    assert answers == [[(1, "from another source")], [], [(None, "source changed")], [], [],
                       [(1, "with other content"), (3, "with other content")], [], []]
    # The refused requests claimed none of their ids; the accepted ones did.
    assert await claims.claim(_claim(first, tenant.id, refused_fresh)) == []
    assert await claims.claim(_claim(first, tenant.id, changed_fresh, content=b"other")) == []
    assert await claims.claim(_claim(first, other_tenant.id, free)) == [(0, "from another source")]
    assert await claims.claim(_claim(second, tenant.id, broadcast_held)) == [(0, "from another source")]


async def test_claims_of_one_id_in_one_group_are_made_in_turn(pool, admin, tenant, other_tenant):
    """An id appears twice in the group: a request's claim may depend on an earlier one's, so
    each is claimed in turn, as if alone."""
    first, second = await _source(admin), await _source(admin)
    held, taken_later, free, new = _fresh(), _fresh(), _fresh(), _fresh()
    claims = Claims(pool)
    assert await claims.claim(_claim(first, tenant.id, held)) == []
    calls_before, requests_before = _groups()

    answers = await asyncio.gather(
        claims.claim(_claim(second, tenant.id, taken_later, held)),  # held by the first source: refused whole
        claims.claim(_claim(first, tenant.id, held)),  # the same source resending the same content
        claims.claim(_claim(first, tenant.id, _fresh(), content=b"x", token="revoked")),  # token no longer its
        claims.claim(_claim(second, other_tenant.id, held, free)),  # another company's ids: its own
        claims.claim(_claim(first, tenant.id, held, content=b"other")),  # other content under a held id
        claims.claim(_claim(first, tenant.id, new)),  # claimed here, so taken for the next two
        claims.claim(_claim(second, tenant.id, new)),
        claims.claim(_claim(first, tenant.id, new, content=b"other")),
        claims.claim(_claim(first, tenant.id, new)),
    )

    calls, requests = _groups()
    assert (calls - calls_before, requests - requests_before) == (1, 9), "the nine went in one call"
    assert answers == [[(1, "from another source")], [], [(None, "source changed")], [],
                       [(0, "with other content")], [], [(0, "from another source")], [(0, "with other content")],
                       []]
    # The refused request claimed none of its ids: the first source may still take the other one.
    assert await claims.claim(_claim(first, tenant.id, taken_later)) == []


async def test_a_group_the_database_refuses_is_answered_request_by_request(pool, admin, tenant, other_tenant):
    """A claim PostgreSQL cannot take (a NUL in an id, were one to get past validation) fails the
    group's call; each request is then sent alone, and only the one at fault fails."""
    source = await _source(admin)
    calls_before, _ = _groups()
    claims = Claims(pool)
    good, bad, also_good = _fresh(), "ev-\x00-nul", _fresh()
    answers = await asyncio.gather(claims.claim(_claim(source, tenant.id, good)),
                                   claims.claim(_claim(source, other_tenant.id, bad)),
                                   claims.claim(_claim(source, other_tenant.id, also_good)),
                                   return_exceptions=True)
    assert answers[0] == [] and answers[2] == [], answers
    assert isinstance(answers[1], Exception), answers
    calls, _ = _groups()
    assert calls - calls_before == 4, "the group, then each of the three alone"
    # Claimed for real: another source is refused the good ids.
    other = await _source(admin)
    assert await claims.claim(_claim(other, tenant.id, good)) == [(0, "from another source")]


async def test_a_group_is_bounded_in_requests_and_ids(pool, admin, tenant):
    source = await _source(admin)
    claims = Claims(pool, max_requests=3, max_ids=4)
    calls_before, requests_before = _groups()
    shapes = [1, 1, 1, 1, 3, 2, 5]  # ids per request
    answers = await asyncio.gather(*(claims.claim(_claim(source, tenant.id, *(_fresh() for _ in range(n))))
                                     for n in shapes))
    assert answers == [[]] * len(shapes)
    calls, requests = _groups()
    # [1, 1, 1] (three requests), [1, 3] (four ids), [2] (the next would pass four), [5] (one alone may)
    assert (calls - calls_before, requests - requests_before) == (4, 7)


async def test_a_request_cancelled_while_its_group_is_sent_holds_up_no_other(pool, admin, tenant):
    source = await _source(admin)
    claims = Claims(pool)
    dropping = asyncio.create_task(claims.claim(_claim(source, tenant.id, _fresh())))
    await asyncio.sleep(0)  # it waits; the sender starts
    await asyncio.sleep(0)  # its call is under way
    waiting = asyncio.create_task(claims.claim(_claim(source, tenant.id, _fresh())))  # for the next call
    await asyncio.sleep(0)
    dropping.cancel()
    assert await asyncio.wait_for(waiting, 20) == []
    with pytest.raises(asyncio.CancelledError):
        await dropping


async def test_a_request_cancelled_before_its_group_is_sent_claims_nothing(pool, admin, tenant):
    source, other = await _source(admin), await _source(admin)
    claims = Claims(pool)
    first = asyncio.create_task(claims.claim(_claim(source, tenant.id, _fresh())))
    await asyncio.sleep(0)  # `first` waits; the sender starts
    await asyncio.sleep(0)  # its call is under way
    dropped, kept = _fresh(), _fresh()
    dropping = asyncio.create_task(claims.claim(_claim(source, tenant.id, dropped)))
    keeping = asyncio.create_task(claims.claim(_claim(source, tenant.id, kept)))
    await asyncio.sleep(0)  # both wait for the next group
    dropping.cancel()
    assert await first == [] and await keeping == []
    with pytest.raises(asyncio.CancelledError):
        await dropping
    assert await claims.claim(_claim(other, tenant.id, dropped)) == [], "never claimed"
    assert await claims.claim(_claim(other, tenant.id, kept)) == [(0, "from another source")]
