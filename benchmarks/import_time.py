"""Wall time of ``python -c "import vmkit"`` against ``python -c pass``.

    python benchmarks/import_time.py [--runs 10]

Each command runs ``--runs`` times in a fresh interpreter; the medians are
printed side by side, with the difference (what ``import vmkit`` costs) and
whether any cloud SDK got imported (it must not: backends import theirs when
first connected).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

SDKS = ("boto3", "botocore", "googleapiclient", "google.cloud", "azure", "kubernetes", "moto")
PROBE = (
    "import sys, vmkit; "
    f"print(','.join(m for m in {SDKS!r} if any(k == m or k.startswith(m + '.') "
    "for k in sys.modules)))"
)


def wall(code: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs

    wall("pass", 2)  # warm the OS caches first
    baseline = statistics.median(wall("pass", runs))
    with_vmkit = statistics.median(wall("import vmkit", runs))
    loaded = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True
    ).stdout.strip()

    print(f"median of {runs} runs, {sys.executable}\n")
    print(f"{'command':<30}  {'wall (ms)':>9}")
    print(f"{'-' * 30}  {'-' * 9}")
    rows = [("python -c pass", baseline), ('python -c "import vmkit"', with_vmkit)]
    for label, seconds in rows:
        print(f"{label:<30}  {seconds * 1000:>9.1f}")
    print(f"{'-' * 30}  {'-' * 9}")
    print(f"{'import vmkit costs':<30}  {(with_vmkit - baseline) * 1000:>9.1f}")
    print(f"\ncloud SDKs imported by 'import vmkit': {loaded or 'none'}")


if __name__ == "__main__":
    main()
