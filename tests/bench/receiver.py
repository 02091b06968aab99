"""A fast HTTP receiver in its own process: answers 200 and keeps per-path arrival times,
served back at GET /stats. Used by the baseline and by the dispatcher benchmarks alike."""

from __future__ import annotations

import sys
import time
from collections import defaultdict

from aiohttp import web

arrivals: dict[str, list[float]] = defaultdict(list)


async def receive(request: web.Request) -> web.Response:
    await request.read()
    arrivals[request.path].append(time.time())
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({path: times for path, times in arrivals.items()})


async def reset(request: web.Request) -> web.Response:
    arrivals.clear()
    return web.Response(text="ok")


def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
