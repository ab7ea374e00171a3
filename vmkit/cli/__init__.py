"""The ``vmkit`` command line: a thin layer over the library.

Only this package prints. Every error becomes one ``error: ...`` line on
stderr and an exit status by error class (see docs/cli.md): 0 ok,
1 unexpected, 2 usage, 3 SpecError, 4 ConfigError, 5 ProviderError,
6 DeployTimeout. ``--debug`` (or ``VMKIT_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

from vmkit.cli._app import EXIT_CODES, cli, exit_code, main
from vmkit.cli._gc import gc
from vmkit.cli._sim import sim
from vmkit.cli._snapshots import restore, snapshot, snapshots

# Registered here, not in _app.py: the commands' modules build on _app's helpers.
cli.add_command(gc)
cli.add_command(sim)
cli.add_command(snapshot)
cli.add_command(snapshots)
cli.add_command(restore)

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]
