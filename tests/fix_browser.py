"""A real browser for tests: Debian's headless Chromium, on loopback URLs only.

Chromium runs with a fresh profile and with everything that would reach out to Google's hosts
turned off; any host name it might look up resolves to nothing, so the only address it can
reach is the loopback one a test names. Each run is its own process group, ended with it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

BROWSER_TIMEOUT_SECONDS = 120.0
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
)


class BrowserError(AssertionError):
    """Chromium did not do what it was asked."""


def find_chromium() -> str | None:
    return shutil.which("chromium")


class Chromium:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def dump_dom(self, url: str) -> str:
        """The page's DOM after it loaded, serialised as HTML."""
        return self._run(url, "--dump-dom")

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 800) -> Path:
        """A PNG of the page at ``width`` x ``height`` CSS pixels."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(url, f"--screenshot={path}", f"--window-size={width},{height}")
        if not path.exists() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise BrowserError(f"chromium wrote no PNG to {path}")
        return path

    def _run(self, url: str, *args: str) -> str:
        host = _loopback_host(url)
        # No host name resolves: only the loopback address in the URL can be reached.
        resolver = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"
        with tempfile.TemporaryDirectory(prefix="awops-chromium-") as profile:
            command = [self.binary, *_FLAGS, resolver, f"--user-data-dir={profile}", *args, url]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                cwd=profile,
            )
            try:
                out, err = process.communicate(timeout=BROWSER_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _end_group(process)
                out, err = process.communicate()
                raise BrowserError(f"chromium did not finish with {url}: {err[-2000:]}") from None
            finally:
                _end_group(process)
        if process.returncode != 0:
            raise BrowserError(f"chromium exited {process.returncode}: {err[-2000:]}")
        return out


def _end_group(process: subprocess.Popen[str]) -> None:
    """Chromium's helpers (zygote, renderer) share its process group: none outlives it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _loopback_host(url: str) -> str:
    """The host of ``url``, which must be a loopback address (not a name)."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the test browser visits loopback addresses only, not {url}")
    return host


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    """Skipped when Chromium is missing, except in CI, where that fails the test."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/system-deps.sh installs it")
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    yield Chromium(binary)


class PageJob:
    """One row of the page's jobs table, as the browser's DOM has it."""

    def __init__(self, name: str, data_status: str) -> None:
        self.name = name
        self.data_status = data_status
        self.status_text = ""
        self.last_run = ""  # the datetime attribute of the last-run cell's <time>
        self.summary = ""


class StatusPageParser(HTMLParser):
    """The jobs table (rows in page order) and the backups table of the status page."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[PageJob] = []
        self.backups: dict[str, str] = {}  # target -> text of its row
        self.meta: dict[str, str] = {}  # http-equiv or name -> content
        self.tags: list[str] = []
        self._row: PageJob | None = None
        self._cell = ""
        self._badge = False
        self._target: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        self.tags.append(tag)
        if tag == "meta":
            key = attributes.get("http-equiv") or attributes.get("name") or ""
            self.meta[key] = attributes.get("content", "")
        if tag == "tr" and attributes.get("id", "").startswith("job-"):
            self._row = PageJob(attributes["id"].removeprefix("job-"), attributes["data-status"])
            self.jobs.append(self._row)
        if tag == "tr" and "data-target" in attributes:
            self._target = attributes["data-target"]
            self.backups[self._target] = ""
        if tag == "td" and self._row is not None:
            self._cell = attributes.get("class", "")
        if tag == "span" and "badge" in attributes.get("class", "") and self._cell == "status":
            self._badge = True
        if tag == "time" and self._row is not None and self._cell == "last-run":
            self._row.last_run = attributes.get("datetime", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row, self._target, self._cell = None, None, ""
        if tag == "span":
            self._badge = False

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._badge:
            self._row.status_text += data
        if self._row is not None and self._cell == "summary":
            self._row.summary += data
        if self._target is not None:
            self.backups[self._target] += data + " "


def parse_status_page(dom: str) -> StatusPageParser:
    parser = StatusPageParser()
    parser.feed(dom)
    parser.close()
    return parser
