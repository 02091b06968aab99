"""Replay and simulation over a company's retained events.

Both run the matcher's own decision (shared/routes.py: `route_from_row`, `accepting_routes`)
over the events the matcher stored, which for a company-scoped topic are all of them, matched or
not (they show as `unmatched`), until retention purges them. A broadcast event (NIS-Events) is
stored for a company only when it matched one of its subscriptions at the time, so that is the
NIS history there is to replay; its subject must also be among the numbers the company monitors
now, as the matcher requires.

- Simulation (`simulate`): what a subscription with these parameters would have matched in a
  window: counts per event type and per day of arrival, 20 samples, and 20 near misses (events
  of the right type and time failing exactly one clause of the criteria, with its path,
  `shared.criteria.explain_pattern`).
- Replay (`count_replay` for a dry run, `start_replay` + `step` for the job): deliveries for the
  matched events that have none for this subscription yet, as a bulk-action job of kind
  `replay` (services/api/bulk.py runs it, one batch of events per locked step). Realtime
  deliveries are queued for the dispatcher's retry poller, oldest first, and go through the
  configuration's throttle (and are held if it is paused); scheduled ones are buffered for the
  next file. The unique (company, event, subscription) constraint makes a second replay, or a
  replay racing the matcher, create nothing twice.

A window is [from, to) of arrival time. One replay or simulation scans at most
`EM_REPLAY_SCAN_LIMIT` events (the topic's, of the subscription's event types): a larger window
is refused with a 422 at `to` saying where a window of that many events would end."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.replay_schemas import (
    NearMiss,
    ReplayCounts,
    SimulatedEvent,
    SimulationRequest,
    SimulationResult,
)
from services.api.store import bulk_actions, subscriptions
from services.api.store import replay as store
from services.api.store.bulk_actions import BulkActionStatus
from services.api.store.replay import Cursor, Window
from shared.criteria import compile_pattern, explain_pattern
from shared.errors import Conflict, InvalidInput
from shared.ids import new_id
from shared.messages import EARLIEST, delivered_document, iso
from shared.models import BulkAction
from shared.routes import Route, accepting_routes, route_from_row

REPLAY = "replay"
SHOWN = 20  # samples and near misses a simulation answers


def window_bounds(start: datetime | None, end: datetime | None, retention_days: int) -> tuple[datetime, datetime]:
    """[from, to): `to` defaults to now, `from` to the retention period before `to`."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=retention_days)
    if start >= end:
        raise InvalidInput.at(["to"], "to must be after from")
    return start, end


async def _bounded(session: AsyncSession, company_id: str, window: Window, limit: int) -> int:
    count, beyond = await store.count_within(session, company_id, window, limit)
    if beyond is not None:
        raise InvalidInput.at(["to"], (
            f"the window holds more than {limit} events of {window.topic} (EM_REPLAY_SCAN_LIMIT); a window ending at "
            f"{iso(beyond)} holds at most {limit}: set to at or before it and take the rest in further windows"))
    return count


def _event(row, company_id: str) -> dict:
    """A stored event as the matcher saw it on Kafka."""
    return {"id": row.id, "topic": row.topic, "event_type": row.event_type, "company_id": company_id,
            "subject": row.subject, "occurred_at": iso(row.occurred_at), "data": row.data}


def _accepts(route: Route, row, company_id: str) -> bool:
    event = _event(row, company_id)
    return bool(accepting_routes([route], event, company_id, row.event_type, row.occurred_at.timestamp()))


async def _reachable(session: AsyncSession, company_id: str, broadcast: bool, rows: list) -> list:
    """The rows the company may receive: all of a company topic's; a broadcast topic's only for
    the numbers it monitors now."""
    if not broadcast:
        return rows
    monitored = await store.monitored_among(session, company_id, sorted({row.subject for row in rows if row.subject}))
    return [row for row in rows if row.subject in monitored]


async def _accepted(session: AsyncSession, company_id: str, route: Route, broadcast: bool, rows: list) -> list:
    return [row for row in await _reachable(session, company_id, broadcast, rows) if _accepts(route, row, company_id)]


def _route(row: dict) -> Route:
    try:
        return route_from_row(row)
    except Exception as exc:  # a stored pattern over today's limits: the matcher sets it aside too
        raise Conflict(f"this subscription cannot be matched ({type(exc).__name__}: {exc}); change it first") from None


async def _subscription(session: AsyncSession, company_id: str, subscription_id: str,
                        start: datetime, end: datetime) -> tuple[Route, Window, bool, tuple[bool, bool]]:
    row, active, configuration_active = await store.subscription_row(session, company_id, subscription_id)
    window = Window(row["topic"], sorted(row["event_types"] or []), start, end)
    broadcast = await store.is_broadcast(session, company_id, row["topic"])
    return _route(row), window, broadcast, (active, configuration_active)


# --- replay -----------------------------------------------------------------------------------


async def count_replay(session: AsyncSession, company_id: str, subscription_id: str, start: datetime,
                       end: datetime, limit: int) -> ReplayCounts:
    """A dry run: what `start_replay` would create now, creating nothing."""
    route, window, broadcast, _ = await _subscription(session, company_id, subscription_id, start, end)
    await _bounded(session, company_id, window, limit)
    scanned = matched = already = 0
    cursor = None
    while batch := await store.scan(session, company_id, window, cursor):
        cursor = Cursor(batch[-1].received_at, batch[-1].id)
        accepted = await _accepted(session, company_id, route, broadcast, batch)
        scanned, matched = scanned + len(batch), matched + len(accepted)
        already += len(await store.delivered_among(session, company_id, subscription_id, [r.id for r in accepted]))
    return ReplayCounts(dry_run=True, from_=start, to=end, scanned=scanned, matched=matched,
                        already_delivered=already, to_create=matched - already)


async def start_replay(session: AsyncSession, company_id: str, subscription_id: str, start: datetime,
                       end: datetime, limit: int) -> BulkAction:
    """The replay job, running once committed. 409 when nothing could be delivered: the
    subscription or its configuration is inactive (a dry run still counts)."""
    _, window, _, (active, configuration_active) = await _subscription(session, company_id, subscription_id,
                                                                          start, end)
    if not active:
        raise Conflict("the subscription is inactive: activate it to replay (a dry run counts anyway)")
    if not configuration_active:
        raise Conflict("the subscription's delivery configuration is inactive: activate it (or pause it, to hold "
                       "the replayed deliveries) to replay")
    total = await _bounded(session, company_id, window, limit)
    return await bulk_actions.create_replay(session, company_id, subscription_id, start, end, total)


async def step(session: AsyncSession, job: BulkAction) -> bool:
    """One batch of the replay job (locked by the caller); False once it is finished."""
    spec = job.filter
    route, window, broadcast, _ = await _subscription(session, job.company_id, spec["subscription_id"],
                                                      datetime.fromisoformat(spec["from"]),
                                                      datetime.fromisoformat(spec["to"]))
    batch = await store.scan(session, job.company_id, window, Cursor.parse(job.cursor))
    if not batch:
        job.status, job.finished_at = BulkActionStatus.COMPLETED.value, datetime.now(UTC)
        return False
    accepted = await _accepted(session, job.company_id, route, broadcast, batch)
    created = await store.create_deliveries(session, job.company_id, route.subscription_id,
                                            route.delivery_configuration_id, route.realtime,
                                            [new_id("dlv") for _ in accepted], [row.id for row in accepted])
    counts = dict(job.result or {})
    counts["matched"] = counts.get("matched", 0) + len(accepted)
    counts["already_delivered"] = counts.get("already_delivered", 0) + len(accepted) - created
    counts["created"] = counts.get("created", 0) + created
    job.result = counts
    job.processed += len(batch)
    job.cursor = Cursor(batch[-1].received_at, batch[-1].id).stored()
    return True


# --- simulation -------------------------------------------------------------------------------


async def simulate(session: AsyncSession, company_id: str, body: SimulationRequest, start: datetime,
                   end: datetime, limit: int) -> SimulationResult:
    values = body.model_dump(include={"topic", "event_types", "matching_criteria", "start_at", "end_at"})
    await subscriptions.check_matching(session, company_id, values)
    criteria = body.matching_criteria
    route = Route(subscription_id="", company_id=company_id, topic=body.topic, delivery_configuration_id="",
                  realtime=True, event_types=frozenset(body.event_types) or None,
                  start=(body.start_at or EARLIEST).timestamp(),
                  end=body.end_at.timestamp() if body.end_at else None,
                  matches=compile_pattern(criteria) if criteria else None)
    window = Window(body.topic, sorted(set(body.event_types)), start, end)
    await _bounded(session, company_id, window, limit)
    tally = _Tally(route, explain_pattern(criteria) if criteria else None, company_id)
    broadcast = await store.is_broadcast(session, company_id, body.topic)
    cursor = None
    while batch := await store.scan(session, company_id, window, cursor, newest_first=True):
        cursor = Cursor(batch[-1].received_at, batch[-1].id)
        tally.scanned += len(batch)
        for row in await _reachable(session, company_id, broadcast, batch):
            tally.add(row)
    return SimulationResult(from_=start, to=end, scanned=tally.scanned, matched=tally.matched,
                            by_event_type=dict(sorted(tally.by_event_type.items())),
                            by_day=dict(sorted(tally.by_day.items())), samples=tally.samples,
                            near_misses=tally.near_misses)


class _Tally:
    def __init__(self, route: Route, explain, company_id: str) -> None:
        self.route, self.explain, self.company_id = route, explain, company_id
        self.loose = dataclasses.replace(route, matches=None)  # type and time only
        self.scanned = self.matched = 0
        self.by_event_type: dict[str, int] = {}
        self.by_day: dict[str, int] = {}
        self.samples: list[SimulatedEvent] = []
        self.near_misses: list[NearMiss] = []

    def add(self, row) -> None:
        if _accepts(self.route, row, self.company_id):
            self.matched += 1
            self.by_event_type[row.event_type] = self.by_event_type.get(row.event_type, 0) + 1
            day = row.received_at.astimezone(UTC).date().isoformat()
            self.by_day[day] = self.by_day.get(day, 0) + 1
            if len(self.samples) < SHOWN:
                self.samples.append(SimulatedEvent(**_shown(row)))
        elif self.explain is not None and len(self.near_misses) < SHOWN and _accepts(self.loose, row, self.company_id):
            failed = self.explain(delivered_document(_event(row, self.company_id), self.company_id, ""))
            if len(failed) == 1:
                self.near_misses.append(NearMiss(**_shown(row), failed_clause=failed[0]))


def _shown(row) -> dict:
    return {"id": row.id, "event_type": row.event_type, "subject": row.subject, "occurred_at": row.occurred_at,
            "received_at": row.received_at, "data": row.data}
