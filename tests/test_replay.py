"""Replay and simulation over retained history, through the running services: events published
before a subscription existed are retained (unmatched) and a replay delivers exactly the missing
ones, once however often it runs; a dry run counts what the replay then creates; a simulation
counts what a subscription with the same parameters then receives, and names the clause each
near miss fails; another company's events never count; bad input is a 422 naming the field;
a window past the scan limit (EM_REPLAY_SCAN_LIMIT, 100 in tests) is refused at `to`."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, sentinel, stored, wait_for_status

STOP = {"data": {"keyword": [{"equals-ignore-case": "stop"}], "carrier": ["ACME"]}}


def moment(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def finished_job(tenant, job: dict) -> dict:
    async def done():
        current = (await tenant.client.get(f"/v1/bulk-actions/{job['id']}")).json()
        return current if current["status"] != "running" else None

    return await eventually(done)


async def replay(tenant, subscription_id: str, **body) -> dict:
    response = await tenant.client.post(f"/v1/subscriptions/{subscription_id}/replay", json=body)
    if body.get("dry_run"):
        assert response.status_code == 200, response.text
        return response.json()
    assert response.status_code == 202, response.text
    assert response.json()["action"] == "replay"
    return await finished_job(tenant, response.json())


async def test_replay_delivers_exactly_the_missing_events_once(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    since = moment(datetime.now(UTC) - timedelta(seconds=5))
    # Before any subscription: retained all the same, as unmatched events.
    before = await publish(source, tenant, count=3, data={"keyword": "STOP"})
    [other] = await publish(source, tenant, data={"keyword": "GO"})
    for event_id in [*before, other]:
        view = await stored(tenant, event_id)
        assert view["status"] == "unmatched" and view["deliveries"] == [], view
    subscription = await subscribe(tenant, configuration["id"], matching_criteria={"data": {"keyword": ["STOP"]}})
    await settle()
    [live] = await publish(source, tenant, data={"keyword": "STOP"})
    await wait_for_status(tenant, live, "delivered")

    counts = await replay(tenant, subscription["id"], dry_run=True, **{"from": since})
    assert counts | {"from": None, "to": None} == {
        "dry_run": True, "from": None, "to": None, "scanned": 5, "matched": 4, "already_delivered": 1, "to_create": 3}
    job = await replay(tenant, subscription["id"], **{"from": since, "to": counts["to"]})
    assert job["status"] == "completed", job
    assert (job["total"], job["processed"]) == (5, 5)
    assert job["result"] == {"matched": 4, "already_delivered": 1, "created": counts["to_create"]}
    for event_id in before:
        delivery = await wait_for_status(tenant, event_id, "delivered")
        assert delivery["subscription_id"] == subscription["id"]
    assert (await stored(tenant, other))["status"] == "unmatched"

    # Again: everything has its delivery now, so nothing is created and nothing sent twice.
    again = await replay(tenant, subscription["id"], **{"from": since})
    assert again["result"] == {"matched": 4, "already_delivered": 4, "created": 0}, again
    assert (await replay(tenant, subscription["id"], dry_run=True, **{"from": since}))["to_create"] == 0
    last = await sentinel(source, tenant, receiver, path, data={"keyword": "STOP"})
    received = Counter(request.json()["id"] for request in receiver.requests[path])
    assert received == Counter([*before, live, last]), received
    for event_id in [*before, live]:
        assert len((await stored(tenant, event_id))["deliveries"]) == 1


async def test_simulation_counts_what_the_subscription_then_receives(tenant, other_tenant, source, receiver):
    since = moment(datetime.now(UTC) - timedelta(seconds=5))
    received = "message.received"
    matching = await publish(source, tenant, count=3, event_type=received, data={"keyword": "Stop", "carrier": "ACME"})
    other_carrier = await publish(source, tenant, count=2, event_type=received,
                                  data={"keyword": "STOP", "carrier": "Other"})
    [other_keyword] = await publish(source, tenant, event_type=received, data={"keyword": "GO", "carrier": "ACME"})
    [both_wrong] = await publish(source, tenant, event_type=received, data={"keyword": "GO", "carrier": "Other"})
    [wrong_type] = await publish(source, tenant, data={"keyword": "STOP", "carrier": "ACME"})
    [too_early] = await publish(source, tenant, event_type=received, occurred_at="2025-06-01T00:00:00Z",
                                data={"keyword": "STOP", "carrier": "ACME"})
    foreign = await publish(source, other_tenant, count=2, event_type=received,
                            data={"keyword": "STOP", "carrier": "ACME"})
    for event_id in [*matching, *other_carrier, other_keyword, both_wrong, wrong_type, too_early]:
        await stored(tenant, event_id)
    for event_id in foreign:
        await stored(other_tenant, event_id)

    parameters = {"topic": "SCG-Message", "event_types": [received], "matching_criteria": STOP,
                  "start_at": "2026-01-01T00:00:00Z"}
    response = await tenant.client.post("/v1/subscriptions/simulate", json={**parameters, "from": since})
    assert response.status_code == 200, response.text
    simulation = response.json()
    today = datetime.now(UTC).date().isoformat()
    assert simulation["scanned"] == 8  # the topic's message.received events in the window, this company's only
    assert simulation["matched"] == 3
    assert simulation["by_event_type"] == {received: 3}
    assert simulation["by_day"] == {today: 3} or sum(simulation["by_day"].values()) == 3  # a run across midnight
    assert sorted(sample["id"] for sample in simulation["samples"]) == sorted(matching)
    assert simulation["samples"][0]["data"] == {"keyword": "Stop", "carrier": "ACME"}
    near = {miss["id"]: miss["failed_clause"] for miss in simulation["near_misses"]}
    assert near == {**{event_id: ["data", "carrier"] for event_id in other_carrier},
                    other_keyword: ["data", "keyword"]}, simulation["near_misses"]
    assert not {both_wrong, wrong_type, too_early, *foreign} & ({s["id"] for s in simulation["samples"]} | set(near))

    # The same parameters as a subscription, replayed over the same window, receive exactly those.
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    subscription = await subscribe(tenant, configuration["id"], **parameters)
    dry = await replay(tenant, subscription["id"], dry_run=True, **{"from": since, "to": simulation["to"]})
    job = await replay(tenant, subscription["id"], **{"from": since, "to": simulation["to"]})
    assert dry["to_create"] == job["result"]["created"] == dry["matched"] == simulation["matched"], (dry, job)
    for event_id in matching:
        await wait_for_status(tenant, event_id, "delivered")
    last = await sentinel(source, tenant, receiver, path, event_type=received,
                          data={"keyword": "stop", "carrier": "ACME"})
    assert sorted(r.json()["id"] for r in receiver.requests[path]) == sorted([*matching, last])

    # The other company: none of these events, and not this company's subscription.
    theirs = (await other_tenant.client.post("/v1/subscriptions/simulate", json={**parameters, "from": since})).json()
    assert theirs["matched"] == 2 and sorted(s["id"] for s in theirs["samples"]) == sorted(foreign)
    refused = await other_tenant.client.post(f"/v1/subscriptions/{subscription['id']}/replay", json={"dry_run": True})
    assert refused.status_code == 404


async def test_replay_into_a_scheduled_configuration_buffers_for_the_next_file(tenant, source):
    since = moment(datetime.now(UTC) - timedelta(seconds=5))
    events = await publish(source, tenant, count=2)
    for event_id in events:
        await stored(tenant, event_id)
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "files", "mode": "scheduled", "active": True, "schedule": {"simple": "daily"}})
    assert response.status_code == 201, response.text
    subscription = await subscribe(tenant, response.json()["id"])
    job = await replay(tenant, subscription["id"], **{"from": since})
    assert job["result"]["created"] == 2
    for event_id in events:
        [delivery] = (await stored(tenant, event_id))["deliveries"]
        assert delivery["status"] == "buffered" and delivery["subscription_id"] == subscription["id"]


async def test_bad_input_is_a_422_naming_the_field(tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    subscription = await subscribe(tenant, configuration["id"])
    base = {"topic": "SCG-Message"}
    cases = [
        ({"topic": "SCG-Nope"}, ["topic"]),
        ({"event_types": ["message.exploded"]}, ["event_types", 0]),
        ({"topic": "NIS-Events"}, ["event_types"]),
        ({"matching_criteria": {"data": {"keyword": [{"prefix": 5}]}}},
         ["matching_criteria", "data", "keyword", 0, "prefix"]),
        ({"start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"}, ["end_at"]),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, ["to"]),
        ({"from": "yesterday"}, ["from"]),
        ({"unexpected": 1}, ["unexpected"]),
    ]
    for change, loc in cases:
        response = await tenant.client.post("/v1/subscriptions/simulate", json={**base, **change})
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["loc"] == loc, (change, response.json())
    for body, loc in (({"from": "yesterday"}, ["from"]), ({"to": "2000-01-01T00:00:00"}, ["to"]),
                      ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, ["to"]),
                      ({"dry_run": "perhaps"}, ["dry_run"]), ({"filter": {}}, ["filter"])):
        response = await tenant.client.post(f"/v1/subscriptions/{subscription['id']}/replay", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["loc"] == loc, (body, response.json())
    missing = await tenant.client.post("/v1/subscriptions/sub_missing/replay", json={"dry_run": True})
    assert missing.status_code == 404

    # An inactive subscription would deliver nothing: a replay is refused, a dry run counts.
    await tenant.client.patch(f"/v1/subscriptions/{subscription['id']}", json={"active": False})
    refused = await tenant.client.post(f"/v1/subscriptions/{subscription['id']}/replay", json={})
    assert refused.status_code == 409 and "inactive" in refused.json()["detail"]
    assert (await replay(tenant, subscription["id"], dry_run=True))["to_create"] == 0


async def test_a_window_past_the_scan_limit_is_refused_at_to(tenant, source, receiver):
    since = moment(datetime.now(UTC) - timedelta(seconds=5))
    first = await publish(source, tenant, count=60)
    second = await publish(source, tenant, count=41)  # 101 in all: one past the tests' limit of 100
    await stored(tenant, first[-1])
    await stored(tenant, second[-1])  # the same company's events are stored in order
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    subscription = await subscribe(tenant, configuration["id"])
    for response in (
        await tenant.client.post(f"/v1/subscriptions/{subscription['id']}/replay", json={"from": since}),
        await tenant.client.post(f"/v1/subscriptions/{subscription['id']}/replay", json={"from": since,
                                                                                        "dry_run": True}),
        await tenant.client.post("/v1/subscriptions/simulate", json={"topic": "SCG-Message", "from": since}),
    ):
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["loc"] == ["to"] and "more than 100 events" in error["msg"], error
    assert (await tenant.client.get("/v1/bulk-actions")).json() == []  # no job was started
    # The answer says where a window within the limit ends: the second request's arrival.
    bound = re.search(r"ending at (\S+) holds", error["msg"]).group(1)
    counts = await replay(tenant, subscription["id"], dry_run=True, **{"from": since, "to": bound})
    assert counts["scanned"] == counts["to_create"] == 60


async def test_a_nis_replay_reaches_only_numbers_monitored_now(tenant, source, receiver):
    since = moment(datetime.now(UTC) - timedelta(seconds=5))
    number = "+1415555" + str(uuid.uuid4().int)[:4]
    await tenant.client.post("/v1/monitored-numbers", json={"numbers": [number]})
    first = await realtime_configuration(tenant, receiver.url(unique_path()))
    await subscribe(tenant, first["id"], topic="NIS-Events", event_types=["number.ported"])
    await settle()
    event = {"id": f"nis-{uuid.uuid4().hex}", "topic": "NIS-Events", "event_type": "number.ported",
             "subject": number, "data": {"carrier": "X"}}
    assert (await source.post("/v1/events", json=event)).status_code == 202
    await wait_for_status(tenant, event["id"], "delivered")  # retained for the company: it matched

    second = await realtime_configuration(tenant, receiver.url(unique_path()))
    later = await subscribe(tenant, second["id"], topic="NIS-Events", event_types=["number.ported"])
    await tenant.client.request("DELETE", "/v1/monitored-numbers", json={"numbers": [number]})
    counts = await replay(tenant, later["id"], dry_run=True, **{"from": since})
    assert (counts["scanned"], counts["matched"]) == (1, 0)  # no longer monitored: it would not reach it now
    await tenant.client.post("/v1/monitored-numbers", json={"numbers": [number]})
    job = await replay(tenant, later["id"], **{"from": since})
    assert job["result"] == {"matched": 1, "already_delivered": 0, "created": 1}
    await wait_for_status(tenant, event["id"], "delivered", configuration_id=second["id"])


def test_one_simulation_or_dry_run_at_a_time_per_company():
    """They scan inline on the api's event loop: a company cannot queue many of them (429)."""
    import pytest

    from services.api.routes.replay import one_scan_per_company
    from shared.errors import TooManyRequests

    with one_scan_per_company("co_a"):
        with pytest.raises(TooManyRequests) as refused, one_scan_per_company("co_a"):
            pass
        assert refused.value.headers == {"Retry-After": "5"}
        with one_scan_per_company("co_b"):  # another company is not held up
            pass
    with one_scan_per_company("co_a"):  # free again once the first ended
        pass
