"""Run the benchmarks, print a report, write bench/results/<date>.json and the charts in docs/bench/:
`python -m tests.bench.run [section ...] [--notes TEXT] [--no-write]`.
Sections: ingest e2e baseline dispatcher matching matcher scheduler reporting (default: all).
`ingest` and `e2e` start their own whole stack; the others share one stack and start the
service they measure."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import traceback

from tests.bench.env import BenchEnv

SECTIONS = ["ingest", "e2e", "baseline", "dispatcher", "matching", "matcher", "scheduler", "reporting"]


async def _ingest(env, results):
    from tests.bench.ingest_bench import ingest_alone

    results["ingest"] = await ingest_alone()


async def _e2e(env, results):
    from tests.bench.e2e import end_to_end

    results["end_to_end"] = await end_to_end()


async def _baseline(env, results):
    from tests.bench import baseline

    results["bare_pipeline"] = await baseline.bare_pipeline(env)


async def _dispatcher(env, results):
    from tests.bench import dispatcher_bench

    try:
        results["dispatcher"] = await dispatcher_bench.dispatcher_throughput(env)
        print("dispatcher:", results["dispatcher"], flush=True)
        results["throttle"] = await dispatcher_bench.throttle_beside_unthrottled(
            env, results["dispatcher"]["requests_per_second_at_receiver"])
    finally:
        if "dispatcher" in env.stack.services:
            env.stack.services.pop("dispatcher").stop()


async def _matching(env, results):
    from tests.bench import matching_bench

    results["matching_core"] = matching_bench.matching_core()


async def _matcher(env, results):
    from tests.bench import matching_bench

    results["matcher_service"] = await matching_bench.matcher_service(env)


async def _scheduler(env, results):
    from tests.bench import scheduler_bench

    results["scheduler"] = await scheduler_bench.one_million_window(env)


async def _reporting(env, results):
    from tests.bench import reporting_bench

    results["reporting"] = await reporting_bench.millions_of_rows(env)


# In running order. `ingest` and `e2e` start their own stack; `matching` needs none.
MEASURE = {"ingest": _ingest, "e2e": _e2e, "baseline": _baseline, "dispatcher": _dispatcher,
           "matching": _matching, "matcher": _matcher, "scheduler": _scheduler, "reporting": _reporting}
OWN_STACK = {"ingest", "e2e", "matching"}


async def run(sections: list[str]) -> dict:
    """Every section chosen, each on its own: one that fails is reported and the rest still run."""
    results: dict = {"section_seconds": {}, "errors": {}}
    env = None
    try:
        for name in [name for name in SECTIONS if name in sections]:
            started = time.monotonic()
            print(f"{name}:", flush=True)
            before = set(results)
            try:
                if name not in OWN_STACK and env is None:
                    env = BenchEnv()
                    await asyncio.to_thread(env.start)  # migrations run their own event loop: in a thread
                await MEASURE[name](env, results)
            except Exception:
                traceback.print_exc()
                results["errors"][name] = traceback.format_exc(limit=-3)
            results["section_seconds"][name] = round(time.monotonic() - started)
            for key in set(results) - before:
                print(f"  {key}:", _brief(results[key]), flush=True)
            print(f"  ({results['section_seconds'][name]} s)", flush=True)
    finally:
        if env is not None:
            await asyncio.to_thread(env.stop)
    return results


def _brief(figures):
    """A section's figures without the per-run detail (that goes to the results file)."""
    if not isinstance(figures, dict):
        return figures
    return {key: _brief(value) for key, value in figures.items() if key != "runs"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run")
    parser.add_argument("sections", nargs="*", metavar="section", help=f"any of {' '.join(SECTIONS)} (default: all)")
    parser.add_argument("--notes", default="", help="stored with the results (how busy the machine was, say)")
    parser.add_argument("--no-write", action="store_true", help="print only: no results file, no charts")
    arguments = parser.parse_args()
    unknown = set(arguments.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    from tests.bench import report

    machine = report.machine()  # the load average before the benchmark adds its own
    started = time.time()
    results = asyncio.run(run(arguments.sections or SECTIONS))
    doc = report.document(results, arguments.notes, time.time() - started, machine)
    print("\n" + json.dumps(_brief(doc), indent=2))  # the per-run detail is in the results file
    if not arguments.no_write:
        print("results:", report.write(doc))
        from tests.bench.plot import charts

        for path in charts(doc):
            print("chart:", path)
    print(f"wall time: {doc['wall_seconds']} s")


if __name__ == "__main__":
    main()
