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
