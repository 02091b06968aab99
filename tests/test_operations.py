"""Every service answers /healthz, /readyz and /metrics."""

from __future__ import annotations

import httpx
import pytest

from shared.devstack import SERVICES
from tests.conftest import eventually
from tests.delivery_helpers import publish


@pytest.mark.parametrize("service", SERVICES)
async def test_health_readiness_and_metrics(stack, service):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports[service]}") as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": service}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert "python_info" in metrics.text


async def test_metrics_count_the_work(stack, tenant, source):
    await publish(source, tenant)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports['dispatcher']}") as client:
        assert "em_dispatcher_attempts_total" in (await client.get("/metrics")).text
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports['matcher']}") as client:

        async def lag_reported():
            text = (await client.get("/metrics")).text
            return "em_matcher_events_total" in text and 'em_consumer_lag{group="em-matcher"' in text

        await eventually(lag_reported, timeout=15)
