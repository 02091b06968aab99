"""The bare ingest, the floor ingest is judged against: an aiohttp server in its own process that
parses the body, produces each event with the project's producer settings (acks=all) and answers
202 once the broker acknowledged them. No authentication, validation, database or idempotency.
`python -m tests.bench.bare_ingest <port> <bootstrap> <topic>`."""

from __future__ import annotations

import asyncio
import sys

import orjson
from aiohttp import web

from shared.kafka import make_producer
from shared.settings import Settings


async def publish(request: web.Request) -> web.Response:
    document = orjson.loads(await request.read())
    events = document["events"] if "events" in document else [document]
    producer, topic = request.app["producer"], request.app["topic"]
    sending = [await producer.send(topic, orjson.dumps(event), key=event["company_id"].encode())
               for event in events]
    await asyncio.gather(*sending)
    return web.Response(status=202, body=orjson.dumps({"accepted": [event["id"] for event in events]}),
                        content_type="application/json")


def main(port: int, bootstrap: str, topic: str) -> None:
    async def producer_context(app: web.Application):
        app["producer"] = make_producer(Settings(kafka_bootstrap=bootstrap))
        await app["producer"].start()
        yield
        await app["producer"].stop()

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app["topic"] = topic
    app.cleanup_ctx.append(producer_context)
    app.router.add_post("/v1/events", publish)
    try:
        import uvloop
    except ImportError:
        pass
    else:  # ingest runs on uvicorn, which takes uvloop when it is installed: the same here
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
