"""One connection's state, and the limits every connection lives under."""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from http import HTTPStatus

from awops.metrics.http._descriptors import DESCRIPTOR_RESERVE
from awops.metrics.http._protocol import (
    HEAD_END,
    ProtocolError,
    Request,
    Response,
    parse_head,
    text_response,
)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may cost the daemon.

    A Prometheus pair, kubelet's probes and an operator's curl need a handful of connections at
    once; 64 leaves ample room while bounding the worst case at about 64 x (16 KiB head + 64 KiB
    body + a TLS session), a few MiB.

    ``request_deadline_seconds`` runs from accept over the TLS handshake, request line, headers
    and body together; ``response_deadline_seconds`` from the answer being ready to its last
    byte sent. Handlers that are not inline run on ``handler_threads`` worker threads; beyond
    ``max_pending_handlers`` requests waiting for or running on them, a request gets 503.
    """

    max_connections: int = 64
    request_deadline_seconds: float = 10.0
    response_deadline_seconds: float = 10.0
    descriptor_reserve: int = DESCRIPTOR_RESERVE
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    handler_threads: int = 4
    max_pending_handlers: int = 32


class State(enum.Enum):
    HANDSHAKE = "handshake"
    READING = "reading"
    HANDLING = "handling"
    WRITING = "writing"
    CLOSED = "closed"


# A connection whose request has not fully arrived: the one evicted first at the cap.
UNFINISHED = (State.HANDSHAKE, State.READING)


class Connection:
    __slots__ = (
        "body_length",
        "client_host",
        "deadline",
        "events",
        "inbox",
        "outbox",
        "request",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket, client_host: str, state: State, deadline: float):
        self.sock = sock
        self.client_host = client_host
        self.state = state
        self.deadline: float | None = deadline
        self.events = 0  # what the selector watches for; 0 = not registered
        self.inbox = bytearray()
        self.outbox = memoryview(b"")
        self.request: Request | None = None
        self.body_length = 0

    def take_request(self, limits: ConnectionLimits) -> Request | Response | None:
        """Parse what has arrived: the complete request, an error to answer, or None while
        more bytes are needed."""
        if self.request is None:
            end = HEAD_END.search(self.inbox)
            head_length = len(self.inbox) if end is None else end.start()
            if head_length > limits.max_head_bytes:
                too_large = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                return text_response(too_large, "request head too large")
            if end is None:
                return None
            try:
                request, body_length = parse_head(bytes(self.inbox[:head_length]), self.client_host)
            except ProtocolError as exc:
                return text_response(exc.status, exc.reason)
            if body_length > limits.max_body_bytes:
                return text_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
            self.request, self.body_length = request, body_length
            del self.inbox[: end.end()]
        if len(self.inbox) < self.body_length:
            return None
        self.inbox.clear()  # the body is read and dropped: no route takes one
        return self.request
