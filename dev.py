#!/usr/bin/env python3
"""Develop vmkit with nothing but python3 (3.11+), pip and git.

    python3 dev.py demo [FILE]     run `vmkit demo` on simulated clouds
    python3 dev.py test [ARGS]     ruff, ruff format, mypy, mkdocs, pytest (ARGS go to pytest)
    python3 dev.py bench [NAMES]   the benchmark suite, benchmarks/run.py (NAMES: some of it)

Each creates ``.venv`` when it is missing and installs the project into it in
editable mode. They reinstall only when pyproject.toml changed or new extras
are needed: ``.venv/vmkit-install.json`` remembers the hash of pyproject.toml
and the extras installed. ``test`` runs its steps in order and stops at the
first that fails, exiting with that step's status; pytest's status 5 (no
tests collected) is a failure too. Only the standard library is used here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "vmkit-install.json"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
DEMO_EXTRAS = ("all", "testing")
TEST_EXTRAS = ("dev", "all")
BENCH_EXTRAS = ("bench",)
PYTEST_NO_TESTS = 5


def _say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def _short(part: str | Path) -> str:
    """A venv tool by its name, a path of the repository relative to it."""
    if isinstance(part, Path):
        if part.parent == BIN:
            return part.name
        if part.is_relative_to(ROOT):
            return str(part.relative_to(ROOT))
    return str(part)


def _run(command: Sequence[str | Path]) -> int:
    """Print the command (venv paths shortened), run it in the repository."""
    shown = [_short(c) for c in command]
    print(f"$ {shlex.join(shown)}", flush=True)
    env = dict(
        os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    env.pop("PYTHONHOME", None)
    return subprocess.run([str(c) for c in command], cwd=ROOT, env=env, check=False).returncode


def _must(command: Sequence[str | Path]) -> None:
    status = _run(command)
    if status != 0:
        _say(f"failed with status {status}")
        sys.exit(status)


def _expand(extras: set[str], table: dict[str, list[str]]) -> set[str]:
    """The extras plus every extra they pull in through ``vmkit[...]``."""
    found: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in found:
            continue
        found.add(extra)
        for requirement in table.get(extra, []):
            match = re.match(r"\s*vmkit\s*\[([^\]]*)\]", requirement)
            if match:
                todo.extend(e.strip() for e in match.group(1).split(",") if e.strip())
    return found


def _read_stamp() -> dict[str, object]:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def ensure_venv(extras: Sequence[str]) -> None:
    """Create .venv if missing; install the project with ``extras`` unless the
    stamp says the same pyproject.toml was installed with them already."""
    import tomllib

    if not (BIN / "python").exists() and not (BIN / "python.exe").exists():
        _must([sys.executable, "-m", "venv", VENV])
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    digest = hashlib.sha256(pyproject).hexdigest()
    table = tomllib.loads(pyproject.decode())["project"].get("optional-dependencies", {})
    wanted = _expand(set(extras), table)
    stamp = _read_stamp()
    installed = set(stamp.get("extras", [])) if isinstance(stamp.get("extras"), list) else set()
    if stamp.get("pyproject") == digest and wanted <= installed:
        return
    # Keep what an earlier run installed (demo then test), in its current version.
    request = sorted(set(extras) | (installed & set(table)))
    _must([BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-e", f".[{','.join(request)}]"])  # fmt: skip
    STAMP.write_text(json.dumps({"pyproject": digest, "extras": sorted(wanted | installed)}))


def ensure_plugin() -> None:
    """Install the example backend (examples/provider-plugin) into .venv: its
    tests reach it through its entry point, as a user's would."""
    source = ROOT / "examples" / "provider-plugin"
    digest = hashlib.sha256((source / "pyproject.toml").read_bytes()).hexdigest()
    stamp = _read_stamp()
    if stamp.get("plugin") == digest:
        return
    _must([BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "--no-deps", "-e", source])  # fmt: skip
    STAMP.write_text(json.dumps({**stamp, "plugin": digest}))


def demo(args: Sequence[str]) -> int:
    """Install what the demo needs and run it."""
    ensure_venv(DEMO_EXTRAS)
    return _run([BIN / "vmkit", "demo", *args])


def test(args: Sequence[str]) -> int:
    """Lint, type-check, build the docs and run the tests, stopping at the first failure."""
    ensure_venv(TEST_EXTRAS)
    ensure_plugin()
    with tempfile.TemporaryDirectory(prefix="vmkit-site-") as site:
        steps: list[list[str | Path]] = [
            [BIN / "ruff", "check", "."],
            [BIN / "ruff", "format", "--check", "."],
            [BIN / "mypy"],
            [BIN / "mkdocs", "build", "--strict", "--quiet", "-d", site],
            # Two workers on CI's two cores; `-n 0` in ARGS runs in one process.
            [BIN / "pytest", "-n", "auto", *args],
        ]
        for step in steps:
            status = _run(step)
            if status == PYTEST_NO_TESTS and step[0] == BIN / "pytest":
                _say("pytest collected no tests: that is a failure")
            if status != 0:
                _say(f"failed with status {status}")
                return status
    _say("all checks passed")
    return 0


def bench(args: Sequence[str]) -> int:
    """Install what the benchmarks compare against (the ``bench`` extra) and run them."""
    ensure_venv(BENCH_EXTRAS)
    return _run([BIN / "python", ROOT / "benchmarks" / "run.py", *args])


COMMANDS = {"demo": demo, "test": test, "bench": bench}


def main(argv: Sequence[str]) -> int:
    # The project says 3.11, but an older python3 may still run this file: say why it stops.
    if sys.version_info < (3, 11):  # noqa: UP036
        _say(f"needs Python 3.11 or later, this is {sys.version.split()[0]}")
        return 2
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
