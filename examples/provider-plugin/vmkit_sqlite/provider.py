"""The sqlite backend: machines are rows of a local SQLite file.

See :class:`vmkit.provider.Provider` for the guarantees. What is specific to
this backend is documented on :class:`SqliteProvider`.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from vmkit.errors import ConfigError, NotFound
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import CreateRequest, Provider
from vmkit.spec import Workload
from vmkit_sqlite import translate as tr
from vmkit_sqlite.errors import SqliteErrors

__all__ = ["DEFAULT_PATH", "PATH_ENV", "SqliteProvider"]

log = logging.getLogger(__name__)
T = TypeVar("T")

PATH_ENV = "VMKIT_SQLITE_PATH"
DEFAULT_PATH = Path("~/.local/share/vmkit/sqlite.db")
SCHEMA = resources.files("vmkit_sqlite").joinpath("schema.sql")


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    """The database file: ``path``, else ``$VMKIT_SQLITE_PATH``, else
    ``~/.local/share/vmkit/sqlite.db``. Raises ConfigError for ``:memory:``,
    which no second connection (let alone process) could see."""
    chosen = path if path is not None else os.environ.get(PATH_ENV) or DEFAULT_PATH
    text = os.fspath(chosen)
    if not text or text == ":memory:":
        raise ConfigError(
            f"sqlite: path must name a file that every connection can open, got {text!r}"
        )
    return Path(text).expanduser()


class SqliteProvider(Provider):
    """Machines simulated in a local SQLite file. ``vmkit.connect("sqlite", path=...)``.

    Options: ``path`` (default ``$VMKIT_SQLITE_PATH``, else
    ``~/.local/share/vmkit/sqlite.db``; created on first use), ``boot_delay``
    (seconds a machine stays ``pending`` after a create, start, reboot or
    restore, and ``stopping`` after a stop; default 1), ``busy_timeout``
    (seconds a call waits for another connection's lock before the retry
    policy takes over; default 5), and the shared ``retry_attempts``,
    ``retry_timeout``, ``poll_interval`` (default 0.25 here) and ``timeout``.
    No file is opened on connect.

    What is specific to this backend:

    * Every process that opens the same file sees the same machines: the file
      is the cloud. Each call is one SQLite transaction; those that write
      begin with ``BEGIN IMMEDIATE``, so two processes never interleave a
      read-then-write.
    * The replicas of one deploy are created by ONE ``sqlite:RunMachines``
      request whose ``ClientToken`` is new per deploy call. The key is stored
      with the machines it made, in the same transaction, and a request
      with a known key returns those machines and creates nothing. Keys are
      forgotten when the workload is destroyed.
    * A state is derived from a stored target and the time it is reached, so
      listing never writes. ``options["sqlite"]``: ``size`` (one of
      :data:`vmkit_sqlite.translate.SIZES`, always wins) and ``fail_boot``
      (``true``: the machines fail instead of running, to test how a pipeline
      handles a failed boot).
    * Snapshots are rows; restoring one boots the machine again.
    """

    name = "sqlite"
    kind = "vm"
    errors = SqliteErrors()

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        boot_delay: float = 1.0,
        busy_timeout: float = 5.0,
        retry_attempts: int = 8,
        retry_timeout: float = 120.0,
        poll_interval: float = 0.25,
        timeout: float = 900.0,
    ) -> None:
        super().__init__(
            retry_attempts=retry_attempts,
            retry_timeout=retry_timeout,
            poll_interval=poll_interval,
            timeout=timeout,
        )
        for option, value in (("boot_delay", boot_delay), ("busy_timeout", busy_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"sqlite: {option} must be a number of seconds >= 0")
        self.path = resolve_path(path)
        self.boot_delay = float(boot_delay)
        self.busy_timeout = float(busy_timeout)
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    @property
    def location(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------ the database

    def _open(self) -> sqlite3.Connection:
        """A new connection (one per call: safe across threads and processes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the transactions below are explicit, so a
        # write transaction can start with BEGIN IMMEDIATE.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            with self._schema_lock:
                if not self._schema_ready:
                    # WAL lets readers go on while one process writes; the mode
                    # is stored in the file, so it is set once for every process.
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(SCHEMA.read_text(encoding="utf-8"))
                    _add_snapshot_columns(conn)
                    self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            # A write transaction takes the write lock at BEGIN, before it
            # reads: what it reads cannot change before it commits.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _db(self, operation: str, write: bool, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction under the retry policy; counted in
        ``api_calls``. A transaction that fails is rolled back whole, so a
        retry starts from the same state."""

        def run() -> T:
            with self._transaction(write) as conn:
                return fn(conn)

        return self._call(operation, run)

    def _machines(
        self, conn: sqlite3.Connection, where: str, params: Sequence[Any]
    ) -> builtins.list[Machine]:
        now = time.time()
        rows = conn.execute(f"SELECT * FROM machines WHERE {where}", params).fetchall()
        labels: dict[str, dict[str, str]] = {row["id"]: {} for row in rows}
        if rows:
            marks = ",".join("?" * len(rows))
            for tag in conn.execute(
                f"SELECT machine_id, key, value FROM tags WHERE machine_id IN ({marks})",
                [row["id"] for row in rows],
            ):
                labels[tag["machine_id"]][tag["key"]] = tag["value"]
        return [
            tr.row_to_machine(dict(row), labels[row["id"]], location=self.location, now=now)
            for row in rows
        ]

    def _by_ids(self, conn: sqlite3.Connection, ids: Sequence[str]) -> builtins.list[Machine]:
        """The machines of ``ids`` that exist, in the order of ``ids``."""
        found = {m.id: m for m in self._machines(conn, f"id IN ({','.join('?' * len(ids))})", ids)}
        return [found[i] for i in ids if i in found]

    def _one(self, conn: sqlite3.Connection, machine_id: str) -> Machine:
        found = self._machines(conn, "id = ?", [machine_id])
        if not found:
            raise NotFound(f"no machine {machine_id} in {self.location}", provider=self.name)
        return found[0]

    @staticmethod
    def _console(conn: sqlite3.Connection, machine_id: str, at: float, line: str) -> None:
        conn.execute(
            "INSERT INTO console (machine_id, at, line) VALUES (?, ?, ?)", (machine_id, at, line)
        )

    def _boot(self, conn: sqlite3.Connection, machine: Machine, why: str) -> None:
        """Send ``machine`` towards running: pending for ``boot_delay`` seconds."""
        now = time.time()
        ready = now + self.boot_delay
        conn.execute(
            "UPDATE machines SET target = 'running', ready_at = ? WHERE id = ?", (ready, machine.id)
        )
        self._console(conn, machine.id, now, why)
        self._console(conn, machine.id, ready, f"{machine.name} booted, running {machine.image}")

    # -------------------------------------------------------------- primitives

    def _validate(self, workload: Workload) -> None:
        tr.validate(workload)

    def _list(self, workload: str | None) -> builtins.list[Machine]:
        if workload is None:
            return self._db("sqlite:ListMachines", False, lambda c: self._machines(c, "1", []))
        return self._db(
            "sqlite:ListMachines", False, lambda c: self._machines(c, "workload = ?", [workload])
        )

    def _get(self, machine_id: str) -> Machine:
        return self._db("sqlite:GetMachine", False, lambda c: self._one(c, machine_id))

    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        return [tr.build_create_request(workload, replicas)]

    def _ensure_shared(self, workload: Workload) -> None:
        ports = json.dumps([str(port) for port in workload.ports])

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workloads (name, ports, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET ports = excluded.ports, "
                "updated_at = excluded.updated_at",
                (workload.name, ports, time.time()),
            )

        self._db("sqlite:PutWorkload", True, upsert)

    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        body = dict(request.body)
        return self._db(request.operation, True, lambda c: self._run_machines(c, body))

    def _run_machines(
        self, conn: sqlite3.Connection, body: dict[str, Any]
    ) -> builtins.list[Machine]:
        """The create request, in one write transaction: everything or nothing."""
        token = body["ClientToken"]
        seen = conn.execute(
            "SELECT machine_id FROM create_requests WHERE client_token = ? ORDER BY position",
            (token,),
        ).fetchall()
        if seen:
            log.info("sqlite: request %s was already carried out, returning its machines", token)
            # Machines deleted since are left out: only those that exist are returned.
            return self._by_ids(conn, [row["machine_id"] for row in seen])
        now = time.time()
        ready = now + self.boot_delay
        target = MachineState.FAILED if body["FailBoot"] else MachineState.RUNNING
        taken = [row[0] for row in conn.execute("SELECT private_ip FROM machines")]
        ids: builtins.list[str] = []
        for position, (replica, name) in enumerate(
            zip(body["Replicas"], body["Names"], strict=True)
        ):
            machine_id = tr.new_machine_id()
            address = tr.new_private_ip(taken)
            taken.append(address)
            row = {
                "id": machine_id,
                "name": name,
                "workload": body["Workload"],
                "replica": replica,
                "spec_hash": body["SpecHash"],
                "size": body["Size"],
                "image": body["Image"],
                "private_ip": address,
                "target": target.value,
                "ready_at": ready,
                "created_at": now,
            }
            columns = ", ".join(row)
            conn.execute(
                f"INSERT INTO machines ({columns}) VALUES ({', '.join(':' + c for c in row)})",
                row,
            )
            conn.executemany(
                "INSERT INTO tags (machine_id, key, value) VALUES (?, ?, ?)",
                [(machine_id, key, value) for key, value in body["Labels"].items()],
            )
            conn.execute(
                "INSERT INTO create_requests (client_token, position, machine_id, workload, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (token, position, machine_id, body["Workload"], now),
            )
            self._console(conn, machine_id, now, f"creating {name} ({body['Size']}, {address})")
            if target == MachineState.FAILED:
                self._console(conn, machine_id, ready, f"{name} failed to boot (fail_boot is set)")
            else:
                ports = ", ".join(body["Ports"]) or "no ports"
                self._console(conn, machine_id, ready, f"{name} booted, running {body['Image']}")
                self._console(conn, machine_id, ready, f"{name} listening on {ports}")
            ids.append(machine_id)
        return self._by_ids(conn, ids)

    def _delete(self, machines: Sequence[Machine]) -> None:
        ids = [(m.id,) for m in machines]

        def delete(conn: sqlite3.Connection) -> None:
            # Children first: the tags and console lines belong to the machine alone.
            for table in ("tags", "console"):
                conn.executemany(f"DELETE FROM {table} WHERE machine_id = ?", ids)
            conn.executemany("DELETE FROM machines WHERE id = ?", ids)

        self._db("sqlite:DeleteMachines", True, delete)

    def _delete_shared(self, workload: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM workloads WHERE name = ?", (workload,))
            conn.execute("DELETE FROM create_requests WHERE workload = ?", (workload,))

        self._db("sqlite:DeleteWorkload", True, delete)

    def _logs(self, machine: Machine) -> str:
        def read(conn: sqlite3.Connection) -> str:
            rows = conn.execute(
                "SELECT at, line FROM console WHERE machine_id = ? AND at <= ? ORDER BY at, seq",
                (machine.id, time.time()),
            ).fetchall()
            return "".join(
                f"{datetime.fromtimestamp(row['at'], UTC).isoformat(timespec='milliseconds')} "
                f"{row['line']}\n"
                for row in rows
            )

        return self._db("sqlite:GetConsoleOutput", False, read)

    def _failure_reason(self, machine: Machine) -> str:
        return "failed to boot (options.sqlite.fail_boot is set)"

    def _start(self, machine: Machine) -> None:
        def start(conn: sqlite3.Connection) -> None:
            current = self._one(conn, machine.id)
            if current.state not in (MachineState.RUNNING, MachineState.PENDING):
                self._boot(conn, current, f"starting {current.name}")

        self._db("sqlite:StartMachine", True, start)

    def _stop(self, machine: Machine) -> None:
        def stop(conn: sqlite3.Connection) -> None:
            current = self._one(conn, machine.id)
            if current.state in (MachineState.STOPPED, MachineState.STOPPING):
                return
            now = time.time()
            ready = now + self.boot_delay
            conn.execute(
                "UPDATE machines SET target = 'stopped', ready_at = ? WHERE id = ?",
                (ready, current.id),
            )
            self._console(conn, current.id, now, f"stopping {current.name}")
            self._console(conn, current.id, ready, f"{current.name} stopped")

        self._db("sqlite:StopMachine", True, stop)

    def _reboot(self, machine: Machine) -> None:
        def reboot(conn: sqlite3.Connection) -> None:
            current = self._one(conn, machine.id)
            self._boot(conn, current, f"rebooting {current.name}")

        self._db("sqlite:RebootMachine", True, reboot)

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        def take(conn: sqlite3.Connection) -> Snapshot:
            current = self._one(conn, machine.id)
            now = time.time()
            row = {
                "id": tr.new_snapshot_id(),
                "name": name,
                "workload": current.workload,
                "machine_id": current.id,
                "created_at": now,
                "replica": current.replica,
            }
            conn.execute(
                "INSERT INTO snapshots (id, name, workload, machine_id, created_at, replica) "
                "VALUES (:id, :name, :workload, :machine_id, :created_at, :replica)",
                row,
            )
            self._console(conn, current.id, now, f"snapshot {name} ({row['id']}) taken")
            return tr.row_to_snapshot(row)

        return self._db("sqlite:CreateSnapshot", True, take)

    def _snapshots(self, workload: str | None) -> builtins.list[Snapshot]:
        def read(conn: sqlite3.Connection) -> builtins.list[Snapshot]:
            if workload is None:
                rows = conn.execute("SELECT * FROM snapshots").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM snapshots WHERE workload = ?", (workload,)
                ).fetchall()
            return [tr.row_to_snapshot(dict(row)) for row in rows]

        return self._db("sqlite:ListSnapshots", False, read)

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        def restore(conn: sqlite3.Connection) -> None:
            current = self._one(conn, machine.id)
            found = conn.execute(
                "SELECT name FROM snapshots WHERE id = ?", (snapshot.id,)
            ).fetchone()
            if found is None:
                raise NotFound(f"no snapshot {snapshot.id} in {self.location}", provider=self.name)
            self._boot(
                conn, current, f"restoring the boot disk of {current.name} from {found['name']}"
            )

        self._db("sqlite:RestoreSnapshot", True, restore)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self._db(
            "sqlite:DeleteSnapshot",
            True,
            lambda c: c.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,)),
        )


def _add_snapshot_columns(conn: sqlite3.Connection) -> None:
    """A file made before snapshots recorded their replica gets the column."""
    present = {row["name"] for row in conn.execute("PRAGMA table_info(snapshots)")}
    if "replica" not in present:
        conn.execute("ALTER TABLE snapshots ADD COLUMN replica INTEGER")
