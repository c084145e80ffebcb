"""Backup target URLs: the one parser, used by the configuration, the jobs and the targets.

A target is ``s3://bucket/prefix``, ``file:///absolute/directory`` or ``/absolute/directory``.
An S3 target may carry its own credentials, ``s3://KEY:SECRET@bucket/prefix`` (percent-encoded:
a ``/`` in the secret is ``%2F``): that target's client signs with them, every other target
uses boto3's default chain. They never leave the parsed URL: ``display`` and every message
mask them.
Anything that would store backups somewhere other than what the operator wrote is refused:
``file://relative/path`` (two slashes) parses as host ``relative`` and path ``/path``, so it
would write at the filesystem root; a ``?query`` or ``#fragment`` would be cut off the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

_EXAMPLES = "s3://bucket/prefix, file:///var/backups/awops or /abs/path"
EXPECTED_ONE = f"a backup target like {_EXAMPLES}"
EXPECTED_LIST = f"backup targets like {_EXAMPLES}"


class TargetUrlError(ValueError):
    """A backup target URL that awops refuses; the message says why."""


@dataclass(frozen=True)
class TargetUrl:
    """Where a target's backups live: a local directory, or an S3 bucket and key prefix."""

    scheme: str  # "file" or "s3"
    path: str = ""  # file: the absolute directory
    bucket: str = ""  # s3
    prefix: str = ""  # s3: the key prefix, without leading or trailing "/"
    # s3: the URL's own credentials, percent-decoded; empty = boto3's default chain
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)

    @property
    def display(self) -> str:
        """The URL without credentials or query, as it appears in labels and messages."""
        if self.scheme == "file":
            return "file://" + self.path
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_target_url(text: str) -> TargetUrl:
    """The target ``text`` names; :class:`TargetUrlError` when it names none safely."""
    if not text:
        raise TargetUrlError("an empty target")
    shown = _redacted(text)
    if "\x00" in text:
        raise TargetUrlError("a target with a NUL character")
    if text.startswith("/"):
        return TargetUrl("file", path=text)
    parts = urlsplit(text)
    if parts.scheme not in ("file", "s3"):
        raise TargetUrlError(f"{shown!r}: not an absolute path, file:// or s3:// URL")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise TargetUrlError(f"{shown!r}: a ?query or #fragment would be cut off the location")
    if parts.scheme == "file":
        if parts.netloc:
            host = parts.netloc.rpartition("@")[2]
            raise TargetUrlError(
                f"{shown!r}: a file target must be absolute, file:///path (three slashes); "
                f"this names host {host!r} and would write to {parts.path or '/'}"
            )
        if not parts.path.startswith("/"):
            raise TargetUrlError(f"{shown!r}: a file target must be absolute, file:///path")
        return TargetUrl("file", path=parts.path)
    userinfo, _, bucket = parts.netloc.rpartition("@")
    if not bucket:
        raise TargetUrlError(f"{shown!r}: an S3 target needs a bucket, s3://bucket/prefix")
    if ":" in bucket:
        raise TargetUrlError(
            f"{shown!r}: not a bucket name; credentials go before the bucket, "
            "s3://KEY:SECRET@bucket/prefix, percent-encoded (a '/' in the secret as %2F)"
        )
    key, colon, secret = userinfo.partition(":")
    if userinfo and not (key and colon and secret):
        raise TargetUrlError(f"{shown!r}: credentials must be KEY:SECRET, both non-empty")
    return TargetUrl(
        "s3",
        bucket=bucket,
        prefix=parts.path.strip("/"),
        access_key_id=unquote(key),
        secret_access_key=unquote(secret),
    )


def _redacted(text: str) -> str:
    """``text`` with any user or password in it masked, for error messages. A secret with an
    unencoded ``/`` ends the host early, so everything up to the last ``@`` is masked."""
    scheme, sep, rest = text.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and "@" in netloc:
        return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"
    if sep and scheme == "s3" and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return text


def target_url_problem(text: str) -> str | None:
    """None for a good target, else why ``text`` is none (see EXPECTED_ONE, EXPECTED_LIST)."""
    try:
        parse_target_url(text)
    except TargetUrlError as exc:
        return str(exc)
    return None


def display_url(text: str) -> str:
    """``text`` without credentials or query; the text itself when it is no target."""
    try:
        return parse_target_url(text).display
    except TargetUrlError:
        return text
