"""A fast HTTP receiver in its own process: answers 200 and keeps, per path, the arrival time of
every request and the `id` in its JSON body (an event's id: what the end-to-end latency is
measured by). GET /stats: times per path; GET /count: requests per path (or
`?path=&prefix=`: those with an event id so prefixed); GET /arrivals?path=[&prefix=]:
[id, time] pairs of one path; POST /reset forgets everything. Used by every benchmark.

Arrivals are also indexed by run: an event id `<run>-<n>` (the load generator's and the bare
pipeline's) is counted under its run as it arrives, so asking for one run's count or arrivals
costs the same however many earlier runs used the path. (Scanning the path instead made the
receiver slower run after run on the end-to-end path, which every whole-pipeline run shares.)"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import orjson
from aiohttp import web

arrivals: dict[str, list[float]] = defaultdict(list)
ids: dict[str, list[str | None]] = defaultdict(list)
by_run: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)  # (path, "<run>-") -> (id, time)


def _event_id(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document.get("id") if isinstance(document, dict) else None


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    moment, event_id = time.time(), _event_id(body)
    arrivals[request.path].append(moment)
    ids[request.path].append(event_id)
    if isinstance(event_id, str) and "-" in event_id:
        by_run[(request.path, event_id.rpartition("-")[0] + "-")].append((event_id, moment))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({path: times for path, times in arrivals.items()})


async def count(request: web.Request) -> web.Response:
    """Requests per path; with `path` and `prefix`, the requests on that path whose event id starts so."""
    if "prefix" in request.query:
        return web.json_response(len(_pairs(request.query["path"], request.query["prefix"])))
    return web.json_response({path: len(times) for path, times in arrivals.items()})


async def arrivals_of(request: web.Request) -> web.Response:
    pairs = _pairs(request.query["path"], request.query.get("prefix", ""))
    return web.Response(body=orjson.dumps(pairs), content_type="application/json")


def _pairs(path: str, prefix: str) -> list[tuple[str | None, float]]:
    """The (id, time) pairs of `path` whose event id starts with `prefix`; a prefix ending in "-"
    names a run, read from the index (empty until its first arrival)."""
    if prefix.endswith("-"):
        return by_run.get((path, prefix), [])
    return [(i, t) for i, t in zip(ids.get(path, []), arrivals.get(path, []), strict=True)
            if not prefix or (i and i.startswith(prefix))]


async def reset(request: web.Request) -> web.Response:
    arrivals.clear()
    ids.clear()
    by_run.clear()
    return web.Response(text="ok")


def main(port: int) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count)
    app.router.add_get("/arrivals", arrivals_of)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
