"""A real HTTP receiver on 127.0.0.1 for delivery tests: records every request and answers as
each test scripts it (status sequences, delays, headers)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

from services.devstack import free_port


async def serve(app: web.Application, port: int) -> web.AppRunner:
    """Serve an aiohttp app on 127.0.0.1:port in the test's event loop; cleanup() stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


class ScriptedEndpoint:
    """One endpoint, `POST <url>`, on a free port of 127.0.0.1, answered by the subclass's
    `_answer`: for a test that needs an endpoint to behave in a way a Script cannot say."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/crm"

    async def listen(self) -> None:
        app = web.Application()
        app.router.add_post("/crm", self._answer)
        self.runner = await serve(app, self.port)

    async def _answer(self, request: web.Request) -> web.Response:
        raise NotImplementedError


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float
    method: str = "POST"

    def json(self):
        import orjson

        return orjson.loads(self.body)


@dataclass
class Script:
    statuses: list[int] = field(default_factory=list)  # answered in order, then `default`
    default: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None  # answered instead of "ok" / "nope"


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: dict[str, list[Received]] = defaultdict(list)
        self.scripts: dict[str, Script] = {}
        self._arrived = asyncio.Condition()
        # Requests being answered, and the most at once, per first path segment ("/slow/...").
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak_in_flight: dict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, **options) -> Script:
        self.scripts[path] = Script(**options)
        return self.scripts[path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = await serve(app, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        self.requests[path].append(Received(path, dict(request.headers), body, time.monotonic(), request.method))
        async with self._arrived:
            self._arrived.notify_all()
        script = self.scripts.get(path, Script())
        group = path.split("/")[1]
        self.in_flight[group] += 1
        self.peak_in_flight[group] = max(self.peak_in_flight[group], self.in_flight[group])
        try:
            if script.delay:
                await asyncio.sleep(script.delay)
        finally:
            self.in_flight[group] -= 1
        status = script.statuses.pop(0) if script.statuses else script.default
        body = script.body if script.body is not None else (b"ok" if status < 300 else b"nope")
        return web.Response(status=status, body=body, headers=script.headers)

    async def wait_for(self, path: str, count: int, timeout: float = 20) -> list[Received]:
        async def enough():
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests[path]) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{path}: expected {count} requests within {timeout}s, got {len(self.requests[path])}"
            ) from None
        return self.requests[path]
