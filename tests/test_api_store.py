"""The api's query layer (services/api/store) on its own: every finder takes the company and
treats another company's row as missing, the actions on deliveries never reach another
company's, PATCH merging keeps the null and secret rules, and the one EventFilter reads and
stores a filter the same way for search and bulk jobs."""

from __future__ import annotations

import ast
import inspect
import pkgutil
import uuid
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

import services.api.store as store_package
from services.api.schemas import (
    DeliveryConfigurationUpdate,
    EventFilter,
    SubscriptionUpdate,
)
from services.api.store import buffer_files, bulk_actions, delivery_configurations, events, subscriptions
from services.api.store.filters import matching_deliveries
from services.api.store.patch import merge_patch
from shared.db import Database
from shared.errors import NotFound
from shared.models import BufferFile, BulkAction, Company, Delivery, DeliveryConfiguration, Event, Subscription
from shared.statuses import DeliveryStatus

# Operator-level data (the catalog, companies and keys, dead letters): no company to scope by.
NOT_COMPANY_DATA = {"admin", "topics", "dead_letters", "patch"}
ROUTES = Path(__file__).parent.parent / "services" / "api" / "routes"


# --- the shape of the layer ------------------------------------------------------------------


def _store_modules():
    for info in pkgutil.iter_modules(store_package.__path__):
        if info.name not in NOT_COMPANY_DATA:
            yield info.name, import_module(f"services.api.store.{info.name}")


def test_every_company_function_of_the_layer_requires_the_company():
    checked = []
    for name, module in _store_modules():
        for function_name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or function_name.startswith("_"):
                continue
            parameters = inspect.signature(function).parameters
            if "session" not in parameters:
                continue  # pure helpers over rows already found
            company = parameters.get("company_id")
            assert company is not None, f"{name}.{function_name} does not take company_id"
            assert company.default is inspect.Parameter.empty, f"{name}.{function_name}: company_id is optional"
            checked.append(f"{name}.{function_name}")
    assert {"delivery_configurations.find", "subscriptions.find", "events.find", "buffer_files.find",
            "bulk_actions.find", "events.search", "deliveries.requeue"} <= set(checked), checked


def test_no_route_module_imports_another():
    for path in ROUTES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith("services.api.routes") for n in names), f"{path.name} imports {names}"


# --- PATCH merging ---------------------------------------------------------------------------


def test_merge_patch_keeps_what_was_left_out_and_replaces_what_was_sent():
    current = {"name": "crm", "active": True, "throttle": {"max_requests": 5, "per_seconds": 1.0},
               "schedule": None, "endpoints": [{"url": "https://a.example/h", "active": False}],
               "format": "json", "authentication": {"type": "basic", "username": "u", "password": "p"},
               "signing_secret": "whsec_old"}
    patch = DeliveryConfigurationUpdate.model_validate({"throttle": None,
                                                        "endpoints": [{"url": "https://b.example/h"}]})
    merged = merge_patch(current, patch)
    assert merged["throttle"] is None, "null removes"
    assert merged["endpoints"] == [{"url": "https://b.example/h", "active": True}], "replaced whole, defaults in"
    assert {k: merged[k] for k in ("name", "active", "authentication", "signing_secret")} == {
        k: current[k] for k in ("name", "active", "authentication", "signing_secret")}, "left out: kept, secrets too"
    assert current["throttle"] is not None, "the current values are not changed in place"
    # Authentication sent is replaced whole: a secret not sent again is gone.
    patch = DeliveryConfigurationUpdate.model_validate({"authentication": {"type": "none"}})
    assert merge_patch(current, patch)["authentication"] == {"type": "none"}
    assert merge_patch(current, DeliveryConfigurationUpdate.model_validate({"signing_secret": None}))[
        "signing_secret"] is None


def test_null_is_refused_where_a_resource_cannot_be_without_the_value():
    for model, field in ((DeliveryConfigurationUpdate, "name"), (DeliveryConfigurationUpdate, "active"),
                         (SubscriptionUpdate, "start_at"), (SubscriptionUpdate, "event_types")):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({field: None})
        assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_merge_patch_refuses_a_field_the_resource_does_not_have():
    with pytest.raises(KeyError):
        merge_patch({"active": True}, SubscriptionUpdate.model_validate({"start_at": "2026-01-01T00:00:00Z"}))


# --- one filter for search and bulk jobs ------------------------------------------------------


def test_event_filter_stores_what_was_given_and_reads_it_back():
    given = EventFilter.model_validate({"status": "failed", "from": "2026-11-01T00:00:00Z",
                                        "to": "2026-11-02T00:00:00+02:00"})
    stored = given.stored()
    assert stored == {"status": "failed", "from": "2026-11-01T00:00:00+00:00", "to": "2026-11-02T00:00:00+02:00"}
    assert EventFilter.model_validate(stored) == given
    with pytest.raises(ValidationError) as caught:
        EventFilter.model_validate({"from": "0001-01-01T00:00:00Z", "status": "lost", "form": "x"})
    assert sorted(e["loc"] for e in caught.value.errors()) == [("form",), ("from",), ("status",)]


# --- finders against the database --------------------------------------------------------------


@pytest.fixture
async def database(stack):
    database = Database(stack.env["EM_DATABASE_URL"], pool_size=2)
    yield database
    await database.close()


@pytest.fixture
async def two_companies(database):
    """Company `a` with one row of each kind (an event with a failed delivery), and company `b`."""
    a, b = f"cmp_{uuid.uuid4().hex[:10]}", f"cmp_{uuid.uuid4().hex[:10]}"
    ids = {key: f"{key}_{uuid.uuid4().hex[:10]}" for key in ("dc", "sub", "ev", "dlv", "buf", "bulk")}
    now = datetime.now(UTC)
    async with database.transaction() as session:
        session.add_all([Company(id=a, name="a"), Company(id=b, name="b")])
        await session.flush()
        session.add(DeliveryConfiguration(id=ids["dc"], company_id=a, name="crm", mode="realtime", endpoints=[],
                                          authentication={"type": "none"}))
        await session.flush()
        session.add_all([
            Subscription(id=ids["sub"], company_id=a, topic="SCG-Message", event_types=[],
                         delivery_configuration_id=ids["dc"], start_at=now),
            Event(company_id=a, id=ids["ev"], topic="SCG-Message", event_type="message.sent", occurred_at=now,
                  received_at=now, data={}),
            Delivery(id=ids["dlv"], company_id=a, event_id=ids["ev"], subscription_id=ids["sub"],
                     delivery_configuration_id=ids["dc"], status=DeliveryStatus.FAILED.value),
            BufferFile(id=ids["buf"], company_id=a, delivery_configuration_id=ids["dc"], window_end=now,
                       status="empty"),
            BulkAction(id=ids["bulk"], company_id=a, action="handled", filter={}, status="completed"),
        ])
    return a, b, ids


FINDERS = [(delivery_configurations.find, "dc"), (subscriptions.find, "sub"), (events.find, "ev"),
           (buffer_files.find, "buf"), (bulk_actions.find, "bulk")]


async def test_a_finder_finds_the_company_s_row_and_nothing_of_another(database, two_companies):
    a, b, ids = two_companies
    async with database.sessions() as session:
        for find, key in FINDERS:
            assert (await find(session, a, ids[key])).id == ids[key]
            with pytest.raises(NotFound) as foreign:
                await find(session, b, ids[key])
            with pytest.raises(NotFound) as missing:
                await find(session, b, f"{key}_missing")
            # One answer for both: nothing tells another company that the id exists.
            assert foreign.value.detail.replace(ids[key], "?") == missing.value.detail.replace(f"{key}_missing", "?")


async def test_actions_and_searches_never_reach_another_company_s_deliveries(database, two_companies):
    a, b, ids = two_companies
    failed = EventFilter(status=DeliveryStatus.FAILED)
    async with database.transaction() as session:
        for act in (events.republish, events.mark_handled):
            with pytest.raises(NotFound):
                await act(session, b, ids["ev"])
        with pytest.raises(NotFound):
            await events.attempts_of(session, b, ids["ev"])
        assert await events.search(session, b, failed, None, 10) == ([], False)
        assert (await session.scalars(select(Delivery.id).where(*matching_deliveries(b, failed)))).all() == []
        assert await subscriptions.list_all(session, b) == []
        assert await delivery_configurations.list_all(session, b) == []
        assert await bulk_actions.recent(session, b) == []
        assert await buffer_files.page(session, b, None, None, None, 10) == ([], False)
    async with database.sessions() as session:
        assert (await session.get(Delivery, ids["dlv"])).status == DeliveryStatus.FAILED, "untouched"
        found, more = await events.search(session, a, failed, None, 10)
        assert [e.id for e in found] == [ids["ev"]] and not more
