"""Just enough HTTP/1.1 for probes and scrapes: one request per connection, then close.

Every answer carries ``Connection: close``; Prometheus, kubelet and curl all accept that, and
no idle keep-alive connection ever holds one of the server's few connection slots.
"""

from __future__ import annotations

import http.client
import io
import re
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from urllib.parse import urlsplit

# The blank line that ends a request's head; bare LF is tolerated as http.server does.
HEAD_END = re.compile(rb"\r?\n\r?\n")
_METHOD = re.compile(r"[A-Z]{1,16}")


class ProtocolError(Exception):
    """The request cannot be served; ``status`` is the answer to send before closing."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Message
    client_host: str

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, include_body: bool = True) -> bytes:
        """The bytes on the wire; ``include_body=False`` for a HEAD request."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {self.status} {phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + self.body if include_body else head


def text_response(
    status: HTTPStatus, text: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(int(status), "text/plain; charset=utf-8", f"{text}\n".encode(), headers)


def parse_head(head: bytes, client_host: str) -> tuple[Request, int]:
    """Parse a request line and headers (without the blank line); returns the request and
    the length of the body that follows. Raises :class:`ProtocolError`."""
    line, _, fields = head.partition(b"\n")
    parts = line.rstrip(b"\r").decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, _version = parts
    if not _METHOD.fullmatch(method):
        raise ProtocolError(HTTPStatus.BAD_REQUEST, "malformed method")
    try:
        headers = http.client.parse_headers(io.BytesIO(fields + b"\r\n\r\n"))
    except http.client.HTTPException:
        raise ProtocolError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers"
        ) from None
    if headers.get("Transfer-Encoding") is not None:
        raise ProtocolError(HTTPStatus.NOT_IMPLEMENTED, "chunked request bodies are not supported")
    length_header = headers.get("Content-Length", "0").strip() or "0"
    if not length_header.isdigit():
        raise ProtocolError(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
    split = urlsplit(target)
    request = Request(method, split.path or "/", split.query, headers, client_host)
    return request, int(length_header)
