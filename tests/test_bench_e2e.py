"""The end-to-end benchmark's harness, small: its own whole stack, a few hundred events saturated
and paced at a low rate, the bare pipeline beside them. Every event must arrive, and the results
file and charts must hold the figures `make bench` reports. No timing is asserted: the figures
of a loaded test machine mean nothing, only that they are there."""

from __future__ import annotations

import json

from services.devstack import SERVICES
from tests.bench import report
from tests.bench.e2e import SYSTEM, Plan, end_to_end
from tests.bench.plot import charts

PLAN = Plan(saturated_events=300, rates=(100,), paced_seconds=2, repeats=1)


async def test_every_event_arrives_and_the_results_hold_the_figures(tmp_path):
    figures = await end_to_end(PLAN)

    runs = [*figures["saturated"]["runs"]["whole"], *figures["paced"]["100"]["runs"]["whole"]]
    bare_runs = [*figures["saturated"]["runs"]["bare"], *figures["paced"]["100"]["runs"]["bare"]]
    for run in runs + bare_runs:
        assert run["accepted"] == run["offered"], run
        assert run["arrived"] == run["offered"], run
        assert run["lost"] == 0 and run["duplicates"] == 0, run
    assert all(run["refused"] == {} for run in runs)
    assert [run["offered"] for run in runs] == [300, 200]

    doc = report.document({"end_to_end": figures}, notes="test", wall_seconds=1)
    written = json.loads(report.write(doc, tmp_path).read_text())
    assert set(written["machine"]) >= {"cores", "cpu_model", "python", "git_rev"}
    saturated = written["sections"]["end_to_end"]["saturated"]
    assert saturated["events_per_second"] > 0 and saturated["bare_events_per_second"] > 0
    assert saturated["ratio"] > 0 and saturated["lost"] == 0
    assert set(saturated["cpu_seconds_per_10k"]) == {*SYSTEM, "receiver", "total"}
    assert set(SERVICES) <= set(SYSTEM)
    assert saturated["cpu_seconds_per_10k"]["total"] > 0
    # Where a saturated run's time went: each stage's last event, in pipeline order from the
    # matcher on (the matcher may store an event before ingest's 202 for it reaches the client).
    stages = saturated["stages_s"]
    assert set(stages) == {"accepted", "stored", "sent", "arrived"}, stages
    assert 0 < stages["accepted"] and 0 < stages["stored"] <= stages["sent"] <= stages["arrived"], stages
    assert saturated["busy_cores"] > 0
    paced = written["sections"]["end_to_end"]["paced"]["100"]
    assert set(paced["latency_ms"]) == {"p50", "p99", "max"} == set(paced["bare_latency_ms"])
    assert paced["latency_ms"]["p50"] <= paced["latency_ms"]["p99"] <= paced["latency_ms"]["max"]
    assert [path.name for path in charts(written, tmp_path)] == ["throughput.png", "latency.png"]
