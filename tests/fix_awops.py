"""Running awops itself: the CLI as a subprocess, and in-process runners on fresh registries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from awops.config import Config, load_config
from awops.context import Resources
from awops.daemon import Daemon
from awops.metrics import Metrics
from awops.metrics.pg_pool import PgPoolCollector
from awops.registry import JobRegistry, builtin_registry
from awops.result import JobResult
from awops.runner import JobRunner

# Variables of the developer's shell that would leak into a test's configuration.
_CLEAN_PREFIXES = ("PG_", "AWS_", "AWOPS_", "DATABASE_BACKEND", "USE_PROPERTY_LOOKUP_TABLE")


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN_PREFIXES)}
    env.update(extra or {})
    return env


@contextmanager
def daemon_in_thread(
    config_path: Path, registry: JobRegistry, env: dict[str, str]
) -> Iterator[tuple[Daemon, threading.Thread]]:
    """``awops run`` in this process, on a fresh metrics registry, in a thread: stopped when the
    block is left, and (when the block ended normally) checked to have exited 0."""
    config = load_config(config_path, registry, env)
    daemon = Daemon(config, registry, config_path, env, metrics=Metrics(CollectorRegistry()))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    thread.start()
    try:
        yield daemon, thread
    finally:
        daemon.request_stop()
        thread.join(30)
    assert codes == [0]


class DaemonProcess:
    """``awops run --config CONFIG`` as a subprocess, its log in ``log``; stopped with SIGTERM."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=clean_environ(env),
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def run_awops(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awops", *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


class InProcess:
    """A runner on a fresh metrics registry, for tests that read metric values directly."""

    def __init__(self, env: Mapping[str, str], config_path: Path | None = None) -> None:
        self.registry = builtin_registry()
        self.config: Config = load_config(config_path, self.registry, clean_environ(env))
        self.prometheus = CollectorRegistry()
        self.metrics = Metrics(self.prometheus)
        self.resources = Resources(self.config)
        PgPoolCollector(self.resources.pool_totals, registry=self.prometheus)
        self.runner = JobRunner(self.config, self.registry, self.metrics, self.resources)

    def run(self, name: str, dry_run: bool = False) -> JobResult:
        return self.runner.run(name, dry_run=dry_run)

    def value(self, name: str, **labels: str) -> float | None:
        return self.prometheus.get_sample_value(name, labels)

    def close(self) -> None:
        self.resources.close()


@pytest.fixture
def in_process() -> Any:
    made: list[InProcess] = []

    def make(env: Mapping[str, str], config_path: Path | None = None) -> InProcess:
        runner = InProcess(env, config_path)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()
