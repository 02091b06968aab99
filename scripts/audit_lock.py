"""pip-audit over uv.lock (every package any install may get: runtime, embedded and dev), run by
`make test` and `make audit`.

The advisories come from PyPI's per-release JSON API (or else OSV). Where neither answers (an
offline machine, or a PyPI mirror without that API) the audit is skipped with the reason printed;
where one does, any advisory fails the run unless `.pip-audit-accepted` lists it with the reason it
does not apply, and so does a package that could not be audited (--strict)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ACCEPTED = ROOT / ".pip-audit-accepted"
# What pip-audit asks each service, for a release that exists: a 200 means the service can audit.
SERVICES = {
    "pypi": ("https://pypi.org/pypi/pip/24.0/json", None),
    "osv": ("https://api.osv.dev/v1/query", b'{"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "24.0"}'),
}


def accepted_advisories() -> list[str]:
    """IDs from `.pip-audit-accepted`: one per line, `ID  package  reason` (a line without a reason
    is refused: an accepted advisory must say why)."""
    ids = []
    for number, line in enumerate(ACCEPTED.read_text().splitlines() if ACCEPTED.exists() else [], 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            sys.exit(f"{ACCEPTED.name}:{number}: expected `ID package reason`, got {line!r}")
        ids.append(parts[0])
    return ids


def reachable_service() -> tuple[str | None, list[str]]:
    """The first vulnerability service that answers, and why each one before it did not."""
    reasons = []
    for name, (url, body) in SERVICES.items():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as response:
                response.read(1)
            return name, reasons
        except OSError as error:
            reasons.append(f"{url}: {error}")
    return None, reasons


def main() -> int:
    service, reasons = reachable_service()
    if service is None:
        print("pip-audit SKIPPED: no vulnerability service answers here (" + "; ".join(reasons) + ")", flush=True)
        return 0
    with tempfile.TemporaryDirectory() as directory:
        requirements = Path(directory) / "requirements.txt"
        subprocess.run([str(BIN / "uv"), "export", "--frozen", "--all-extras", "--no-emit-project", "--quiet",
                        "--format", "requirements-txt", "--output-file", str(requirements)], cwd=ROOT, check=True)
        command = [str(BIN / "pip-audit"), "--requirement", str(requirements), "--require-hashes", "--disable-pip",
                   "--strict", "--progress-spinner", "off", "--vulnerability-service", service]
        for advisory in accepted_advisories():
            command += ["--ignore-vuln", advisory]
        print(f"pip-audit over uv.lock ({service}) ...", flush=True)
        return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
