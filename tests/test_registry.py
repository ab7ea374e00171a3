"""Finding backends through entry points, with clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from memory_provider import MemoryProvider

import vmkit
from vmkit import registry


def test_builtin_backends_come_from_entry_points() -> None:
    assert "aws" in registry.available()


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(vmkit.ConfigError, match=r"unknown provider 'nope'.*aws"):
        vmkit.connect("nope")


def test_unknown_options_are_refused_with_the_accepted_ones() -> None:
    registry.register("memory", MemoryProvider)
    provider = vmkit.connect("memory", poll_interval=0.5)
    assert provider.poll_interval == 0.5
    registry.register("strict", StrictProvider)
    with pytest.raises(vmkit.ConfigError, match=r"unknown option\(s\) regoin; accepted: region"):
        vmkit.connect("strict", regoin="x")


class StrictProvider(MemoryProvider):
    def __init__(self, region: str = "x") -> None:
        super().__init__()


def test_registering_a_non_provider_is_refused() -> None:
    with pytest.raises(vmkit.ConfigError, match=r"not a vmkit\.Provider"):
        registry.register("bad", dict)  # type: ignore[arg-type]


def _plugin(tmp_path: Path, dist: str, target: str, module_source: str) -> Path:
    """A minimal installed distribution with a vmkit.providers entry point."""
    site = tmp_path / "site"
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[vmkit.providers]\nplug = {target}\n")
    (site / "plugmod.py").write_text(textwrap.dedent(module_source))
    return site


def _connect_in(site: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, vmkit\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "try:\n    vmkit.connect('plug')\n"
        "except vmkit.ConfigError as e:\n    print(e)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_a_plugin_whose_sdk_is_missing_gives_the_install_hint(tmp_path: Path) -> None:
    site = _plugin(tmp_path, "vmkit_plug", "plugmod:Plug", "import not_installed_sdk_xyz\n")
    out = _connect_in(site).stdout
    assert "needs not_installed_sdk_xyz" in out
    assert 'pip install --upgrade "vmkit_plug"' in out


def test_a_plugin_that_is_not_a_provider_is_refused(tmp_path: Path) -> None:
    site = _plugin(tmp_path, "vmkit_plug2", "plugmod:Plug", "Plug = 42\n")
    assert "is not a vmkit.Provider subclass" in _connect_in(site).stdout


# ------------------------------------------------------- the entry-point scan

_PROVIDER_MODULE = "from memory_provider import MemoryProvider as Plug\n"
_TESTS = str(Path(__file__).resolve().parent)


def _run(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter that finds tests/memory_provider.py;
    its printed lines."""
    prelude = f"import sys\nsys.path.insert(0, {_TESTS!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_installed_backends_are_read_once_per_process(tmp_path: Path) -> None:
    # What the scan costs is opening every distribution's entry_points.txt: an
    # audit hook counts those opens (Python's "open" audit event).
    site = _plugin(tmp_path, "vmkit_plug", "plugmod:Plug", _PROVIDER_MODULE)
    lines = _run(
        f"""
        import threading
        reads = []
        def hook(event, args):
            if event == "open" and str(args[0]).endswith("entry_points.txt"):
                reads.append(args[0])
        sys.addaudithook(hook)
        sys.path.insert(0, {str(site)!r})
        import vmkit
        vmkit.Workload(name="w")  # pydantic's own plugin scan, out of the way
        vmkit.connect("plug")
        print(len(reads))
        vmkit.connect("plug")
        threads = [threading.Thread(target=vmkit.connect, args=("plug",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(reads))
        print(",".join(vmkit.available()))
        """
    )
    first, after = int(lines[0]), int(lines[1])
    assert first > 0, "the first connect reads the installed distributions"
    assert after == first, "later connects, concurrent ones too, read nothing again"
    assert {"plug", "aws"} <= set(lines[2].split(","))


def test_a_backend_installed_while_the_process_runs_is_found(tmp_path: Path) -> None:
    site = _plugin(tmp_path, "vmkit_plug", "plugmod:Plug", _PROVIDER_MODULE)
    late = site / "vmkit_late-1.0.dist-info"
    lines = _run(
        f"""
        from pathlib import Path
        sys.path.insert(0, {str(site)!r})
        import vmkit
        from vmkit import registry
        vmkit.connect("plug")
        late = Path({str(late)!r})
        late.mkdir()
        (late / "METADATA").write_text("Metadata-Version: 2.1\\nName: vmkit_late\\nVersion: 1.0\\n")
        (late / "entry_points.txt").write_text("[vmkit.providers]\\nlate = plugmod:Plug\\n")
        print("late" in vmkit.available())
        print(type(vmkit.connect("late")).__name__)
        (late / "entry_points.txt").write_text("[vmkit.providers]\\nlater = plugmod:Plug\\n")
        print("later" in vmkit.available())
        print("later" in registry.rescan(), "late" in registry.available())
        """
    )
    assert lines == [
        "False",  # available() answers from the last scan...
        "MemoryProvider",  # ...but connecting to a name it lacks scans again
        "False",
        "True False",  # rescan() reads what is installed now
    ]
