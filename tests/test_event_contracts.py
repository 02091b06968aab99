"""Event contracts: event types carry a JSON Schema and an example (operator API, seeded for the
catalog), ingest validates `data` per topic (off, warn, enforce), and the catalog is published
as an AsyncAPI 3.0 document."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import jsonschema
import pytest

from services.api import asyncapi
from shared.contracts import MAX_PATTERN_LENGTH, MAX_SCHEMA_DEPTH
from tests.conftest import ALL_TOPICS, eventually
from tests.delivery_helpers import stored

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {
            "type": "object", "required": ["sku"],
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}}}},
    },
}
GOOD = {"order_id": "o-1", "amount": 5, "lines": [{"sku": "ABC-1"}]}
BAD = {"order_id": "o-2", "amount": "five", "lines": [{"sku": "ABC-1"}, {"sku": "nope"}]}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _topic(admin, mode: str = "off", **event_type) -> str:
    name = _unique("Contracts")
    created = await admin.post("/v1/admin/topics", json={
        "name": name, "service": "Test Service", "validation_mode": mode,
        "event_types": [{"name": "order.placed", "json_schema": ORDER_SCHEMA, "example": GOOD, **event_type}]})
    assert created.status_code == 201, created.text
    return name


@pytest.fixture
async def shop(admin, urls, tenant):
    """A topic of its own (the seeded ones stay `off` for every other test) and a source for it."""
    topic = await _topic(admin)
    source = await admin.post("/v1/admin/sources", json={"name": _unique("shop"), "topics": [topic]})
    async with httpx.AsyncClient(base_url=urls.ingest, timeout=30,
                                 headers={"authorization": f"Bearer {source.json()['token']}"}) as client:
        yield topic, client


def _event(topic: str, tenant, data: dict, **fields) -> dict:
    return {"id": f"ev-{uuid.uuid4().hex}", "topic": topic, "event_type": "order.placed", "company_id": tenant.id,
            "data": data, **fields}


async def _violations(urls, admin, topic: str) -> float:
    # Ingest's /metrics needs the operator token (its series name tenants' topics).
    operator = {"authorization": admin.headers["authorization"]}
    async with httpx.AsyncClient(base_url=urls.ingest, headers=operator) as client:
        text = (await client.get("/metrics")).text
    pattern = (r'^em_ingest_schema_violations_total\{event_type="order\.placed",topic="' + re.escape(topic)
               + r'"\} ([0-9.e+]+)$')
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _set_mode(admin, topic: str, mode: str) -> None:
    response = await admin.patch(f"/v1/admin/topics/{topic}", json={"validation_mode": mode})
    assert response.status_code == 200 and response.json()["validation_mode"] == mode, response.text


async def test_off_warn_and_enforce(stack, admin, urls, tenant, shop):
    topic, client = shop

    async def accepted(data):
        response = await client.post("/v1/events", json=_event(topic, tenant, data))
        return response.status_code == 202

    # off: nothing is checked (once ingest's catalog knows the new topic)
    assert await eventually(lambda: accepted(BAD), timeout=30)
    assert await _violations(urls, admin, topic) == 0

    # warn: accepted, and counted
    await _set_mode(admin, topic, "warn")

    async def counted():
        return await accepted(BAD) and await _violations(urls, admin, topic) > 0

    await eventually(counted, timeout=30)
    before = await _violations(urls, admin, topic)
    assert await accepted(BAD) and await _violations(urls, admin, topic) == before + 1
    assert await accepted(GOOD) and await _violations(urls, admin, topic) == before + 1
    # logged once a minute per event type, by path and keyword, never the data
    logged = [line for line in (stack.data_dir / "logs" / "ingest.log").read_text().splitlines()
              if topic in line and "schema violation" in line]
    assert len(logged) == 1 and "data['amount']" in logged[0] and "five" not in logged[0], logged

    # enforce: the request is refused whole, naming each violation by its JSON path, and nothing is stored
    await _set_mode(admin, topic, "enforce")

    async def refused():
        response = await client.post("/v1/events", json={"events": [_event(topic, tenant, GOOD),
                                                                    _event(topic, tenant, BAD)]})
        return response if response.status_code == 422 else None

    response = await eventually(refused, timeout=30)
    assert response.headers["content-type"] == "application/problem+json"
    locs = [e["loc"] for e in response.json()["errors"]]
    assert locs == [["events", 1, "data", "amount"], ["events", 1, "data", "lines", 1, "sku"]], locs
    assert "five" not in response.text and "nope" not in response.text, "the data is not echoed"
    # past 100 errors, each further event names its first violation only (bounded work for a refused request)
    many = await client.post("/v1/events", json={"events": [_event(topic, tenant, BAD) for _ in range(120)]})
    assert many.status_code == 422
    errors = many.json()["errors"]
    assert len(errors) == 50 * 2 + 70 and errors[-1]["loc"][:3] == ["events", 119, "data"], errors[-1]
    single = await client.post("/v1/events", json=_event(topic, tenant, {"amount": -1}))
    assert single.status_code == 422
    assert [e["loc"] for e in single.json()["errors"]] == [["data"], ["data", "amount"]]
    assert "required" in single.json()["errors"][0]["msg"]

    bad_id = f"ev-{uuid.uuid4().hex}"
    assert (await client.post("/v1/events", json=_event(topic, tenant, BAD, id=bad_id))).status_code == 422
    later = _event(topic, tenant, GOOD)
    assert (await client.post("/v1/events", json=later)).status_code == 202
    await stored(tenant, later["id"])  # same company, same partition: a refused event would be stored by now
    assert (await tenant.client.get(f"/v1/events/{bad_id}")).status_code == 404


async def test_a_changed_schema_applies(admin, tenant, shop):
    topic, client = shop
    await _set_mode(admin, topic, "enforce")
    changed = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "string"}}}
    response = await admin.patch(f"/v1/admin/topics/{topic}/event-types/order.placed",
                                 json={"json_schema": changed, "example": {"amount": "five"}})
    assert response.status_code == 200, response.text
    [event_type] = response.json()["event_types"]
    assert event_type["json_schema"] == changed and event_type["example"] == {"amount": "five"}

    async def new_schema_applies():
        old_bad = await client.post("/v1/events", json=_event(topic, tenant, BAD))
        old_good = await client.post("/v1/events", json=_event(topic, tenant, GOOD))
        return old_bad.status_code == 202 and old_good.status_code == 422 and old_good.json()["errors"]

    errors = await eventually(new_schema_applies, timeout=30)
    assert [e["loc"] for e in errors] == [["data", "amount"]]

    # no schema: nothing to enforce
    removed = await admin.patch(f"/v1/admin/topics/{topic}/event-types/order.placed", json={"json_schema": None})
    assert removed.status_code == 200 and removed.json()["event_types"][0]["json_schema"] is None

    async def anything_goes():
        return (await client.post("/v1/events", json=_event(topic, tenant, {"whatever": 1}))).status_code == 202

    await eventually(anything_goes, timeout=30)


@pytest.mark.parametrize(("schema", "loc", "words"), [
    ({"type": "objekt"}, ["json_schema"], "not a valid JSON Schema"),
    ({"properties": {"a": {"minimum": "zero"}}}, ["json_schema"], "properties/a/minimum"),
    (["not", "an", "object"], ["json_schema"], "dictionary"),
    ({"properties": {"a": {"pattern": "(?<=x)y"}}}, ["json_schema"], "cannot be compiled"),
    ({"properties": {"a": {"pattern": "a" * (MAX_PATTERN_LENGTH + 1)}}}, ["json_schema"], "at most"),
    ({"$ref": "https://example.com/schema.json"}, ["json_schema"], "only references inside"),
    ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, ["json_schema"], "cannot be compiled"),
])
async def test_invalid_schemas_are_422(admin, schema, loc, words):
    topic = await _topic(admin)
    response = await admin.patch(f"/v1/admin/topics/{topic}/event-types/order.placed", json={"json_schema": schema})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["loc"] == loc and words in error["msg"], error


async def test_schema_size_and_depth_are_bounded(admin):
    topic = await _topic(admin)
    deep: dict = {"type": "object"}
    for _ in range(MAX_SCHEMA_DEPTH // 2):  # two levels each: within the api's JSON depth limit (64)
        deep = {"properties": {"a": deep}}
    response = await admin.patch(f"/v1/admin/topics/{topic}/event-types/order.placed", json={"json_schema": deep})
    [error] = response.json()["errors"]
    assert response.status_code == 422 and error["loc"] == ["json_schema"]
    assert f"deeper than {MAX_SCHEMA_DEPTH} levels" in error["msg"], error
    huge = {"properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(1000)}}
    response = await admin.patch(f"/v1/admin/topics/{topic}/event-types/order.placed", json={"json_schema": huge})
    assert response.status_code == 422 and "bytes" in response.json()["errors"][0]["msg"]


async def test_examples_must_validate(admin):
    topic = await _topic(admin)
    path = f"/v1/admin/topics/{topic}/event-types/order.placed"
    response = await admin.patch(path, json={"example": {"order_id": "o-1", "amount": -3}})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["example", "amount"]]
    # a new schema must still accept the example kept
    response = await admin.patch(path, json={"json_schema": {"type": "object", "required": ["customer"]}})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["example"]
    # ... unless a new example comes with it
    response = await admin.patch(path, json={"json_schema": {"type": "object", "required": ["customer"]},
                                             "example": {"customer": "c-1"}})
    assert response.status_code == 200, response.text
    # creating: at the event type's index; adding one: at example
    bad = {"name": _unique("Contracts"), "service": "s", "event_types": [
        {"name": "a.b"}, {"name": "c.d", "json_schema": ORDER_SCHEMA, "example": {"order_id": 1, "amount": 1}}]}
    response = await admin.post("/v1/admin/topics", json=bad)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["event_types", 1, "example", "order_id"]
    response = await admin.post(f"/v1/admin/topics/{topic}/event-types",
                                json={"name": "order.cancelled", "json_schema": ORDER_SCHEMA, "example": {}})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["example"]
    assert (await admin.patch("/v1/admin/topics/No-Such-Topic", json={"validation_mode": "warn"})).status_code == 404
    assert (await admin.patch(f"/v1/admin/topics/{topic}", json={"validation_mode": "strict"})).status_code == 422
    assert (await admin.patch(f"{path}s", json={"example": {}})).status_code == 404


async def test_seeded_event_types_have_schemas_and_valid_examples(tenant):
    seeded = {*ALL_TOPICS, "EM-Operations"}
    catalog = [t for t in (await tenant.client.get("/v1/topics")).json() if t["name"] in seeded]
    assert len(catalog) == len(seeded)
    for topic in catalog:
        assert topic["validation_mode"] == "off", topic["name"]
        for event_type in topic["event_types"]:
            name = f"{topic['name']} {event_type['name']}"
            schema, example = event_type["json_schema"], event_type["example"]
            assert schema is not None and example is not None, name
            jsonschema.Draft202012Validator.check_schema(schema)
            jsonschema.Draft202012Validator(schema).validate(example)
            assert schema.get("required"), f"{name}: a seeded schema names what the event must carry"
    one = (await tenant.client.get("/v1/topics/SCG-Message")).json()
    delivered = next(t for t in one["event_types"] if t["name"] == "message.delivered")
    assert delivered["example"]["message_id"] and "delivered_at" in delivered["json_schema"]["required"]


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_asyncapi_document(admin, tenant):
    topic = await _topic(admin, mode="warn", description="An order was placed")
    response = await tenant.client.get("/v1/topics/asyncapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    key = re.compile(r"^[\w\d.\-_]+$")
    assert all(key.match(k) for part in ("channels", "operations") for k in document[part])
    assert all(key.match(k) for k in document["components"]["messages"])
    catalog = (await tenant.client.get("/v1/topics")).json()
    channels = {channel["address"]: channel for channel in document["channels"].values()}
    assert set(channels) == {t["name"] for t in catalog}, "every topic is a channel"
    for entry in catalog:
        channel = channels[entry["name"]]
        messages = {_resolve(document, m["$ref"])["name"]: _resolve(document, m["$ref"])
                    for m in channel["messages"].values()}
        assert set(messages) == {t["name"] for t in entry["event_types"]}, "every event type is a message"
        for event_type in entry["event_types"]:
            payload = messages[event_type["name"]]["payload"]
            jsonschema.Draft202012Validator.check_schema(payload)
            assert payload["properties"]["event_type"]["const"] == event_type["name"]
            assert payload["properties"]["topic"]["const"] == entry["name"]
            data = dict(payload["properties"]["data"])
            if event_type["json_schema"]:  # with its own $id, so its local $refs resolve against itself
                assert data.pop("$id").startswith("urn:event-manager:")
            assert data == (event_type["json_schema"] or asyncapi.ANY_DATA)
            for example in messages[event_type["name"]].get("examples", []):
                jsonschema.Draft202012Validator(payload).validate(example["payload"])
    for operation in document["operations"].values():
        assert operation["action"] == "receive"
        channel = _resolve(document, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            assert _resolve(document, message["$ref"])["$ref"] in (m["$ref"] for m in channel["messages"].values())
    assert len(document["operations"]) == len(document["channels"])
    mine = channels[topic]
    assert "warn" in mine["description"]
    [placed] = [_resolve(document, m["$ref"]) for m in mine["messages"].values()]
    data = dict(placed["payload"]["properties"]["data"])
    assert data.pop("$id") == f"urn:event-manager:{topic}:order.placed"
    assert data == ORDER_SCHEMA and placed["summary"] == "An order was placed"
    assert placed["examples"][0]["payload"]["data"] == GOOD
    async with httpx.AsyncClient(base_url=str(tenant.client.base_url)) as anonymous:
        assert (await anonymous.get("/v1/topics/asyncapi.json")).status_code == 401


def test_a_pathological_pattern_cannot_stall_validation():
    """Patterns run on a linear-time engine: the classic catastrophic-backtracking pattern on a
    long non-matching string takes what a plain scan takes (Python's re would take years)."""
    from shared.contracts import compile_schema, schema_problems

    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"},
                                               "t": {"type": "string", "pattern": "^(a|aa)*b$"}}}
    assert schema_problems(schema) == []
    validator = compile_schema(schema)
    data = {"s": "a" * 100_000 + "!", "t": "a" * 100_000}
    started = time.process_time()
    assert not validator.is_valid(data)
    assert time.process_time() - started < 0.5



def test_a_schema_whose_refs_double_at_each_level_is_refused_quickly():
    """1.9 KB and 6 levels deep, but 2^29 subschemas to visit: it would stall ingest for everyone."""
    import time

    from shared.contracts import schema_problems

    definitions = {"d0": {"type": "object"}}
    for level in range(1, 30):
        definitions[f"d{level}"] = {"allOf": [{"$ref": f"#/$defs/d{level - 1}"}, {"$ref": f"#/$defs/d{level - 1}"}]}
    started = time.perf_counter()
    problems = schema_problems({"$defs": definitions, "$ref": "#/$defs/d29"})
    assert time.perf_counter() - started < 2
    assert [message for _, message in problems] == [
        "the schema expands to more than 10000 subschemas once its $refs are followed; validating against it "
        "would cost too much"]
    recursive = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert schema_problems(recursive) == [], "a recursive schema (a tree) is fine"



def test_an_asyncapi_payload_keeps_a_schemas_local_refs_working():
    import jsonschema

    from services.api.asyncapi import delivered_payload

    schema = {"type": "object", "properties": {"amount": {"$ref": "#/$defs/money"}},
              "$defs": {"money": {"type": "number"}}}
    payload = jsonschema.Draft202012Validator(delivered_payload("SCG-Message", "message.sent", schema))
    document = {"id": "e", "topic": "SCG-Message", "event_type": "message.sent", "subscription_id": "s",
                "occurred_at": "2026-01-01T00:00:00Z", "data": {"amount": 5}}
    payload.validate(document)
    assert [error.message for error in payload.iter_errors(document | {"data": {"amount": "5"}})] == [
        "'5' is not of type 'number'"]
