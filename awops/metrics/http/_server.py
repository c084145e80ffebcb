"""The daemon's HTTP server: a route table over the connection loop.

A scrape only serialises what the last runs recorded; it never touches a database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from awops.errors import AwopsError
from awops.metrics import catalogue
from awops.metrics.http._connection import ConnectionLimits
from awops.metrics.http._loop import ConnectionLoop
from awops.metrics.http._protocol import Request, Response, text_response
from awops.metrics.http.webconfig import WebConfig

logger = logging.getLogger(__name__)

# A probe answers (ok, detail); detail is shown in the body as JSON.
Probe = Callable[[], tuple[bool, dict[str, Any]]]
Handler = Callable[[Request], Response]

# Completed connections the kernel holds until the loop accepts them; they cost no descriptor.
_LISTEN_BACKLOG = 256
_ALLOWED_METHODS = ("GET", "HEAD")


class ListenError(AwopsError):
    """The metrics address cannot be listened on (in use, not local, not permitted)."""

    def __init__(self, addr: str, exc: OSError) -> None:
        self.addr = addr
        self.reason = exc.strerror or str(exc) or type(exc).__name__
        super().__init__(f"cannot listen on {addr}: {self.reason}")


@dataclass(frozen=True)
class Route:
    """One path of the server.

    ``auth``: basic auth from the web config guards it. ``inline``: the handler is cheap and
    never blocks, so it answers on the connection loop itself and keeps answering while the
    worker threads are busy (the probes); it cannot require auth, which costs a bcrypt round.
    """

    handler: Handler
    auth: bool = False
    inline: bool = False


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz``; more paths are added with :meth:`route`."""

    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        healthz: Probe,
        readyz: Probe,
        web_config: WebConfig | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.addr = addr
        self.registry = registry
        self.web_config = web_config or WebConfig(source="")
        self.limits = limits or ConnectionLimits()
        self._routes: dict[str, Route] = {}
        self.route("/metrics", self._metrics, auth=True)
        self.route("/healthz", _probe_handler(healthz), inline=True)
        self.route("/readyz", _probe_handler(readyz), inline=True)
        self._listener = _listen(addr)
        self._loop = ConnectionLoop(
            self._listener, self._dispatch, self.web_config.tls, self.limits
        )
        self._collector = _ConnectionCollector(self._loop)

    def route(
        self, path: str, handler: Handler, *, auth: bool = False, inline: bool = False
    ) -> None:
        """Serve ``path`` (exact match, query ignored) with ``handler``; before :meth:`start`."""
        if path in self._routes:
            raise ValueError(f"route {path} is already served")
        if auth and inline:
            raise ValueError(f"route {path}: an inline route cannot require auth")
        self._routes[path] = Route(handler, auth=auth, inline=inline)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self.web_config.tls is not None else "http"

    def start(self) -> None:
        self.registry.register(self._collector)
        self._loop.start()
        logger.info(
            "serving %s on port %d (%s%s; at most %d connections, %.0f s per request)",
            ", ".join(self._routes),
            self.port,
            self.scheme,
            ", basic auth" if self.web_config.users else "",
            self.limits.max_connections,
            self.limits.request_deadline_seconds,
        )

    def stop(self) -> None:
        self._loop.stop()
        with contextlib.suppress(KeyError):  # never started
            self.registry.unregister(self._collector)

    def _dispatch(self, request: Request) -> Response | Callable[[], Response]:
        """On the loop: answer at once, or hand back the work for a worker thread."""
        if request.method not in _ALLOWED_METHODS:
            allow = (("Allow", ", ".join(_ALLOWED_METHODS)),)
            return text_response(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", allow)
        route = self._routes.get(request.path)
        if route is None:
            return text_response(HTTPStatus.NOT_FOUND, "not found")
        if route.auth and self.web_config.users:
            if not request.header("Authorization"):
                return _UNAUTHORIZED  # no bcrypt round needed to say no
            return lambda: self._authorized(route.handler, request)
        if route.inline:
            return route.handler(request)
        return lambda: route.handler(request)

    def _authorized(self, handler: Handler, request: Request) -> Response:
        if not self.web_config.authorized(request.header("Authorization")):
            return _UNAUTHORIZED
        return handler(request)

    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.header("Accept"))
        return Response(HTTPStatus.OK, content_type, encoder(self.registry))


_UNAUTHORIZED = text_response(
    HTTPStatus.UNAUTHORIZED, "unauthorized", (("WWW-Authenticate", 'Basic realm="awops"'),)
)


def _probe_handler(probe: Probe) -> Handler:
    def answer(request: Request) -> Response:
        ok, detail = probe()
        body = json.dumps({"ok": ok, **detail}).encode()
        return Response(
            HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, "application/json", body
        )

    return answer


def _listen(addr: str) -> socket.socket:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(_LISTEN_BACKLOG)
    except OSError as exc:  # gaierror included: a host name that does not resolve
        sock.close()
        raise ListenError(addr, exc) from None
    return sock


class _ConnectionCollector:
    """The server's own health, read at scrape time."""

    def __init__(self, loop: ConnectionLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        spec = catalogue.HTTP_CONNECTIONS
        yield GaugeMetricFamily(spec.name, spec.help, value=self._loop.open_connections)
        spec = catalogue.HTTP_CONNECTIONS_MAX
        yield GaugeMetricFamily(spec.name, spec.help, value=self._loop.limits.max_connections)
        dropped_spec = catalogue.HTTP_CONNECTIONS_DROPPED
        # CounterMetricFamily appends the _total itself.
        dropped = CounterMetricFamily(
            dropped_spec.name.removesuffix("_total"),
            dropped_spec.help,
            labels=list(dropped_spec.labels),
        )
        for reason, count in self._loop.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
