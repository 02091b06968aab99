"""Every function of the services and the shared library stays simple enough to read and test:
cyclomatic complexity (radon's measure) at most 15."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit

REPO = Path(__file__).resolve().parent.parent
MAX_COMPLEXITY = 15


def test_no_function_is_too_complex():
    too_complex = []
    for path in sorted([*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]):
        for block in cc_visit(path.read_text()):
            if block.complexity > MAX_COMPLEXITY:
                too_complex.append(f"{path.relative_to(REPO)}:{block.lineno} {block.name} ({block.complexity})")
    assert too_complex == [], "split these (or move their decisions into pure helpers):\n" + "\n".join(too_complex)


SERVICES = ("api", "ingest", "matcher", "dispatcher", "scheduler")


def test_no_service_imports_another_service():
    """Each service is deployed and scaled on its own; what two of them share lives in shared/."""
    crossing = []
    for service in SERVICES:
        for path in sorted((REPO / "services" / service).glob("**/*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                words = line.split()
                if words[:1] in (["from"], ["import"]) and len(words) > 1 and words[1].startswith("services."):
                    other = words[1].split(".")[1]
                    if other in SERVICES and other != service:
                        crossing.append(f"{path.relative_to(REPO)}:{number} {line.strip()}")
    assert crossing == [], "move what they share to shared/:\n" + "\n".join(crossing)
