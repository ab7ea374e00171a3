"""Issue 6's seven reliability checks, against every built-in backend's fake.

The checks live in vmkit.testing.reliability; ``python -m
vmkit.testing.reliability`` runs the same functions and prints the table of
docs/reliability.md. A row that fails lists every broken promise.
"""

from __future__ import annotations

import pytest

from vmkit.testing.reliability import CHECKS, harnesses, run

BACKENDS = ["aws", "gcp", "azure", "kubernetes"]


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_reliability(backend: str, check: str) -> None:
    (row,) = run(harnesses()[backend](), [check])
    assert row.ok, f"{row.measured}: " + "; ".join(row.problems)
