"""The daemon's HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz`` on one bounded server.

``webconfig`` reads TLS and basic auth settings; ``_server`` holds the route table;
``_loop`` is the single-threaded connection loop that enforces the limits of ``_connection``
(connection cap, deadlines, sizes) and the descriptor reserve of ``_descriptors``;
``_protocol`` is the little HTTP it speaks.
"""

from __future__ import annotations

from awops.metrics.http._connection import ConnectionLimits
from awops.metrics.http._descriptors import DESCRIPTOR_RESERVE, raise_open_files_limit
from awops.metrics.http._protocol import Request, Response, text_response
from awops.metrics.http._server import Handler, ListenError, MetricsServer, Probe, Route
from awops.metrics.http.webconfig import WebConfig, WebConfigError, load_web_config

__all__ = [
    "DESCRIPTOR_RESERVE",
    "ConnectionLimits",
    "Handler",
    "ListenError",
    "MetricsServer",
    "Probe",
    "Request",
    "Response",
    "Route",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "raise_open_files_limit",
    "text_response",
]
