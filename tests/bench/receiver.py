"""A fast HTTP receiver in its own process: answers 200 and keeps, per path, the arrival time of
every request and the `id` in its JSON body (an event's id: what the end-to-end latency is
measured by). GET /stats: times per path; GET /count: requests per path (or
`?path=&prefix=`: those with an event id so prefixed); GET /arrivals?path=:
[id, time] pairs of one path; POST /reset forgets everything. Used by every benchmark."""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import orjson
from aiohttp import web

arrivals: dict[str, list[float]] = defaultdict(list)
ids: dict[str, list[str | None]] = defaultdict(list)


def _event_id(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document.get("id") if isinstance(document, dict) else None


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    arrivals[request.path].append(time.time())
    ids[request.path].append(_event_id(body))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({path: times for path, times in arrivals.items()})


async def count(request: web.Request) -> web.Response:
    """Requests per path; with `path` and `prefix`, the requests on that path whose event id starts so."""
    if "prefix" in request.query:
        prefix = request.query["prefix"]
        return web.json_response(sum(1 for i in ids.get(request.query["path"], []) if i and i.startswith(prefix)))
    return web.json_response({path: len(times) for path, times in arrivals.items()})


async def arrivals_of(request: web.Request) -> web.Response:
    path = request.query["path"]
    pairs = list(zip(ids.get(path, []), arrivals.get(path, []), strict=True))
    return web.Response(body=orjson.dumps(pairs), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    arrivals.clear()
    ids.clear()
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
