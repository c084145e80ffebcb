"""``/metrics``, ``/healthz`` and ``/readyz`` on one small threaded HTTP server.

A scrape only serialises what the last runs recorded; it never touches a database.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

logger = logging.getLogger(__name__)

# A probe answers (ok, detail); detail is shown in the body as JSON.
Probe = Callable[[], tuple[bool, dict[str, Any]]]


class MetricsServer:
    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        healthz: Probe,
        readyz: Probe,
    ) -> None:
        host, _, port = addr.rpartition(":")
        self.registry = registry
        self.healthz = healthz
        self.readyz = readyz
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="awops-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info("serving /metrics, /healthz, /readyz on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(server.registry))
            elif path in ("/healthz", "/readyz"):
                probe = server.healthz if path == "/healthz" else server.readyz
                ok, detail = probe()
                body = json.dumps({"ok": ok, **detail}).encode()
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http: %s", format % args)

    return Handler
