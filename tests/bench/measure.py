"""What every end-to-end figure is made of: arrivals counted at the receiver (never sends), each
event's latency from its acceptance to its arrival, and CPU seconds per process tree read from
/proc (so it works wherever Linux does, whatever the process is)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

TICK = os.sysconf("SC_CLK_TCK")


def _stat_seconds(pid: int, with_reaped_children: bool) -> float:
    """utime + stime (and cutime + cstime: children that exited and were waited for) of one pid."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU a process and all its descendants used so far: PostgreSQL is a postmaster with one
    backend per connection; a backend that ended is counted in the postmaster's reaped children."""
    total = _stat_seconds(pid, with_reaped_children=True)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return total
    for child in children:
        try:
            total += _stat_seconds(child.pid, with_reaped_children=True)
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended between the listing and the read: its parent counts it once reaped
    return total


def cpu_snapshot(processes: dict[str, int], alone: frozenset[str] = frozenset()) -> dict[str, float]:
    """CPU seconds so far of each process tree; of the process only (all its threads) for the
    names in `alone`: the bench process itself, whose children (services, broker, receivers) are
    counted under their own names."""
    return {name: _stat_seconds(pid, with_reaped_children=False) if name in alone else tree_cpu_seconds(pid)
            for name, pid in processes.items()}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, round(fraction * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def arrival_figures(arrivals: list, prefix: str, accepted: dict[int, float], started: float,
                    offered: int) -> dict:
    """From the receiver's (event id, arrival time) pairs: how many of the accepted events arrived,
    how many are lost or came twice, the delivered rate from the first send to the last arrival,
    and the latency from each event's acceptance to its first arrival."""
    first_arrival: dict[int, float] = {}
    duplicates = 0
    marker = prefix + "-"
    for event_id, moment in arrivals:
        if not event_id or not event_id.startswith(marker):
            continue
        n = int(event_id[len(marker):])
        if n in first_arrival:
            duplicates += 1
        else:
            first_arrival[n] = moment
    latencies = sorted((first_arrival[n] - accepted[n]) * 1000 for n in first_arrival if n in accepted)
    last = max(first_arrival.values(), default=started)
    delivered = len(first_arrival)
    return {
        "offered": offered, "accepted": len(accepted), "arrived": delivered,
        "lost": len(set(accepted) - set(first_arrival)), "duplicates": duplicates,
        "seconds": round(last - started, 2),
        "events_per_second": round(delivered / (last - started)) if last > started else 0,
        "latency_ms": {"p50": round(percentile(latencies, 0.50), 1), "p99": round(percentile(latencies, 0.99), 1),
                       "max": round(latencies[-1], 1)} if latencies else None,
    }
