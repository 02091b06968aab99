"""Run the benchmarks and print a report: `python -m tests.bench.run [section ...]`.
Sections: baseline dispatcher matching matcher scheduler reporting (default: all)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tests.bench.env import BenchEnv

SECTIONS = ["baseline", "dispatcher", "matching", "matcher", "scheduler", "reporting"]


async def run(env: BenchEnv, sections: list[str]) -> dict:
    from tests.bench import baseline, dispatcher_bench

    results: dict = {}
    try:
        if "baseline" in sections:
            results["bare_pipeline"] = await baseline.bare_pipeline(env)
            print("bare pipeline:", results["bare_pipeline"], flush=True)
        if "dispatcher" in sections:
            alone = await dispatcher_bench.dispatcher_throughput(env)
            results["dispatcher"] = alone
            print("dispatcher:", alone, flush=True)
            results["throttle"] = await dispatcher_bench.throttle_beside_unthrottled(
                env, alone["requests_per_second_at_receiver"])
            print("throttle:", results["throttle"], flush=True)
            env.stack.services.pop("dispatcher").stop()
        if "matching" in sections:
            from tests.bench import matching_bench

            results["matching_core"] = matching_bench.matching_core()
            print("matching core:", results["matching_core"], flush=True)
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
    except Exception:
        import traceback

        traceback.print_exc()
    return results


def main() -> None:
    sections = sys.argv[1:] or SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    started = time.time()
    env = BenchEnv()
    env.start()  # migrations run their own event loop: before ours
    try:
        results = asyncio.run(run(env, sections))
    finally:
        env.stop()
    results["wall_seconds"] = round(time.time() - started)
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
