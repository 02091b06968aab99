"""At the edges (api and ingest): every bad input is a clear 4xx naming the field, never a 500,
and nothing of a refused request is stored, produced or announced."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.api.changes import OUTBOX_PAUSE_LOCK
from services.devstack import ServiceProcess, free_port, wait_for_ready
from services.scheduler.retention import purge_older_than
from shared.db import asyncpg_dsn, create_pool
from shared.kafka import Topics, make_consumer
from shared.messages import decode
from shared.settings import Settings
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, wait_for_status

MIB = 1024 * 1024


def event(tenant, **fields) -> dict:
    return {"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}, **fields}


def locs(response: httpx.Response) -> list:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return [error["loc"] for error in response.json()["errors"]]


async def stored(tenant, event_id: str) -> bool:
    return (await tenant.client.get(f"/v1/events/{event_id}")).status_code == 200


# --- 1. strings ------------------------------------------------------------------------------


async def test_nul_and_lone_surrogates_are_refused_with_their_path(source, tenant):
    ids = [f"ev-{uuid.uuid4().hex}" for _ in range(4)]
    batch = [event(tenant, id=i) for i in ids]
    batch[3]["data"] = {"body": "STOP\u0000now", "ok": ["fine"]}
    batch[1]["data"] = {"nested": [{"sms\u0000": 1}]}
    response = await source.post("/v1/events", json={"events": batch})
    assert response.status_code == 422
    assert locs(response) == [["events", 1, "data", "nested", 0, "sms\\x00"], ["events", 3, "data", "body"]]
    # A lone surrogate, escaped or as raw (invalid UTF-8) bytes.
    escaped = b'{"topic": "SCG-Message", "event_type": "message.sent", "data": {"body": "\\ud83d"}}'
    assert locs(await source.post("/v1/events", content=escaped)) == [["data", "body"]]
    raw = '{"topic": "SCG-Message", "event_type": "message.sent", "data": {"body": "\ud83d"}}'.encode(
        "utf-8", "surrogatepass")
    assert locs(await source.post("/v1/events", content=raw)) == [["data", "body"]]

    api = tenant.client
    body = {"name": "crm\u0000", "mode": "realtime", "endpoints": [{"url": "https://example.com/h"}]}
    assert locs(await api.post("/v1/delivery-configurations", json=body)) == [["name"]]
    criteria = b'{"topic": "SCG-Message", "delivery_configuration_id": "dc_x", "start_at": "2026-01-01T00:00:00Z",' \
               b' "matching_criteria": {"data": {"k\\udc00": ["x"]}}}'
    response = await api.post("/v1/subscriptions", content=criteria, headers={"content-type": "application/json"})
    assert response.status_code == 422 and locs(response)[0][:2] == ["matching_criteria", "data"]
    assert locs(await api.get("/v1/subscriptions", params={"topic": "SCG\u0000"})) == [["query", "topic"]]
    assert locs(await api.get("/v1/events", params={"subject": "+1\u0000"})) == [["query", "subject"]]
    assert locs(await api.get("/v1/subscriptions/sub%00x")) == [["path", "subscription_id"]]
    assert locs(await api.delete("/v1/delivery-configurations/dc%00")) == [["path", "configuration_id"]]
    # An event accepted afterwards takes the same partition: once it is stored, anything of the
    # refused batch would be too.
    [later] = await publish(source, tenant)
    await eventually(lambda: stored(tenant, later))
    for event_id in ids:
        assert not await stored(tenant, event_id)


# --- 2. datetimes and cursors ----------------------------------------------------------------


async def test_datetimes_are_aware_and_within_range(source, tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    base = {"topic": "SCG-Message", "delivery_configuration_id": configuration["id"]}
    for start_at, end_at in (("0001-01-01T00:00:00Z", None), ("1969-12-31T23:59:59Z", None),
                             ("2200-01-01T00:00:00Z", None), ("2026-01-01T00:00:00", None)):
        response = await tenant.client.post("/v1/subscriptions", json={**base, "start_at": start_at, "end_at": end_at})
        assert locs(response) == [["start_at"]], start_at
    response = await tenant.client.post("/v1/subscriptions", json={**base, "start_at": "2026-01-01T00:00:00Z",
                                                                   "end_at": "9999-12-31T23:59:59Z"})
    assert locs(response) == [["end_at"]]
    oauth = {"name": "o", "mode": "realtime", "endpoints": [{"url": "https://example.com/h"}],
             "authentication": {"type": "oauth2", "token_url": "https://example.com/t", "client_id": "c",
                                "client_secret": "s", "grant_type": "client_credentials",
                                "refresh_token_expires_at": "0001-01-01T00:00:00+00:00"}}
    [loc] = locs(await tenant.client.post("/v1/delivery-configurations", json=oauth))
    assert loc[0] == "authentication" and loc[-1] == "refresh_token_expires_at"
    assert locs(await source.post("/v1/events", json=event(tenant, occurred_at="0001-01-01T00:00:00Z"))) == [
        ["occurred_at"]]
    assert locs(await tenant.client.get("/v1/events", params={"from": "0001-01-01T00:00:00Z"})) == [["query", "from"]]
    assert locs(await tenant.client.get("/v1/events", params={"to": "2026-01-01T00:00:00"})) == [["query", "to"]]
    bulk = {"action": "handled", "filter": {"from": "0001-01-01T00:00:00Z"}}
    assert locs(await tenant.client.post("/v1/bulk-actions", json=bulk)) == [["filter", "from"]]
    assert (await tenant.client.get("/v1/subscriptions")).json() == []


async def test_cursors_we_did_not_issue_are_refused(source, tenant):
    await publish(source, tenant, count=3)
    await eventually(lambda: _count_events(tenant, 3))
    first = (await tenant.client.get("/v1/events", params={"limit": 2})).json()
    assert first["next_cursor"]
    second = await tenant.client.get("/v1/events", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200 and len(second.json()["data"]) == 1
    payload, _, signature = first["next_cursor"].partition(".")
    import base64

    forged = base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+00:00", 1]').decode().rstrip("=")
    for cursor in (forged, f"{forged}.{signature}", f"{payload}.AAAA", "%%%", "\u00e9", payload):
        for path in ("/v1/events", "/v1/monitored-numbers", "/v1/buffer-files"):
            response = await tenant.client.get(path, params={"cursor": cursor})
            assert locs(response) == [["query", "cursor"]], (path, cursor, response.text)
    # A genuine cursor of one listing is not a cursor of another (its key has another shape).
    for path in ("/v1/monitored-numbers", "/v1/buffer-files"):
        response = await tenant.client.get(path, params={"cursor": first["next_cursor"]})
        assert locs(response) == [["query", "cursor"]], (path, response.text)



async def test_a_number_is_not_a_date_time(tenant):
    # pydantic alone would read these as Unix timestamps (1970, or 2023).
    for value in ("1.4660785852590404e-87", "1700000000"):
        response = await tenant.client.get("/v1/events", params={"from": value})
        assert response.status_code == 422 and locs(response) == [["query", "from"]], response.text

async def _count_events(tenant, wanted: int):
    return len((await tenant.client.get("/v1/events")).json()["data"]) >= wanted


# --- 3. nesting ------------------------------------------------------------------------------


def nested(levels: int) -> dict:
    value: dict = {"leaf": True}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


async def test_data_nested_deeper_than_the_limit_is_refused(source, tenant):
    deep = await source.post("/v1/events", json=event(tenant, data=nested(300)))
    assert deep.status_code == 422 and "64 levels" in deep.json()["errors"][0]["msg"]
    assert deep.json()["errors"][0]["loc"][:3] == ["data", "n", "n"]
    assert (await source.post("/v1/events", content=b'{"data": ' + b"[" * 2000 + b"]" * 2000 + b"}")).status_code == 422
    criteria = {"topic": "SCG-Message", "delivery_configuration_id": "dc_x", "start_at": "2026-01-01T00:00:00Z",
                "matching_criteria": nested(100)}
    assert (await tenant.client.post("/v1/subscriptions", json=criteria)).status_code == 422
    [kept] = await publish(source, tenant, data=nested(60))
    await eventually(lambda: stored(tenant, kept))


# --- 4. sizes --------------------------------------------------------------------------------


async def test_oversized_bodies_are_refused_before_they_are_read(stack, urls, source, tenant):
    # Content-Length is checked up front: the 413 comes back although no byte of the body was sent.
    port = stack.ports["ingest"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 1000000000\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 413") and b"application/problem+json" in head
    writer.close()

    async def chunks(count: int, size: int = MIB):
        for _ in range(count):
            yield b" " * size

    # A chunked body is counted as it arrives.
    refused = await tenant.client.post("/v1/monitored-numbers", content=chunks(9),
                                       headers={"content-type": "application/json"})
    assert refused.status_code == 413 and refused.json()["status"] == 413
    assert (await source.post("/v1/events", content=chunks(17))).status_code == 413
    # The largest legitimate bodies fit: 200,000 numbers, 1000 events.
    numbers = [f"+1415{n:07d}" for n in range(200_000)]
    added = await tenant.client.post("/v1/monitored-numbers", json={"numbers": numbers})
    assert added.status_code == 200 and added.json()["added"] == 200_000
    batch = [event(tenant, data={"body": "x" * 2000}) for _ in range(1000)]
    assert (await source.post("/v1/events", json={"events": batch})).status_code == 202


async def test_every_event_is_sized_before_anything_is_produced(source, tenant):
    ids = [f"ev-{uuid.uuid4().hex}" for _ in range(3)]
    batch = [event(tenant, id=i) for i in ids]
    batch[2]["data"] = {"attachment": "x" * 300_000}
    response = await source.post("/v1/events", json={"events": batch})
    assert response.status_code == 413 and locs(response) == [["events", 2]]
    assert "262144" in response.json()["errors"][0]["msg"]
    accepted = await source.post("/v1/events", json={"events": batch[:2]})
    assert accepted.status_code == 202
    await eventually(lambda: stored(tenant, ids[1]))
    assert not await stored(tenant, ids[2])


async def another_replica(stack, service: str, **env) -> tuple[ServiceProcess, int]:
    port = free_port()
    settings = {f"EM_{service.upper()}_PORT": str(port), **{f"EM_{k.upper()}": v for k, v in env.items()}}
    process = ServiceProcess(service, {**stack.env, **settings}, stack.data_dir / "logs" / f"{service}-{port}.log")
    process.start()
    await asyncio.to_thread(wait_for_ready, port, process)
    return process, port


async def test_a_batch_the_broker_refuses_in_part_is_a_503_naming_the_unknown_ids(stack, tenant, source):
    # An ingest whose event limit is above what the producer may send: the broker client refuses
    # the big event after the first one went out.
    ingest, port = await another_replica(stack, "ingest", max_event_bytes=str(20 * MIB))
    try:
        ids = [f"ev-{uuid.uuid4().hex}" for _ in range(3)]
        batch = [event(tenant, id=i) for i in ids]
        batch[1]["data"] = {"blob": "x" * (5 * MIB)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers={"authorization": source.headers["authorization"]}) as client:
            response = await client.post("/v1/events", json={"events": batch})
        assert response.status_code == 503, response.text
        assert locs(response) == [["events", 1, "id"]]
        assert ids[1] in response.json()["detail"] and "resend" in response.json()["detail"]
        await eventually(lambda: stored(tenant, ids[2]))  # what was acknowledged went through
        resent = await source.post("/v1/events", json={"events": [batch[0], batch[2]]})
        assert resent.status_code == 202 and resent.json()["accepted"] == [ids[0], ids[2]], "resending is safe"
    finally:
        await asyncio.to_thread(ingest.stop)


# --- 5. PATCH with null, and other inputs that used to give a 500 ------------------------------


async def test_patch_with_null_for_required_fields_is_a_422_and_changes_nothing(tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    path = f"/v1/delivery-configurations/{configuration['id']}"
    for field in ("name", "active", "endpoints", "format", "authentication", "mode"):
        response = await tenant.client.patch(path, json={field: None})
        assert locs(response) == [[field]], (field, response.text)
    after = (await tenant.client.get(path)).json()
    assert {k: after[k] for k in ("name", "endpoints", "format", "authentication", "active")} == {
        k: configuration[k] for k in ("name", "endpoints", "format", "authentication", "active")}
    assert (await tenant.client.patch(path, json={"throttle": None})).status_code == 200  # null = remove
    subscription = await subscribe(tenant, configuration["id"])
    for field in ("event_types", "delivery_configuration_id", "start_at", "active"):
        response = await tenant.client.patch(f"/v1/subscriptions/{subscription['id']}", json={field: None})
        assert locs(response) == [[field]], field
    assert (await tenant.client.get(f"/v1/subscriptions/{subscription['id']}")).json() == subscription


async def test_odd_values_are_4xx_not_500(tenant, source, admin):
    api = tenant.client
    checks = [
        await api.get("/v1/events", params={"limit": 10**30}),
        await api.get("/v1/events", params={"limit": -1}),
        await api.get("/v1/events", params={"status": "exploded"}),
        await api.get("/v1/buffer-files", params={"status": "nope"}),
        await api.get("/v1/monitored-numbers", params={"limit": "1e3"}),
        await api.post("/v1/delivery-configurations", json={"name": "", "mode": "realtime"}),
        await api.post("/v1/delivery-configurations", json={"name": "t", "mode": "realtime", "endpoints": [
            {"url": "https://example.com"}], "throttle": {"max_requests": 10**30, "per_seconds": 1}}),
        await api.post("/v1/delivery-configurations", headers={"content-type": "application/json"},
                       content=b'{"name": "t", "mode": "realtime", "throttle": {"per_seconds": 1e400}}'),
        await api.post("/v1/subscriptions", content=b'{"topic": NaN}', headers={"content-type": "application/json"}),
        await api.post("/v1/bulk-actions", json={"action": "handled", "filter": {"status": "exploded"}}),
        await api.post("/v1/bulk-actions", json={"action": "handled", "filter": []}),
        await source.post("/v1/events", json=event(tenant, id="")),
        await source.post("/v1/events", json=event(tenant, company_id="")),
        await source.post("/v1/events", json=[1, 2]),
        await source.post("/v1/events", json={"events": [None, 3]}),
        await admin.post("/v1/admin/sources", json={"name": "x", "topics": ["SCG-Message"] * 40_000}),
        await admin.post("/v1/admin/topics", json={"name": "Twice", "service": "s", "event_types": [
            {"name": "a.b"}, {"name": "a.b"}]}),
        await admin.post("/v1/admin/companies/%E2%98%83/applications", json={"name": "x"}),
    ]
    assert [r.status_code for r in checks] == [422] * 17 + [404], [r.text for r in checks]
    for response in (await api.get("/v1/events/\u2603"), await api.get("/v1/subscriptions/\U0001f600"),
                     await api.get("/v1/topics/" + "x" * 5000)):
        assert response.status_code == 404, response.text


# --- 6. idempotency --------------------------------------------------------------------------


async def test_event_ids_are_not_silently_taken_over(admin, urls, source, tenant, receiver):
    hook = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(hook))
    await subscribe(tenant, configuration["id"])
    await settle()  # the matcher applies the new subscription
    created = await admin.post("/v1/admin/sources", json={"name": "other", "topics": ["SCG-Message"]})
    other_source = httpx.AsyncClient(base_url=urls.ingest, headers={
        "authorization": f"Bearer {created.json()['token']}"})
    event_id = f"ev-{uuid.uuid4().hex}"
    first = event(tenant, id=event_id, data={"body": "hello"})
    assert (await source.post("/v1/events", json=first)).status_code == 202
    async with other_source:
        taken = await other_source.post("/v1/events", json={"events": [event(tenant), first]})
    assert taken.status_code == 409 and locs(taken) == [["events", 1, "id"]]
    assert "another source" in taken.json()["errors"][0]["msg"]
    changed = await source.post("/v1/events", json={**first, "data": {"body": "other"}})
    assert changed.status_code == 409 and locs(changed) == [["id"]] and "other content" in changed.text
    again = await source.post("/v1/events", json=first)
    assert again.status_code == 202 and again.json() == {"accepted": [event_id]}
    await wait_for_status(tenant, event_id, "delivered")
    other = await source.post("/v1/events", json={"events": [first, event(tenant, id=f"ev-{uuid.uuid4().hex}")]})
    assert other.status_code == 202
    await wait_for_status(tenant, other.json()["accepted"][1], "delivered")
    delivered = [r for r in receiver.requests[hook] if r.json()["id"] == event_id]
    assert len(delivered) == 1 and delivered[0].json()["data"] == {"body": "hello"}



async def test_a_broadcast_event_cannot_take_a_company_events_id(source, tenant):
    """A broadcast event reaches each company under its own id: were it the id of a company's
    event, one of the two would silently never be stored for that company."""
    event_id = f"ev-{uuid.uuid4().hex}"
    assert (await source.post("/v1/events", json=event(tenant, id=event_id))).status_code == 202
    broadcast = {"id": event_id, "topic": "NIS-Events", "event_type": "number.ported", "subject": "+14155550100",
                 "data": {}}
    clash = await source.post("/v1/events", json=broadcast)
    assert clash.status_code == 409 and locs(clash) == [["id"]], clash.text
    other_id = f"ev-{uuid.uuid4().hex}"
    assert (await source.post("/v1/events", json={**broadcast, "id": other_id})).status_code == 202
    reverse = await source.post("/v1/events", json=event(tenant, id=other_id))
    assert reverse.status_code == 409 and locs(reverse) == [["id"]], reverse.text

async def test_a_request_refused_for_one_id_claims_none_of_the_others(admin, urls, source, tenant):
    """Ids are claimed all or nothing: a batch refused (409) for one id taken by another source
    leaves its other new ids free, so the source that owns them later is not told they are taken."""
    created = await admin.post("/v1/admin/sources", json={"name": "other", "topics": ["SCG-Message"]})
    other_source = httpx.AsyncClient(base_url=urls.ingest, headers={
        "authorization": f"Bearer {created.json()['token']}"})
    held, fresh = event(tenant, id=f"ev-{uuid.uuid4().hex}"), event(tenant, id=f"ev-{uuid.uuid4().hex}")
    assert (await source.post("/v1/events", json=held)).status_code == 202
    async with other_source:
        refused = await other_source.post("/v1/events", json={"events": [fresh, held]})
    assert refused.status_code == 409 and locs(refused) == [["events", 1, "id"]], refused.text
    assert (await source.post("/v1/events", json=fresh)).status_code == 202


async def test_a_broadcast_and_a_company_claim_of_one_id_racing_see_each_other(stack, admin, tenant):
    """Their rows do not collide (other company keys), so without a lock on the id both would be
    accepted: the first claim (by an ingest of the release before, as in a rolling upgrade) is held
    open, the second waits for it and then sees it."""
    from services.ingest.claims import CLAIM_TOGETHER, Claim, arguments
    from shared.security import digest

    sources = []
    for name in ("racer-a", "racer-b"):
        created = await admin.post("/v1/admin/sources", json={"name": name, "topics": ["SCG-Message", "NIS-Events"]})
        sources.append(created.json())
    event_id = f"ev-{uuid.uuid4().hex}"

    def claim(connection, created, company_key):
        return connection.fetch(CLAIM_TOGETHER, *arguments([Claim(digest(created["token"]), created["id"],
                                                                  created["topics"], None, [company_key], [event_id],
                                                                  [company_key.encode()])]))

    def claim_as_the_release_before(connection, created, company_key):  # during a rolling upgrade
        return connection.fetch("SELECT event_index, reason FROM claim_ingest_ids($1, $2, $3, NULL, $4, $5, $6)",
                                digest(created["token"]), created["id"], created["topics"], [company_key],
                                [event_id], [company_key.encode()])

    dsn = asyncpg_dsn(stack.env["EM_DATABASE_URL"])
    first, second, watcher = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        held = first.transaction()
        await held.start()
        assert await claim_as_the_release_before(first, sources[0], "") == []  # a broadcast's, not committed yet
        racing = asyncio.create_task(claim(second, sources[1], tenant.id))
        await eventually(lambda: watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND pid = $1", second.get_server_pid()))
        assert not racing.done()
        await held.commit()
        assert [tuple(row) for row in await racing] == [(0, 0, "from another source")]
    finally:
        for connection in (first, second, watcher):
            await connection.close()


# --- 7. change notifications through the outbox ----------------------------------------------


async def test_a_deletion_announced_late_still_stops_matching(stack, source, tenant, receiver):
    hook = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(hook))
    subscription = await subscribe(tenant, configuration["id"])
    await settle()
    [before] = await publish(source, tenant)
    await wait_for_status(tenant, before, "delivered")
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", OUTBOX_PAUSE_LOCK)  # the relay waits
        deleted = await tenant.client.delete(f"/v1/subscriptions/{subscription['id']}")
        assert deleted.status_code == 204
        pending = await connection.fetch("SELECT kind FROM change_outbox WHERE company_id = $1", tenant.id)
        assert [row["kind"] for row in pending] == ["subscriptions"], "the notification committed with the change"
        await connection.execute("SELECT pg_advisory_unlock($1)", OUTBOX_PAUSE_LOCK)

        async def relayed():
            return await connection.fetchval("SELECT count(*) = 0 FROM change_outbox WHERE company_id = $1",
                                             tenant.id)

        await eventually(relayed, timeout=10)
    finally:
        await connection.close()
    await settle()  # the matchers apply the change
    [after] = await publish(source, tenant)
    summary = await eventually(lambda: _event_summary(tenant, after))
    assert summary["status"] == "unmatched"
    assert [r.json()["id"] for r in receiver.requests[hook]] == [before]


async def _event_summary(tenant, event_id: str):
    response = await tenant.client.get(f"/v1/events/{event_id}")
    return response.json() if response.status_code == 200 else None


async def test_every_change_route_writes_the_outbox(stack, tenant, receiver):
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", OUTBOX_PAUSE_LOCK)
        try:
            configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
            await subscribe(tenant, configuration["id"])
            numbers = await tenant.client.post("/v1/monitored-numbers", json={"numbers": ["+14155550100"]})
            assert numbers.status_code == 200
            refused = await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}",
                                                json={"format": None})
            assert refused.status_code == 422
            kinds = await connection.fetch("SELECT kind FROM change_outbox WHERE company_id = $1 ORDER BY id",
                                           tenant.id)
            assert [row["kind"] for row in kinds] == ["delivery_configurations", "subscriptions", "monitored_numbers"]
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", OUTBOX_PAUSE_LOCK)
    finally:
        await connection.close()


async def test_api_replicas_relay_each_notification_once(stack, urls, tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    replica, port = await another_replica(stack, "api")
    settings = Settings(kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    changes = make_consumer(settings, None, Topics.of(settings).changes, auto_offset_reset="latest")
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await eventually(lambda: _outbox_empty(connection, tenant.id))
        await changes.start()
        await changes.getmany(timeout_ms=500)  # positioned at the end
        await connection.execute("SELECT pg_advisory_lock($1)", OUTBOX_PAUSE_LOCK)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=tenant.client.headers) as other:
            for client in (tenant.client, other) * 3:
                await subscribe(_with_client(tenant, client), configuration["id"])
        await connection.execute("SELECT pg_advisory_unlock($1)", OUTBOX_PAUSE_LOCK)  # both relays go at once
        await eventually(lambda: _outbox_empty(connection, tenant.id))
        seen = []
        for _ in range(4):
            for records in (await changes.getmany(timeout_ms=500)).values():
                seen += [decode(r.value) for r in records if decode(r.value)["company_id"] == tenant.id]
        assert seen == [{"v": 1, "kind": "subscriptions", "company_id": tenant.id}], "six rows, one relay, one message"
    finally:
        await connection.close()
        await changes.stop()
        await asyncio.to_thread(replica.stop)


def _with_client(tenant, client):
    return replace(tenant, client=client)


async def _outbox_empty(connection, company_id: str) -> bool:
    return await connection.fetchval("SELECT count(*) = 0 FROM change_outbox WHERE company_id = $1", company_id)


async def test_idempotency_keys_are_purged_with_the_events(stack, source, tenant):
    [kept] = await publish(source, tenant)
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=1)
    try:
        await pool.execute("INSERT INTO ingest_ids (company_key, id, source_id, digest, received_at) "
                           "VALUES ($1, 'old-id', 'src_x', '\\x00', now() - interval '40 days')", tenant.id)
        totals = await purge_older_than(pool, datetime.now(UTC) - timedelta(days=30))
        assert totals["ingest_ids"] >= 1
        left = await pool.fetch("SELECT id FROM ingest_ids WHERE company_key = $1 ORDER BY id", tenant.id)
        assert [row["id"] for row in left] == [kept]
    finally:
        await pool.close()


async def test_an_unknown_query_parameter_is_refused_not_ignored(tenant):
    # A misspelt filter must not silently widen a search (or a bulk action built from it).
    response = await tenant.client.get("/v1/events", params={"statuss": "failed"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "statuss"]
    assert (await tenant.client.get("/v1/events", params={"status": "failed"})).status_code == 200


async def test_requests_racing_on_the_same_objects_get_4xx_never_5xx(tenant, source, receiver):
    """A delete racing a change, and republish racing mark-as-handled, on the same objects."""
    statuses = []
    for _ in range(8):
        configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
        answers = await asyncio.gather(
            tenant.client.delete(f"/v1/delivery-configurations/{configuration['id']}"),
            tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}", json={"active": False}),
            tenant.client.post("/v1/subscriptions", json={"topic": "SCG-Message", "start_at": "2026-01-01T00:00:00Z",
                                                          "delivery_configuration_id": configuration["id"]}))
        statuses += [answer.status_code for answer in answers]
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    await subscribe(tenant, configuration["id"])
    await settle()  # the matcher applies the new subscription
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    answers = await asyncio.gather(*(tenant.client.post(f"/v1/events/{event_id}/{action}")
                                     for _ in range(10) for action in ("republish", "handled")))
    statuses += [answer.status_code for answer in answers]
    assert all(status < 500 for status in statuses), statuses


async def test_a_phone_number_with_a_trailing_newline_is_not_e164(source, tenant):
    # Python's `$` also matches before a final newline: the numbers are matched whole.
    numbers = await tenant.client.post("/v1/monitored-numbers", json={"numbers": ["+4915112345678\n"]})
    assert numbers.status_code == 422, numbers.text
    event = {"topic": "NIS-Events", "event_type": "number.ported", "subject": "+4915199990000\n", "data": {}}
    published = await source.post("/v1/events", json=event)
    assert published.status_code == 422 and locs(published) == [["subject"]], published.text


def test_loopback_ipv6_is_loopback_not_an_ipv4_compatible_address():
    import ipaddress

    from shared.netguard import address_refusal

    assert address_refusal("::1", [ipaddress.ip_network("::1/128")]) is None
    assert "loopback" in address_refusal("::1", [])
    assert address_refusal("::10.0.0.1", [ipaddress.ip_network("::/96")]) is not None, "a tunnel still vets its IPv4"
