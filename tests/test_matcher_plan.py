"""What the matcher makes of a batch, without I/O (services/matcher/plan.py): which messages are
rejected, which rows are inserted and which delivery messages are published."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.matcher.index import Route, SubscriptionIndex
from services.matcher.plan import plan_batch, read_batch
from shared.db import columns
from shared.messages import encode, event_message
from shared.statuses import DeliveryStatus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).isoformat()


def route(subscription_id: str, company_id: str, topic: str = "SCG-Message", realtime: bool = True,
          event_types=None) -> Route:
    return Route(subscription_id, company_id, topic, f"dc_{subscription_id}", realtime,
                 frozenset(event_types) if event_types else None, 0.0, None, None)


def event(event_id: str, company_id: str | None, topic: str = "SCG-Message", event_type: str = "message.sent",
          subject: str | None = None) -> dict:
    return event_message(event_id, topic, event_type, company_id, subject, NOW, NOW, {"n": 1})


@pytest.fixture
def index() -> SubscriptionIndex:
    index = SubscriptionIndex()
    index.replace_company_routes("co_a", [route("sub_rt", "co_a"), route("sub_sched", "co_a", realtime=False),
                                          route("sub_other_type", "co_a", event_types={"message.failed"})])
    index.replace_company_routes("co_b", [route("sub_nis", "co_b", topic="NIS-Events")])
    index.replace_company_routes("co_c", [route("sub_nis_c", "co_c", topic="NIS-Events", event_types={"x"})])
    index.replace_company_numbers("co_b", ["+15550001"])
    index.replace_company_numbers("co_c", ["+15550001"])
    return index


def test_read_batch_rejects_what_is_not_an_event_and_keeps_the_first_copy():
    good = encode(event("e1", "co_a"))
    again = encode(event("e1", "co_a") | {"data": {"n": 2}})
    other_company = encode(event("e1", "co_z"))
    events, rejected = read_batch([b"not json", good, again, encode({"id": "x"}), other_company],
                                  [b"k0", b"k1", b"k2", b"k3", b"k4"])
    assert [(i.event["company_id"], i.event["id"], i.event["data"]) for i in events] == \
        [("co_a", "e1", {"n": 1}), ("co_z", "e1", {"n": 1})]
    assert [(r.key, r.raw) for r in rejected] == [(b"k0", b"not json"), (b"k3", encode({"id": "x"}))]
    assert all(r.reason.startswith("undecodable event message: ") for r in rejected)


@pytest.mark.parametrize(("name", "incoming", "stored", "deliveries", "published"), [
    ("a company event: stored, one delivery per matching route, realtime ones published",
     event("e1", "co_a"), [("co_a", "e1", False)],
     [("co_a", "sub_rt", DeliveryStatus.QUEUED), ("co_a", "sub_sched", DeliveryStatus.BUFFERED)], ["sub_rt"]),
    ("a route limited to event types takes only those",
     event("e2", "co_a", event_type="message.failed"), [("co_a", "e2", False)],
     [("co_a", "sub_rt", DeliveryStatus.QUEUED), ("co_a", "sub_sched", DeliveryStatus.BUFFERED),
      ("co_a", "sub_other_type", DeliveryStatus.QUEUED)], ["sub_rt", "sub_other_type"]),
    ("a company event nothing matches is still stored, with nothing to publish",
     event("e3", "co_a", topic="SCG-Voice"), [("co_a", "e3", True)], [], []),
    ("a broadcast event reaches each company monitoring the subject whose routes match",
     event("e4", None, topic="NIS-Events", event_type="number.verified", subject="+15550001"),
     [("co_b", "e4", False)], [("co_b", "sub_nis", DeliveryStatus.QUEUED)], ["sub_nis"]),
    ("a broadcast event for an unmonitored subject is not stored at all",
     event("e5", None, topic="NIS-Events", subject="+15550002"), [], [], []),
])
def test_plan_batch(index, name, incoming, stored, deliveries, published):
    plan = plan_batch(index, [incoming])
    assert [(row.company_id, row.id, row.fanned_out) for row in plan.events] == stored
    assert [(row.company_id, row.subscription_id, row.status) for row in plan.deliveries] == deliveries
    messages = [m for planned in plan.outgoing.values() for _, m in planned]
    assert [m["event"]["subscription_id"] for m in messages] == published
    by_id = {row.id: row for row in plan.deliveries}
    for message in messages:  # each published message is one of the delivery rows, for its company
        row = by_id[message["delivery_id"]]
        assert (message["company_id"], message["delivery_configuration_id"]) == \
            (row.company_id, row.delivery_configuration_id)
    assert plan.realtime_count == len(published)
    assert plan.scheduled_count == sum(1 for row in plan.deliveries if row.status == DeliveryStatus.BUFFERED)


def test_scheduled_only_event_is_stored_as_fanned_out(index):
    index.replace_company_routes("co_s", [route("sub_s", "co_s", realtime=False)])
    plan = plan_batch(index, [event("e6", "co_s")])
    assert [(row.id, row.fanned_out) for row in plan.events] == [("e6", True)]


def test_columns_transpose_rows_for_unnest():
    assert columns([("a", 1), ("b", 2)], 2) == [["a", "b"], [1, 2]]
    assert columns([], 3) == [[], [], []]
