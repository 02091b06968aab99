"""Where a benchmark run goes: bench/results/<date>.json (the figures and the machine they were
measured on) and the charts under docs/bench/ that the README shows."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
CHARTS = ROOT / "docs" / "bench"


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "git_rev": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def document(sections: dict, notes: str, wall_seconds: float, machine_info: dict | None = None) -> dict:
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info or machine(),
            "notes": notes, "wall_seconds": round(wall_seconds), "sections": sections}


def write(doc: dict, folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['date'][:10]}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
