"""Print the reliability table: ``python -m vmkit.testing.reliability``.

Runs every check (or those named with ``--check``) against every built-in
backend (or those named with ``--backend``) and prints one Markdown row per
backend and check, as in docs/reliability.md. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from vmkit.testing.reliability import CHECKS, harnesses, run


def main(argv: Sequence[str] | None = None) -> int:
    known = harnesses()
    parser = argparse.ArgumentParser(prog="python -m vmkit.testing.reliability")
    parser.add_argument("--backend", action="append", choices=sorted(known))
    parser.add_argument("--check", action="append", choices=list(CHECKS))
    args = parser.parse_args(argv)
    backends = args.backend or list(known)
    checks = args.check or list(CHECKS)
    print("| check | backend | result | measured |")
    print("|---|---|---|---|")
    failed = 0
    for check in checks:
        for backend in backends:
            started = time.monotonic()
            (row,) = run(known[backend](), [check])
            took = time.monotonic() - started
            result = "pass" if row.ok else "FAIL: " + "; ".join(row.problems)
            failed += not row.ok
            print(f"| {check} | {backend} | {result} | {row.measured} ({took:.0f} s) |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
