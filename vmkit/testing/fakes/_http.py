"""The HTTP plumbing the fakes share: routing, JSON, streaming, faults, counts.

A fake subclasses :class:`FakeServer`, registers handlers with
:meth:`FakeServer.route`, and renders its cloud's error shape in
:meth:`FakeServer.error_response`. Servers bind to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vmkit.testing.faults import FaultPlan

__all__ = [
    "FakeHTTPServer",
    "FakeRequestHandler",
    "FakeServer",
    "HttpError",
    "Request",
    "Response",
    "request_key",
]

log = logging.getLogger(__name__)


class FakeHTTPServer(ThreadingHTTPServer):
    """The standard library's threaded HTTP server with a listen backlog of 128.

    socketserver's default backlog is 5 (``request_queue_size``, Python docs of
    socketserver.BaseServer). A client that opens more connections at once (a
    pool of SDK threads) overflows it: Linux drops the extra SYNs and the
    client sends them again only after its initial retransmission timeout of
    1 s (RFC 6298, 2.1), a stall of the fake rather than of the code under
    test. 128 is the backlog of werkzeug's server, which moto serves with.
    """

    request_queue_size = 128
    daemon_threads = True


class FakeRequestHandler(BaseHTTPRequestHandler):
    """What every fake's request handler shares: keep-alive, no Nagle delay,
    and a way to answer with a connection reset."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the
    # second waits for the client's delayed ACK (~40 ms per answer).
    disable_nagle_algorithm = True

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees a reset.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


@dataclass
class Request:
    """One parsed request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """A query parameter, matched case-insensitively (clients differ)."""
        lowered = name.lower()
        for key, values in self.query.items():
            if key.lower() == lowered and values:
                return values[-1]
        return default

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); 400 when malformed."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, f"malformed JSON body: {exc}") from exc


@dataclass
class Response:
    """What a handler returns. ``stream`` yields chunks sent as they come."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None
    content_type: str = "application/json"


class HttpError(Exception):
    """Raised by a handler to answer an error in the fake's cloud shape."""

    def __init__(self, status: int, message: str, *, reason: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.extra = extra


Handler = Callable[[Request], Response]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with routing and fault injection."""

    def __init__(self, *, faults: FaultPlan | None = None, port: int = 0) -> None:
        self.faults = faults if faults is not None else FaultPlan()
        self.lock = threading.RLock()
        #: requests served, by "METHOD route-name"
        self.requests: Counter[str] = Counter()
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._port = port
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; the server must be started."""
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeServer:
        """Start serving in a daemon thread; returns self."""
        handler = _make_handler(self)
        self._server = FakeHTTPServer(("127.0.0.1", self._port), handler)
        # A short poll keeps stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- routing

    def route(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        """Serve ``method`` on paths matching ``pattern`` (named groups become
        ``request.params``); ``name`` is what ``requests`` counts."""
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), name, handler))

    def error_response(self, error: HttpError) -> Response:
        """Render an error in the cloud's own shape. Fakes override this."""
        return Response(error.status, {"error": {"code": error.status, "message": error.message}})

    def count(self, name: str) -> int:
        """How many requests of route ``name`` were served (any method)."""
        return sum(n for key, n in self.requests.items() if key.split(" ", 1)[1] == name)

    def authorize(self, request: Request) -> None:
        """Refuse unauthenticated requests (HttpError 401). Fakes override this."""

    def dispatch(self, request: Request) -> tuple[str, Response]:
        allowed = False
        for method, pattern, name, handler in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = {k: v for k, v in match.groupdict().items() if v is not None}
            try:
                self.authorize(request)
                return name, handler(request)
            except HttpError as exc:
                return name, self.error_response(exc)
        if allowed:
            return "unknown", self.error_response(HttpError(405, "method not allowed"))
        return "unknown", self.error_response(
            HttpError(404, f"the fake does not serve {request.method} {request.path}")
        )


def request_key(method: str, target: str, body: bytes) -> str:
    """What tells one request from another for faults that fire once per
    request: a retry resends the same method, path, query and body."""
    return f"{method} {target} {hashlib.sha256(body).hexdigest()}"


def _make_handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(FakeRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", type(fake).__name__, format % args)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            decision = fake.faults.decide(
                request.method, request.path, request_key(self.command, self.path, body)
            )
            if decision.latency:
                time.sleep(decision.latency)
            if decision.reset:
                self._reset()
                return
            if decision.status is not None:
                error = HttpError(decision.status, "injected fault")
                response = fake.error_response(error)
                if decision.retry_after is not None:
                    response.headers["Retry-After"] = str(int(decision.retry_after))
                name = "fault"
            else:
                name, response = fake.dispatch(request)
            with fake.lock:
                fake.requests[f"{request.method} {name}"] += 1
            if decision.drop_response:
                self._reset()
                return
            self._write(response)

        def _write(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if response.stream is not None:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in response.stream:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                return
            if response.body is None:
                payload = b""
            elif isinstance(response.body, bytes):
                payload = response.body
            elif isinstance(response.body, str):
                payload = response.body.encode()
            else:
                payload = json.dumps(response.body).encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has headers only (RFC 9110 9.3.2)
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return _Handler
