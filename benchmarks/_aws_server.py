"""moto behind vmkit's EC2 front, in a process of its own, for the EC2 benchmark.

The client side (vmkit, boto3, Libcloud) and the server side (moto) then run
on separate cores, as over a network, instead of sharing one interpreter
lock. :class:`AwsServer` starts this file as a subprocess and talks to it over
its stdin and stdout, one JSON line each way:

* ``fresh``: a new, empty account (moto reset, the portable images' SSM
  parameters seeded, a new front); answers ``{"url": ...}``;
* ``counts``: the requests the front served since the last ``fresh`` or
  ``counts``, by ``service:Action``; answers ``{"counts": {...}}``.

The front counts by action whatever the wire form: boto3 POSTs a form,
Libcloud sends the same query as a GET (``Action`` in the query string).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# moto 5.2 names its answers' XML namespace after botocore's model metadata
# (moto/core/serialize.py, _serialize_namespace_attribute), without the final
# slash of EC2's own ``http://ec2.amazonaws.com/doc/2016-11-15/``, which
# Libcloud matches exactly (libcloud/compute/drivers/ec2.py, NAMESPACE) and
# finds nothing otherwise. boto3 ignores namespaces; the front restores EC2's.
MOTO_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
EC2_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'


class AwsServer:
    """This file running as a subprocess; ``fresh()`` and ``counts()`` ask it."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise SystemExit(f"the moto server process stopped (status {self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def fresh(self) -> str:
        """A new empty account; the front's URL."""
        return str(self._ask("fresh")["url"])

    def counts(self) -> Counter[str]:
        """Requests served since the last ``fresh()`` or ``counts()``, by action."""
        return Counter(self._ask("counts")["counts"])

    def __enter__(self) -> AwsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=60)


def _serve() -> None:
    """The subprocess: answer ``fresh`` and ``counts`` until stdin closes."""
    from _report import deepen_listen_backlog

    from vmkit.testing.sim import AWS_SIM_ENVIRONMENT

    deepen_listen_backlog()

    # Set before moto is imported: moto.settings reads them once, at import.
    for key, value in AWS_SIM_ENVIRONMENT.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from vmkit.testing.fakes._aws_wire import Answer, Operation, child, child_text, parse, serialize
    from vmkit.testing.fakes.aws import AwsFront
    from vmkit.testing.sim import seed_aws_images

    class CountingFront(AwsFront):
        """The front, counting requests by action whether POSTed or sent as a GET
        query, answering an unpaginated DescribeInstances whole, and naming the
        EC2 namespace as EC2 does."""

        def __init__(self, upstream: str) -> None:
            super().__init__(upstream)
            self.by_action: Counter[str] = Counter()

        def handle(self, operation: Operation) -> Answer:
            if not operation.form:
                query = parse_qs(urlsplit(operation.target).query, keep_blank_values=True)
                if query.get("Action"):
                    operation = dataclasses.replace(
                        operation, action=query["Action"][-1], form=query
                    )
            with self.lock:
                self.by_action[operation.name] += 1
            answer = super().handle(operation)
            if operation.name == "ec2:DescribeInstances" and not (
                {"MaxResults", "NextToken"} & set(operation.form)
            ):
                answer = self._whole(operation, answer)
            if MOTO_NAMESPACE not in answer.body[:200]:
                return answer
            body = answer.body.replace(MOTO_NAMESPACE, EC2_NAMESPACE, 1)
            return Answer(answer.status, answer.headers, body)

        def _whole(self, operation: Operation, first: Answer) -> Answer:
            """Every page moto has for ``operation``, as one answer.

            EC2 answers an unpaginated DescribeInstances (no ``MaxResults``)
            with every match (API_DescribeInstances, EC2 API reference:
            https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html);
            moto pages it by 100 reservations whatever the request
            (moto/ec2/responses/instances.py, describe_instances), which would
            hide instances from a client that does not expect a ``nextToken``.
            """
            root = parse(first)
            token = child_text(root, "nextToken") if root is not None else None
            reservations = child(root, "reservationSet") if root is not None else None
            if root is None or reservations is None or not token:
                return first
            kept = [(k, v) for k, v in operation.headers if k.lower() != "content-type"]
            form_type = ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
            headers = (*kept, form_type)
            post = dataclasses.replace(
                operation,
                method="POST",
                target=urlsplit(operation.target).path or "/",
                headers=headers,
            )
            while token:
                form = [(k, v) for k, vs in operation.form.items() for v in vs]
                page = parse(self.forward(post, urlencode([*form, ("NextToken", token)]).encode()))
                more = child(page, "reservationSet") if page is not None else None
                if page is None or more is None:
                    return first
                reservations.extend(list(more))
                token = child_text(page, "nextToken")
            marker = child(root, "nextToken")
            if marker is not None:
                root.remove(marker)
            return serialize(root, first)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # moto/moto_server/threaded_moto_server.py: werkzeug in a daemon thread,
    # serving this process's moto backends (which seed_aws_images fills).
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    upstream = f"http://{host}:{port}"
    front: CountingFront | None = None
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "fresh":
                if front is not None:
                    front.stop()
                _reset_moto(host, port)
                direct = boto3.client(
                    "ec2", region_name=REGION, endpoint_url=upstream, **CREDENTIALS
                )
                seed_aws_images(direct, REGION)
                front = CountingFront(upstream)
                front.start()
                answer: dict[str, Any] = {"url": front.url}
            elif command == "counts" and front is not None:
                with front.lock:
                    answer = {"counts": dict(front.by_action)}
                    front.by_action.clear()
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        if front is not None:
            front.stop()
        moto.stop()


def _reset_moto(host: str, port: int) -> None:
    # moto's own API: POST /moto-api/reset empties every backend
    # (moto/moto_api/_internal/urls.py, the "/moto-api/reset" route).
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("POST", "/moto-api/reset", b"", {"Content-Length": "0"})
        connection.getresponse().read()
    finally:
        connection.close()


if __name__ == "__main__":
    _serve()
