"""pip-audit over uv.lock (every package any install may get: runtime, embedded and dev), run by
`make test` (after the tests) and `make audit`.

The advisories come from PyPI's per-release JSON API (or else OSV). Only where neither can be used
is the audit skipped, loudly, with each reason: a service that cannot be reached (no DNS answer,
connection refused or timed out: an offline machine) or that has no such API (404: a PyPI mirror
without the JSON API, as on the machine this was written on). A service that answers with an error
(a 500, a 403) fails the run: that is not "offline", and skipping would hide it. Where a service
answers, any advisory fails the run unless `.pip-audit-accepted` lists it with the reason it does
not apply, and so does a package that could not be audited (--strict)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
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


class ServiceError(Exception):
    """A vulnerability service answered, with an error: the audit must fail, not be skipped."""


def unusable_because(error: OSError) -> str | None:
    """Why a service cannot be used here (the audit is then skipped), or None when the failure is
    the service's own error. Connection-level failures and a missing API mean unusable; any other
    HTTP answer is an error."""
    if isinstance(error, urllib.error.HTTPError):
        return "no such API here (HTTP 404)" if error.code == 404 else None
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, OSError) else OSError(str(error.reason))
    if isinstance(error, (socket.gaierror, ConnectionError, TimeoutError, socket.timeout)):
        return f"unreachable ({error})"
    return None


def reachable_service() -> tuple[str | None, list[str]]:
    """The first vulnerability service that answers, and why each one before it cannot be used.
    Raises ServiceError when one answers with an error."""
    reasons = []
    for name, (url, body) in SERVICES.items():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as response:
                response.read(1)
            return name, reasons
        except OSError as error:
            reason = unusable_because(error)
            if reason is None:
                raise ServiceError(f"{url}: {error}") from error
            reasons.append(f"{url}: {reason}")
    return None, reasons


SKIPPED = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! pip-audit SKIPPED: NO DEPENDENCY WAS CHECKED FOR KNOWN VULNERABILITIES{where}.
!! No vulnerability service can be used from this machine:
{reasons}
!! Run `make audit` where https://pypi.org/pypi/<name>/<version>/json or https://api.osv.dev
!! answers before releasing.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def main() -> int:
    try:
        service, reasons = reachable_service()
    except ServiceError as error:
        print(f"pip-audit FAILED: a vulnerability service answered with an error: {error}", file=sys.stderr)
        return 1
    if service is None:
        where = " (in CI)" if os.environ.get("CI") else ""
        print(SKIPPED.format(where=where, reasons="\n".join(f"!!   {reason}" for reason in reasons)),
              file=sys.stderr, flush=True)
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
