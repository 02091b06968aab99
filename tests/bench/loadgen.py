"""The load generator, in its own process so its CPU is not the system's:
`python -m tests.bench.loadgen '<json plan>' <output file>` posts events to an ingest URL and
writes one JSON document: every request's first event number, size, send time, answer time and
status. (A file, not stdout: the event loop may leave stdout non-blocking, and a large write to a
full pipe then ends short.)

The plan: url, token, company_id, prefix (event ids are `<prefix>-<n>`), events, batch (events
per request; 1 posts the single-event form), and either `in_flight` (closed loop: that many
requests outstanding, each sent when one is answered; optionally `max_seconds`, after which no
new request is sent) or `rate` (open loop: events per second, each request sent on its schedule
whatever the answers to earlier ones, so a slow system meets the offered rate instead of slowing
the generator down)."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson

TEXT = "x" * 120  # an SMS-sized payload: the same body size as the bare pipeline's


def bodies(plan: dict) -> list[tuple[int, int, bytes]]:
    """(first event number, event count, encoded body) per request, built before the clock starts."""
    def event(n: int) -> dict:
        return {"id": f"{plan['prefix']}-{n}", "topic": "SCG-Message", "event_type": "message.sent",
                "company_id": plan["company_id"], "data": {"text": TEXT, "n": n}}

    batch, requests = plan["batch"], []
    for first in range(0, plan["events"], batch):
        count = min(batch, plan["events"] - first)
        document = event(first) if batch == 1 else {"events": [event(first + i) for i in range(count)]}
        requests.append((first, count, orjson.dumps(document)))
    return requests


async def generate(plan: dict) -> dict:
    requests = bodies(plan)
    headers = {"authorization": f"Bearer {plan['token']}", "content-type": "application/json"}
    records: list[list] = []
    in_flight = plan.get("in_flight") or 256
    connector = aiohttp.TCPConnector(limit=in_flight, limit_per_host=in_flight)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:

        async def post(first: int, count: int, body: bytes) -> None:
            sent = time.time()
            try:
                async with http.post(plan["url"], data=body) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                status = repr(error)
            records.append([first, count, sent, time.time(), status])

        started = time.time()
        if plan.get("rate"):
            latest = await _open_loop(requests, post, plan["rate"])
        else:
            latest = None
            await _closed_loop(requests, post, in_flight, started + plan.get("max_seconds", float("inf")))
    return {"started": started, "finished": time.time(), "latest_send_s": latest, "requests": records}


async def _closed_loop(requests, post, in_flight: int, stop_sending_at: float) -> None:
    """Each worker sends its next request when its previous one is answered, until the requests
    run out or `stop_sending_at` passes (a slow system then bounds the run's time, not its count)."""
    queue = iter(requests)

    async def worker() -> None:
        for first, count, body in queue:
            if time.time() >= stop_sending_at:
                return
            await post(first, count, body)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def _open_loop(requests, post, rate: float) -> float:
    """Send each request at its scheduled time; returns how late the latest send was (s), which
    says whether the generator itself kept the offered rate."""
    tasks, latest = [], 0.0
    start = time.time() + 0.05
    for first, count, body in requests:
        due = start + first / rate
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        latest = max(latest, time.time() - due)
        tasks.append(asyncio.create_task(post(first, count, body)))
    await asyncio.gather(*tasks)
    return round(latest, 4)


def main() -> None:
    plan = orjson.loads(sys.argv[1])
    try:
        import uvloop
    except ImportError:  # the generator stays cheap enough without it
        result = asyncio.run(generate(plan))
    else:
        result = uvloop.run(generate(plan))
    with open(sys.argv[2], "wb") as output:
        output.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
