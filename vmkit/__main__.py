"""``python -m vmkit``: the same as the ``vmkit`` command."""

from __future__ import annotations

from vmkit.cli import main

if __name__ == "__main__":
    main()
