"""sqlite3 exceptions -> the vmkit hierarchy, at one boundary.

SQLite's result codes are from "Result and Error Codes"
(https://www.sqlite.org/rescode.html); the primary code is the low byte of an
extended code. ``sqlite3.Error.sqlite_errorcode`` carries it since Python 3.11
(https://docs.python.org/3/library/sqlite3.html#sqlite3.Error.sqlite_errorcode).
"""

from __future__ import annotations

import sqlite3

from vmkit.errors import AuthError, ProviderError, QuotaExceeded, Throttled, VmkitError

__all__ = ["SqliteErrors", "primary_code"]

PROVIDER = "sqlite"

# Another connection holds the lock the call needs, for longer than the busy
# timeout: the SQLite analogue of a throttled API, worth a retry.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
RETRYABLE = frozenset({SQLITE_BUSY, SQLITE_LOCKED})
# The file cannot be written by this user: what a cloud answers with 403.
SQLITE_PERM = 3
SQLITE_READONLY = 8
SQLITE_AUTH = 23
AUTH = frozenset({SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH})
# The disk is full: a capacity the user must act on, not a transient fault.
SQLITE_FULL = 13


def primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc``, None when it is not a SQLite error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(code, int):
        return None
    return code & 0xFF


class SqliteErrors:
    """The :class:`vmkit.retry.ErrorMap` of the sqlite backend."""

    def is_retryable(self, exc: BaseException) -> bool:
        """True when another connection holds the lock ("database is locked")."""
        return primary_code(exc) in RETRYABLE

    def retry_after(self, exc: BaseException) -> float | None:
        """SQLite never says how long to wait: the policy's backoff decides."""
        return None

    def translate(self, exc: BaseException, operation: str) -> VmkitError:
        """The most specific vmkit error for ``exc``; SQLite's message is kept
        (it names no data, only the failure)."""
        code = primary_code(exc)
        message = f"{operation}: {exc}"
        if code in RETRYABLE:
            return Throttled(
                f"{message} (still locked by another connection after every retry)",
                provider=PROVIDER,
                operation=operation,
            )
        if code in AUTH:
            return AuthError(message, provider=PROVIDER, operation=operation)
        if code == SQLITE_FULL:
            return QuotaExceeded(message, provider=PROVIDER, operation=operation)
        return ProviderError(message, provider=PROVIDER, operation=operation)
