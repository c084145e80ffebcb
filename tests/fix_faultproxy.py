"""A fault-injecting HTTP proxy on loopback in front of moto.

It forwards DynamoDB's JSON requests to moto unchanged, except that it answers the next
``fail_next(n)`` requests (optionally only some operations) with DynamoDB's own throttling
error, exactly as AWS sends it (HTTP 400, ``__type`` ``...#ThrottlingException``), so botocore's
retries and awops' error reporting run for real. ``down = True`` makes it drop every connection
without an answer, like an endpoint that went away mid-flight.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

import pytest

from tests.fix_moto import MotoServer

THROTTLING = "ThrottlingException"
THROUGHPUT_EXCEEDED = "ProvisionedThroughputExceededException"
_MESSAGES = {
    THROTTLING: "Rate of requests exceeds the allowed throughput.",
    THROUGHPUT_EXCEEDED: (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
}
# (status, headers, body) of an HTTP answer.
Reply = tuple[int, list[tuple[str, str]], bytes]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class LoopbackProxy:
    """An HTTP server on loopback in front of ``upstream``: :meth:`answer` decides what each
    request gets back, :meth:`forward` passes it on unchanged."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, headers: Message, body: bytes) -> Reply | None:
        """(status, headers, body) to send back; None drops the connection unanswered."""
        return self.forward(method, path, headers, body)

    def forward(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = proxy.answer(self.command, self.path, self.headers, body)
                if reply is None:
                    self.close_connection = True
                    return
                status, headers, answer = reply
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream: str) -> None:
        self.down = False
        self.requests: list[str] = []  # X-Amz-Target operation of every request seen
        self.faults_sent = 0
        self._remaining = 0
        self._code = THROTTLING
        self._operations: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        super().__init__(upstream)

    def fail_next(
        self, count: int, code: str = THROTTLING, operations: tuple[str, ...] = ()
    ) -> None:
        """Answer the next ``count`` requests (of ``operations``, if given) with ``code``."""
        with self._lock:
            self._remaining = count
            self._code = code
            self._operations = frozenset(operations)

    def _take_fault(self, operation: str) -> str | None:
        with self._lock:
            self.requests.append(operation)
            if self._remaining <= 0:
                return None
            if self._operations and operation not in self._operations:
                return None
            self._remaining -= 1
            self.faults_sent += 1
            return self._code

    def answer(self, method: str, path: str, headers: Message, body: bytes) -> Reply | None:
        if self.down:
            return None
        operation = headers.get("X-Amz-Target", "").rpartition(".")[2]
        code = self._take_fault(operation)
        if code is None:
            return self.forward(method, path, headers, body)
        payload = json.dumps(
            {
                "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                "message": _MESSAGES.get(code, code),
            }
        ).encode()
        return 400, [("Content-Type", "application/x-amz-json-1.0")], payload


@pytest.fixture
def fault_proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    """A proxy in front of this test's (reset) moto; point AWS_DB_HOST at ``fault_proxy.url``."""
    proxy = FaultProxy(moto.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()
