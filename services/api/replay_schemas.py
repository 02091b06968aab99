"""Request and response bodies of replay (`POST /v1/subscriptions/{id}/replay`) and simulation
(`POST /v1/subscriptions/simulate`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas import Name
from shared.validation import Moment

_FROM = Field(None, alias="from", description="events received at or after this time; default: the retention "
                                               "period before `to`")
_TO = Field(None, description="events received before this time; default: now")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "dry_run": True},
        {"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"},
    ]})

    from_: Moment | None = _FROM
    to: Moment | None = _TO
    dry_run: bool = Field(False, description="only count: nothing is created")


class ReplayCounts(BaseModel):
    """What a replay of the window would do (`dry_run: true`)."""

    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [{
        "dry_run": True, "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "scanned": 1250,
        "matched": 310, "already_delivered": 290, "to_create": 20}]})

    dry_run: bool = True
    from_: datetime = Field(alias="from")
    to: datetime
    scanned: int = Field(description="retained events of the subscription's topic (and event types) in the window")
    matched: int = Field(description="of those, the events the subscription matches")
    already_delivered: int = Field(description="matched events that already have a delivery for this subscription")
    to_create: int = Field(description="deliveries a replay would create: matched minus already delivered")


class ReplayJob(BaseModel):
    """A replay running as a bulk-action job (`GET /v1/bulk-actions/{id}` for its progress)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "bulk_01J...", "action": "replay",
        "filter": {"subscription_id": "sub_01J...", "from": "2026-11-01T00:00:00+00:00",
                   "to": "2026-11-08T00:00:00+00:00"},
        "status": "running", "total": 1250, "processed": 0,
        "result": {"matched": 0, "already_delivered": 0, "created": 0},
        "created_at": "2026-11-08T10:00:00Z", "finished_at": None}]})

    id: str
    action: str
    filter: dict
    status: str
    total: int = Field(description="retained events the replay scans")
    processed: int = Field(description="events scanned so far")
    result: dict[str, int] | None = Field(description="matched, already_delivered and created so far")
    created_at: datetime
    finished_at: datetime | None


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "topic": "SCG-Message", "event_types": ["message.received"],
        "matching_criteria": {"data": {"keyword": [{"equals-ignore-case": "stop"}], "carrier": ["ACME"]}},
        "start_at": "2026-01-01T00:00:00Z", "end_at": None,
        "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"}]})

    topic: Name
    event_types: list[str] = []
    matching_criteria: dict[str, Any] | None = None
    start_at: Moment | None = Field(None, description="the subscription's window start (by `occurred_at`); "
                                                      "default: no lower bound")
    end_at: Moment | None = None
    from_: Moment | None = _FROM
    to: Moment | None = _TO


class SimulatedEvent(BaseModel):
    id: str
    event_type: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]


class NearMiss(SimulatedEvent):
    failed_clause: list[str | int] = Field(description="the path of the one criteria clause the event fails")


class SimulationResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [{
        "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "scanned": 1250, "matched": 2,
        "by_event_type": {"message.received": 2}, "by_day": {"2026-11-03": 1, "2026-11-05": 1},
        "samples": [{"id": "ev-1", "event_type": "message.received", "subject": "+14155550100",
                     "occurred_at": "2026-11-03T09:12:00Z", "received_at": "2026-11-03T09:12:01Z",
                     "data": {"keyword": "Stop", "carrier": "ACME"}}],
        "near_misses": [{"id": "ev-2", "event_type": "message.received", "subject": "+14155550101",
                         "occurred_at": "2026-11-04T10:00:00Z", "received_at": "2026-11-04T10:00:00Z",
                         "data": {"keyword": "STOP", "carrier": "Other"}, "failed_clause": ["data", "carrier"]}]}]})

    from_: datetime = Field(alias="from")
    to: datetime
    scanned: int = Field(description="retained events of the topic (and event types) in the window")
    matched: int = Field(description="events a subscription with these parameters would have matched")
    by_event_type: dict[str, int]
    by_day: dict[str, int] = Field(description="matches per day of arrival (UTC, YYYY-MM-DD)")
    samples: list[SimulatedEvent] = Field(description="up to 20 matches, newest first")
    near_misses: list[NearMiss] = Field(description="up to 20 events, newest first, of the right type and time "
                                                    "that fail exactly one clause of the matching criteria")
