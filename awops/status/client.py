"""What ``awops status`` reads: the daemon's ``/api/status``, over HTTP or HTTPS, with basic
auth when the daemon asks for it."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from awops.config import Config

STATUS_PATH = "/api/status"
DEFAULT_TIMEOUT_SECONDS = 10.0


class StatusError(Exception):
    """The status could not be read; ``usage`` when the fix is in how awops status was called
    (credentials, a certificate to trust), not in the daemon."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"


def default_url(config: Config, tls: bool) -> str:
    """The daemon's own address from ``[metrics] addr``; a wildcard host becomes loopback."""
    host, _, port = config.metrics.addr.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def status_url(url: str) -> str:
    """``url`` as given, or with ``/api/status`` added when it names the daemon (or a prefix)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StatusError(f"--url {url!r}: expected http://HOST:PORT or https://HOST:PORT", True)
    if parts.path.rstrip("/").endswith(STATUS_PATH):
        return url
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{STATUS_PATH}"


def tls_context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise StatusError(f"--cacert {cafile}: cannot read it ({exc})", True) from None


def fetch_status(
    url: str,
    credentials: Credentials | None = None,
    context: ssl.SSLContext | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The document at ``url`` (a full ``.../api/status`` URL); :class:`StatusError` when no
    daemon answers, it refuses, or what answers is not an awops status document."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if credentials is not None:
        request.add_header("Authorization", credentials.header())
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds, context=context) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc.code, credentials) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise StatusError(
                f"{url}: the daemon's TLS certificate is not trusted ({reason.verify_message}); "
                "pass --cacert FILE, or --insecure",
                True,
            ) from None
        raise StatusError(f"no awops daemon answers at {url}: {_reason(reason)}") from None
    except (OSError, ValueError) as exc:  # reset, timeout, a bad status line
        raise StatusError(f"no awops daemon answers at {url}: {_reason(exc)}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise StatusError(f"{url} answered, but not with JSON: not an awops daemon?") from None
    if not isinstance(document, dict) or not isinstance(document.get("jobs"), list):
        raise StatusError(f"{url} answered, but not with an awops status document")
    return document


def _http_error(url: str, code: int, credentials: Credentials | None) -> StatusError:
    if code == 401:
        if credentials is None:
            return StatusError(
                f"{url} asks for credentials: pass --user and set AWOPS_STATUS_PASSWORD", True
            )
        return StatusError(f"{url} refused user {credentials.user!r}: wrong password?", True)
    if code == 404:
        return StatusError(f"{url}: not found (an awops older than the status page?)")
    return StatusError(f"{url} answered HTTP {code}")


def _reason(reason: Any) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason) or type(reason).__name__
