"""vmkit-sqlite: a vmkit backend whose machines live in a local SQLite file.

Installed, it registers itself in the ``vmkit.providers`` entry-point group
as ``sqlite``: ``vmkit.connect("sqlite", path="/tmp/fleet.db")`` or
``vmkit ls --on sqlite -c path=/tmp/fleet.db``. Only the standard library's
sqlite3 is needed.
"""

from __future__ import annotations

from vmkit_sqlite.provider import SqliteProvider

__all__ = ["SqliteProvider"]
