"""What schema validation adds to ingest, in process (one core): `_validate` (pydantic, catalog
checks, and the event type's compiled validator) per event, for a batch of 100 and a single
event, with the topic's validation off, enforced (valid data) and warning (violating data), on
the seeded SCG-Message message.delivered schema.

    .venv/bin/python -m tests.bench.contracts_bench
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path
from types import SimpleNamespace

from services.ingest.app import Catalog, _validate
from shared.contracts import compile_schema

REPO = Path(__file__).resolve().parents[2]
TOPIC, EVENT_TYPE, COMPANY = "SCG-Message", "message.delivered", "cmp_bench"


def _seeded() -> tuple[dict, dict]:
    path = REPO / "shared/migrations/versions/0012_event_contracts.py"
    spec = importlib.util.spec_from_file_location("contracts_0012", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CONTRACTS[(TOPIC, EVENT_TYPE)]


def _catalog(mode: str, schema: dict) -> Catalog:
    catalog = Catalog(db=None)
    catalog.loaded_at = float("inf")
    catalog.topics = {TOPIC: SimpleNamespace(name=TOPIC, broadcast=False, validation_mode=mode)}
    catalog.event_types = {TOPIC: {EVENT_TYPE}}
    catalog.companies = {COMPANY}
    catalog.validators.refresh({(TOPIC, EVENT_TYPE): schema})
    return catalog


async def _per_event(catalog: Catalog, events: list[dict], batched: bool, trials: int = 7) -> float:
    """The best of a few half-second trials of CPU time: a shared, busy machine only ever adds time."""
    source = SimpleNamespace(topics=[TOPIC])
    best = float("inf")
    for _ in range(trials):
        rounds, started = 0, time.process_time()
        while time.process_time() - started < 0.5:
            await _validate(events, batched, source, catalog)
            rounds += 1
        best = min(best, (time.process_time() - started) / (rounds * len(events)) * 1e6)
    return best


async def main() -> dict:
    schema, example = _seeded()
    event = {"id": "msg-8812-delivered", "topic": TOPIC, "event_type": EVENT_TYPE, "company_id": COMPANY,
             "subject": "+14155550100", "data": example}
    violating = {**event, "data": {**example, "to": "not a number", "segments": 0}}
    results = {}
    for mode, sample, label in (("off", event, "off"), ("enforce", event, "enforce, valid data"),
                                ("warn", violating, "warn, violating data (2 violations)")):
        catalog = _catalog(mode, schema)
        results[f"{label}: batch of 100, µs/event"] = await _per_event(catalog, [sample] * 100, True)
        results[f"{label}: single, µs/event"] = await _per_event(catalog, [sample], False)
    validator = compile_schema(schema)
    best = float("inf")
    for _ in range(7):
        rounds, started = 50_000, time.process_time()
        for _ in range(rounds):
            validator.is_valid(example)
        best = min(best, (time.process_time() - started) / rounds * 1e6)
    results["validator alone (is_valid), µs/event"] = best
    started = time.process_time()
    for _ in range(20):
        compile_schema(schema)
    results["compiling the schema, µs (once per schema version)"] = (time.process_time() - started) / 20 * 1e6
    return results


if __name__ == "__main__":
    for name, value in asyncio.run(main()).items():
        print(f"{name:55} {value:8.2f}")
