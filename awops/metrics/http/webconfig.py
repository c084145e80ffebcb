"""TLS and basic auth for the HTTP endpoints.

They come from a web config file in the format Prometheus and its
exporters use (``web-config.yml``)::

    tls_server_config:
      cert_file: /etc/awops/tls.crt        # relative paths are relative to this file
      key_file: /etc/awops/tls.key
      client_auth_type: NoClientCert       # or RequireAndVerifyClientCert (+ client_ca_file)
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...               # bcrypt hash: htpasswd -nBC 12 "" | tr -d ':'

Basic auth guards the routes that ask for it (``/metrics``); ``/healthz`` and ``/readyz`` stay
open so kubelet and systemd probes need no password (they show only up/down, backend names and
the config file's path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"}
# A scrape must not cost a bcrypt round each time; only proven (user, password) digests are kept.
_AUTH_CACHE_MAX = 64


class WebConfigError(ValueError):
    """The web config file is invalid; the message names the file and the key."""


@dataclass
class WebConfig:
    """TLS context and basic-auth users; empty (``WebConfig("")``) means plain HTTP, no auth."""

    source: str
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    _proven: dict[bytes, bool] = field(default_factory=dict, repr=False, compare=False)

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header passes; always true when no users are set.

        May cost a bcrypt round (tenths of a second): call it off the connection loop.
        """
        if not self.users:
            return True
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        return self.check_password(user, password)

    def check_password(self, user: str, password: str) -> bool:
        # bcrypt only once a request carries a password.
        import bcrypt

        hashed = self.users.get(user)
        digest = hashlib.sha256(b"\0".join([user.encode(), password.encode()])).digest()
        if hashed is not None and self._proven.get(digest):
            return True
        # An unknown user costs a bcrypt round too, so timing does not reveal user names.
        candidate = hashed or _DUMMY_HASH
        try:
            ok = bcrypt.checkpw(password.encode(), candidate) and hashed is not None
        except ValueError:
            ok = False
        if ok:
            if len(self._proven) >= _AUTH_CACHE_MAX:
                self._proven.clear()
            self._proven[digest] = True
        return ok


# bcrypt of a random string at cost 10; never matches a real password.
_DUMMY_HASH = b"$2b$10$8yM3zvS6lt1n.6Ws4GHeS.njrbb87nutwIXb1nseOUdBpLhUpnJVS"


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check a web config file; raises :class:`WebConfigError` naming the key."""
    # PyYAML only when a web config is named.
    import yaml

    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WebConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: NUL in the path
        raise WebConfigError(f"{file}: cannot read it ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise WebConfigError(f"{file}: not valid YAML{line}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise WebConfigError(f"{file}: expected a mapping with tls_server_config/basic_auth_users")
    unknown = sorted(str(key) for key in document if key not in _WEB_KEYS)
    if unknown:
        raise WebConfigError(
            f"{file}: {unknown[0]}: unsupported key (supported: {', '.join(sorted(_WEB_KEYS))})"
        )
    config = WebConfig(source=str(file))
    tls = document.get("tls_server_config")
    if tls is not None:
        config.tls = _tls_context(file, tls)
    users = document.get("basic_auth_users")
    if users is not None:
        config.users = _users(file, users)
    return config


_WEB_KEYS = {"tls_server_config", "basic_auth_users"}


def _tls_context(file: Path, tls: Any) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise WebConfigError(f"{file}: tls_server_config: expected a mapping")
    unknown = sorted(str(key) for key in tls if key not in _TLS_KEYS)
    if unknown:
        raise WebConfigError(f"{file}: tls_server_config.{unknown[0]}: unsupported key")

    def path_of(key: str, required: bool) -> str | None:
        value = tls.get(key)
        if value is None or value == "":
            if required:
                raise WebConfigError(f"{file}: tls_server_config.{key}: required")
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"{file}: tls_server_config.{key}: expected a file path")
        resolved = Path(value) if Path(value).is_absolute() else file.parent / value
        if not resolved.is_file():
            raise WebConfigError(f"{file}: tls_server_config.{key}: no such file {resolved}")
        return str(resolved)

    cert, key = path_of("cert_file", True), path_of("key_file", True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = tls.get("min_version", "TLS12")
    if version not in _TLS_VERSIONS:
        raise WebConfigError(f"{file}: tls_server_config.min_version: expected TLS12 or TLS13")
    context.minimum_version = _TLS_VERSIONS[version]
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError):
        raise WebConfigError(
            f"{file}: tls_server_config.cert_file/key_file: not a matching PEM certificate and key"
        ) from None
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(
            f"{file}: tls_server_config.client_auth_type: expected one of {', '.join(_CLIENT_AUTH)}"
        )
    context.verify_mode = _CLIENT_AUTH[auth]
    ca = path_of("client_ca_file", auth.startswith(("Require", "Verify")) and "Any" not in auth)
    if ca is not None:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError):
            raise WebConfigError(
                f"{file}: tls_server_config.client_ca_file: not a PEM CA bundle"
            ) from None
    elif auth == "RequireAnyClientCert":
        raise WebConfigError(
            f"{file}: tls_server_config.client_auth_type: RequireAnyClientCert is not supported;"
            " use RequireAndVerifyClientCert with client_ca_file"
        )
    return context


def _users(file: Path, users: Any) -> dict[str, bytes]:
    if not isinstance(users, dict):
        raise WebConfigError(f"{file}: basic_auth_users: expected a mapping of user: bcrypt hash")
    checked = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{file}: basic_auth_users: user names are non-empty, no ':'")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            # The value is never echoed: it might be a plain password pasted by mistake.
            raise WebConfigError(f"{file}: basic_auth_users.{user}: expected a bcrypt hash")
        checked[user] = hashed.encode()
    return checked
