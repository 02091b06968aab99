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

from tests.bench.env import BenchEnv

SECTIONS = ["ingest", "e2e", "baseline", "dispatcher", "matching", "matcher", "scheduler", "reporting"]
COMPONENT_SECTIONS = {"baseline", "dispatcher", "matcher", "scheduler", "reporting"}  # need the shared stack


async def run(sections: list[str]) -> dict:
    results: dict = {}
    env = None
    try:
        if "ingest" in sections:
            from tests.bench.ingest_bench import ingest_alone

            print("ingest alone:", flush=True)
            results["ingest"] = await ingest_alone()
        if "e2e" in sections:
            from tests.bench.e2e import end_to_end

            print("end to end:", flush=True)
            results["end_to_end"] = await end_to_end()
        if COMPONENT_SECTIONS & set(sections):
            env = BenchEnv()
            await asyncio.to_thread(env.start)  # migrations run their own event loop: in a thread
            await components(env, sections, results)
        if "matching" in sections:
            from tests.bench import matching_bench

            results["matching_core"] = matching_bench.matching_core()
            print("matching core:", results["matching_core"], flush=True)
    except Exception:
        import traceback

        traceback.print_exc()
        results["error"] = traceback.format_exc(limit=3)
    finally:
        if env is not None:
            await asyncio.to_thread(env.stop)
    return results


async def components(env: BenchEnv, sections: list[str], results: dict) -> None:
    from tests.bench import baseline, dispatcher_bench

    if "baseline" in sections:
        results["bare_pipeline"] = await baseline.bare_pipeline(env)
        print("bare pipeline:", _brief(results["bare_pipeline"]), flush=True)
    if "dispatcher" in sections:
        alone = await dispatcher_bench.dispatcher_throughput(env)
        results["dispatcher"] = alone
        print("dispatcher:", alone, flush=True)
        results["throttle"] = await dispatcher_bench.throttle_beside_unthrottled(
            env, alone["requests_per_second_at_receiver"])
        print("throttle:", results["throttle"], flush=True)
        env.stack.services.pop("dispatcher").stop()
    if "matcher" in sections:
        from tests.bench import matching_bench

        results["matcher_service"] = await matching_bench.matcher_service(env)
        print("matcher service:", results["matcher_service"], flush=True)
    if "scheduler" in sections:
        from tests.bench import scheduler_bench

        results["scheduler"] = await scheduler_bench.one_million_window(env)
        print("scheduler:", results["scheduler"], flush=True)
    if "reporting" in sections:
        from tests.bench import reporting_bench

        results["reporting"] = await reporting_bench.ten_million_rows(env)
        print("reporting:", results["reporting"], flush=True)


def _brief(figures: dict) -> dict:
    return {key: value for key, value in figures.items() if key != "runs"}


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
    print("\n" + json.dumps(doc, indent=2))
    if not arguments.no_write:
        print("results:", report.write(doc))
        from tests.bench.plot import charts

        for path in charts(doc):
            print("chart:", path)
    print(f"wall time: {doc['wall_seconds']} s")


if __name__ == "__main__":
    main()
