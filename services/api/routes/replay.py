"""Replay a subscription over retained events, and simulate one before saving it
(services/api/replay.py does the work)."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.api import replay
from services.api.deps import Bulk, Reader, SessionDep, SettingsDep
from services.api.replay_schemas import ReplayCounts, ReplayJob, ReplayRequest, SimulationRequest, SimulationResult
from shared.errors import TooManyRequests

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

# A simulation or dry run scans up to EM_REPLAY_SCAN_LIMIT events inline (seconds of CPU on this
# replica's event loop): one at a time per company, so no company can queue many of them.
_scanning: set[str] = set()
BUSY = {429: {"description": "A simulation or dry run of this company is already running on this replica; "
                             "retry after `Retry-After` seconds"}}


@contextlib.contextmanager
def one_scan_per_company(company_id: str):
    if company_id in _scanning:
        raise TooManyRequests("a simulation or dry run is already running for this company; retry when it ends",
                              headers={"Retry-After": "5"})
    _scanning.add(company_id)
    try:
        yield
    finally:
        _scanning.discard(company_id)

WINDOW = ("The window is [`from`, `to`) of the events' arrival time (`received_at`, as in `GET /v1/events`); `to` "
          "defaults to now and `from` to the retention period (`EM_RETENTION_DAYS`) before it. At most "
          "`EM_REPLAY_SCAN_LIMIT` (100,000) events of the topic and event types are scanned: a larger window is a 422 "
          "at `to` saying where a window of that many events would end.")


@router.post(
    "/simulate", response_model=SimulationResult, summary="Simulate a subscription over retained events",
    responses=BUSY,
    description="Before saving a subscription: how many of the company's retained events a subscription with "
                "these parameters (`topic`, `event_types`, `matching_criteria`, `start_at`, `end_at`, checked as on "
                "creation: a 422 names the bad field) would have matched, per event type and per day of arrival, "
                "with up to 20 sample matches and up to 20 near misses: events of the right type and time that fail "
                "exactly one clause of the criteria, with that clause's path (`[\"data\", \"carrier\"]`; an `$or` "
                "is one clause). Matching is the matcher's own. Company events are retained matched or not; a "
                "NIS-Events event is retained for the company only if it matched one of its subscriptions, and "
                "counts only while the company monitors its number. " + WINDOW)
async def simulate(body: SimulationRequest, session: SessionDep, caller: Reader, settings: SettingsDep):
    start, end = replay.window_bounds(body.from_, body.to, settings.retention_days)
    with one_scan_per_company(caller.company_id):
        return await replay.simulate(session, caller.company_id, body, start, end, settings.replay_scan_limit)


@router.post(
    "/{subscription_id}/replay", status_code=202, response_model=ReplayJob,
    summary="Replay a subscription over retained events",
    responses={**BUSY, 200: {"model": ReplayCounts, "description": "`dry_run: true`: the counts, nothing created"},
               202: {"description": "The replay job, running: poll `GET /v1/bulk-actions/{id}`"}},
    description="Runs this subscription's matching (topic, event types, criteria, window, and for NIS-Events the "
                "numbers monitored now) over the company's retained events and creates a delivery for each match "
                "that has none for this subscription yet, so running it twice creates nothing twice. `dry_run: "
                "true` answers 200 with the counts (scanned, matched, already delivered, to create) and creates "
                "nothing. Otherwise it answers 202 with a bulk-action job of kind `replay`: `total` events to scan, "
                "`processed` so far, and `result` with matched, already_delivered and created. Realtime deliveries "
                "are queued oldest first and pass the configuration's throttle like any delivery (a paused "
                "configuration holds them); a scheduled configuration gets them in its next file. An inactive "
                "subscription or configuration is a 409 (a dry run still counts). " + WINDOW)
async def replay_subscription(subscription_id: str, body: ReplayRequest, request: Request, session: SessionDep,
                              caller: Bulk, settings: SettingsDep):
    start, end = replay.window_bounds(body.from_, body.to, settings.retention_days)
    if body.dry_run:
        with one_scan_per_company(caller.company_id):
            counts = await replay.count_replay(session, caller.company_id, subscription_id, start, end,
                                               settings.replay_scan_limit)
        return JSONResponse(counts.model_dump(mode="json", by_alias=True), status_code=200)
    job = await replay.start_replay(session, caller.company_id, subscription_id, start, end,
                                    settings.replay_scan_limit)
    await session.commit()
    request.app.state.start_bulk_job(job.id)
    return job
