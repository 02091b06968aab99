"""The README's pictures from a results file: `python -m tests.bench.plot [bench/results/X.json]`
(default: the newest). throughput.png: each stage beside the floor measured in the same run;
latency.png: end-to-end latency percentiles against the offered rate, beside the bare pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.bench.report import CHARTS, RESULTS


def stages(sections: dict) -> list[tuple[str, float, float, str]]:
    """(label, measured, floor, unit) for every stage the results hold."""
    found = []
    bare = sections.get("bare_pipeline", {}).get("events_per_second")
    ingest = sections.get("ingest", {})
    if "single" in ingest:
        found.append(("ingest, one event per request", ingest["single"]["requests_per_second"],
                      ingest["single"]["bare_requests_per_second"], "requests/s"))
    if "batched" in ingest:
        found.append(("ingest, 100 events per request", ingest["batched"]["events_per_second"],
                      ingest["batched"]["bare_events_per_second"], "events/s"))
    if "matcher_service" in sections and bare:  # no HTTP delivery in it: beside the floor, not a ratio of it
        found.append(("matcher service", sections["matcher_service"]["events_per_second"], bare, "events/s, no ratio"))
    if "dispatcher" in sections and bare:
        found.append(("dispatcher alone", sections["dispatcher"]["deliveries_per_second"], bare, "deliveries/s"))
    saturated = sections.get("end_to_end", {}).get("saturated")
    if saturated:
        found.append(("end to end (ingest to receiver)", saturated["events_per_second"],
                      saturated["bare_events_per_second"], "events/s"))
    return found


def charts(doc: dict, folder: Path = CHARTS) -> list[Path]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    subtitle = f"{doc['machine']['cores']} cores, {doc['machine']['cpu_model']}, {doc['date'][:10]}"
    found = stages(doc["sections"])
    if found:
        figure, axes = plt.subplots(figsize=(9, 1.2 + 0.75 * len(found)))
        rows = range(len(found))
        axes.barh([r + 0.2 for r in rows], [f[2] for f in found], height=0.4, color="#bbbbbb",
                  label="floor, same run (bare ingest / bare pipeline)")
        axes.barh([r - 0.2 for r in rows], [f[1] for f in found], height=0.4, color="#2b6cb0", label="Event Manager")
        for r, (_label, measured, floor, unit) in zip(rows, found, strict=True):
            ratio = "" if unit.endswith("no ratio") else f" ({measured / floor:.2f}x)"
            axes.text(measured, r - 0.2, f" {measured:,.0f} {unit.removesuffix(', no ratio')}{ratio}", va="center",
                      fontsize=8)
        axes.set_yticks(list(rows), [f[0] for f in found])
        axes.invert_yaxis()
        axes.set_xscale("log")
        axes.set_xlim(right=max(max(f[1], f[2]) for f in found) * 4)  # room for the labels
        axes.set_xlabel("per second, log scale (best of the runs)")
        axes.set_title(f"Throughput beside the floor\n{subtitle}", fontsize=10)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
        figure.tight_layout()
        written.append(_save(figure, folder / "throughput.png"))
    paced = doc["sections"].get("end_to_end", {}).get("paced")
    if paced:
        figure, axes = plt.subplots(figsize=(7, 4.2))
        rates = sorted(paced, key=float)
        x = [float(rate) for rate in rates]
        for key, colour in (("p50", "#2b6cb0"), ("p99", "#c05621"), ("max", "#9b2c2c")):
            axes.plot(x, [paced[r]["latency_ms"][key] for r in rates], "o-", color=colour, label=f"end to end {key}")
            axes.plot(x, [paced[r]["bare_latency_ms"][key] for r in rates], "o--", color=colour, alpha=0.45,
                      label=f"bare pipeline {key}")
        axes.plot([500, 1000], [100, 250], "k*", markersize=10, label="p99 target")
        axes.set_xticks(x, [f"{rate:g}" for rate in x])
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        shown = [v for r in rates for key in ("latency_ms", "bare_latency_ms") for v in paced[r][key].values()]
        axes.set_yticks([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
                         if min(shown) / 2 <= t <= max(shown) * 2])
        axes.set_xlabel("offered events/s (open loop, batches of 100)")
        axes.set_ylabel("ms from ingest's 202 to arrival (log)")
        axes.set_title(f"Latency against offered rate\n{subtitle}", fontsize=10)
        axes.legend(fontsize=7, ncol=2)
        figure.tight_layout()
        written.append(_save(figure, folder / "latency.png"))
    return written


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else max(RESULTS.glob("*.json"))
    for written in charts(json.loads(path.read_text())):
        print(written)


if __name__ == "__main__":
    main()
