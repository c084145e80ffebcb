"""The metrics port under abuse: idle floods, slow clients, a low descriptor limit, a taken port.

The daemon tests run the real ``awops run`` against a throwaway PostgreSQL with pg-health and
pg-ttl-purge scheduled every second or two; the others run the server in process with short
deadlines so they finish quickly.
"""

from __future__ import annotations

import contextlib
import json
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from awops.metrics.http import ConnectionLimits, MetricsServer, Response, load_web_config
from tests.fix_awops import clean_environ, run_awops, wait_for
from tests.fix_pg import PgDatabase, free_port
from tests.test_daemon import get, sample
from tests.test_metrics_security import PASSWORD, fetch, write_web_config

MIB = 1024 * 1024
IDLE_CONNECTIONS = 3000
FLOOD_BATCH = 500
# The daemon's descriptor limit in the flood test: the 1024 many distributions start with.
DAEMON_OPEN_FILES = 1024
# Bounds of waiting, not assertions about speed.
TRICKLE_BOUND_SECONDS = 60.0


# -- helpers -----------------------------------------------------------------------------------


def open_idle(port: int, count: int, bound_seconds: float = 30.0) -> list[socket.socket]:
    """``count`` connections that never send a byte; each connect is waited for (within a
    shared bound) so the server sees them all, not just what its listen backlog holds."""
    sockets = []
    deadline = time.monotonic() + bound_seconds
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        poller.poll(max(0, int((deadline - time.monotonic()) * 1000)))
    return sockets


def established(sockets: list[socket.socket]) -> int:
    count = 0
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.getpeername()  # ENOTCONN while the connect is still pending
            count += 1
    return count


def trickle_until_closed(sock: socket.socket, first: bytes, bound_seconds: float) -> bool:
    """Send ``first``, then one header byte every 0.1 s; true once the server closes."""
    sock.settimeout(1.0)
    sock.sendall(first)
    deadline = time.monotonic() + bound_seconds
    while time.monotonic() < deadline:
        try:
            sock.send(b"a")
        except OSError:  # EPIPE / ECONNRESET: the server closed it
            return True
        try:
            sock.settimeout(0.1)
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
    return False


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def rss_bytes(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0]) * 1024


def threads(pid: int) -> int:
    return int(proc_status(pid)["Threads"])


def ensure_own_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Daemon:
    """``awops run`` as a subprocess, optionally under a lowered open files limit."""

    def __init__(self, tmp_path: Path, env: dict[str, str], open_files: tuple[int, int] | None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "awops.toml"
        config.write_text(
            f'[metrics]\naddr = "127.0.0.1:{self.port}"\n'
            "[daemon]\nshutdown_timeout_seconds = 10\n"
            '[jobs.pg-health]\nschedule = "every 1s"\njitter_seconds = 0\n'
            '[jobs.pg-ttl-purge]\nschedule = "every 2s"\njitter_seconds = 0\n'
        )
        self.log = tmp_path / "daemon.log"

        def limit_open_files() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "awops", "run", "--config", str(config)],
            env=clean_environ(env),
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            preexec_fn=limit_open_files,  # one setrlimit call, nothing else
        )

    def logs(self) -> str:
        return self.log.read_text()

    def metric(self, name: str, **labels: str) -> float | None:
        status, body = get(f"{self.base}/metrics")
        return sample(body, name, **labels) if status == 200 else None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture
def daemon(aw_db: PgDatabase, tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path, aw_db.awops_env(), (DAEMON_OPEN_FILES, DAEMON_OPEN_FILES))
    try:
        wait_for(lambda: get(f"{running.base}/readyz")[0] == 200, 60, "/readyz")
        yield running
    finally:
        code = running.stop()
    assert code == 0, running.logs()[-3000:]
    assert "Traceback" not in running.logs()


def successes(daemon: Daemon, job: str) -> float:
    return daemon.metric("awops_job_runs_total", job=job, status="ok") or 0


# -- the daemon under a flood ------------------------------------------------------------------


def test_thousands_of_idle_connections_leave_healthz_jobs_and_memory_alone(daemon: Daemon):
    ensure_own_open_files(IDLE_CONNECTIONS + 512)
    pid = daemon.process.pid
    # Warm up: every module a run imports is loaded and the pool is open before measuring.
    for job in ("pg-health", "pg-ttl-purge"):
        wait_for(lambda job=job: successes(daemon, job) >= 2, 60, f"two {job} runs")
    rss_before, threads_before = rss_bytes(pid), threads(pid)

    idle: list[socket.socket] = []
    try:
        while len(idle) < IDLE_CONNECTIONS:
            batch = open_idle(daemon.port, FLOOD_BATCH)
            idle += batch
            status, body = get(f"{daemon.base}/healthz")
            assert status == 200, f"/healthz with {len(idle)} idle connections: {status} {body}"
            assert json.loads(body)["ok"] is True
            assert established(batch) == FLOOD_BATCH, "the flood did not reach the server"
        flooded_at = time.time()
        ok_before = {job: successes(daemon, job) for job in ("pg-health", "pg-ttl-purge")}

        # Jobs still reach PostgreSQL while every idle connection is held open.
        def fresh_success(job: str) -> bool:
            last = daemon.metric("awops_job_last_success_timestamp_seconds", job=job) or 0
            return last > flooded_at and successes(daemon, job) > ok_before[job]

        for job in ("pg-health", "pg-ttl-purge"):
            wait_for(lambda job=job: fresh_success(job), 60, f"a {job} run after the flood")
        assert daemon.metric("awops_pg_up") == 1
        assert daemon.metric("awops_job_healthy", job="pg-ttl-purge") == 1
        assert get(f"{daemon.base}/healthz")[0] == 200

        rss_growth, thread_growth = rss_bytes(pid) - rss_before, threads(pid) - threads_before
        assert rss_growth < 20 * MIB, f"RSS grew by {rss_growth / MIB:.1f} MiB"
        assert thread_growth <= 4, f"{thread_growth} more threads"  # at most the handler pool
        assert (daemon.metric("awops_http_connections") or 0) <= 64
        assert (daemon.metric("awops_http_connections_dropped_total", reason="evicted") or 0) > 0
    finally:
        for sock in idle:
            sock.close()
    assert "cannot take the job lock" not in daemon.logs()


def test_a_client_trickling_header_bytes_is_cut_off_at_the_request_deadline(daemon: Daemon):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        closed = trickle_until_closed(
            sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", TRICKLE_BOUND_SECONDS
        )
    assert closed, "the server still read a trickled header after the bound"
    assert daemon.metric("awops_http_connections_dropped_total", reason="deadline") == 1
    assert get(f"{daemon.base}/healthz")[0] == 200


def test_the_soft_open_files_limit_is_raised_to_the_hard_one(tmp_path: Path):
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_HOST": "127.0.0.1"}
    env["PG_DB_PORT"] = str(free_port())  # nothing listens: no job needs to succeed here
    running = Daemon(tmp_path, env, (256, 4096))
    try:
        wait_for(lambda: get(f"{running.base}/healthz")[0] == 200, 60, "/healthz")
        limits = Path(f"/proc/{running.process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == ["4096", "4096"], line
    finally:
        assert running.stop() == 0


# -- the port is taken -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "file"])
def test_a_metrics_port_in_use_exits_2_naming_the_address(tmp_path: Path, where: str):
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_HOST": "127.0.0.1"}
    env["PG_DB_PORT"] = str(free_port())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        addr = f"127.0.0.1:{holder.getsockname()[1]}"
        args = ["run"]
        if where == "environment":
            env["AWOPS_METRICS_ADDR"] = addr
            origin = "environment AWOPS_METRICS_ADDR"
        else:
            config = tmp_path / "awops.toml"
            config.write_text(f'[metrics]\naddr = "{addr}"\n')
            args += ["--config", str(config)]
            origin = f"{config}: metrics.addr"
        result = run_awops(*args, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{origin}: cannot listen on {addr}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


# -- the server in process, with short deadlines -----------------------------------------------


SHORT = ConnectionLimits(max_connections=8, request_deadline_seconds=1.0, handler_threads=2)


@contextlib.contextmanager
def serving(web_config_path: Path | None = None, limits: ConnectionLimits = SHORT):
    registry = CollectorRegistry()
    web_config = load_web_config(web_config_path) if web_config_path else None
    server = MetricsServer(
        f"127.0.0.1:{free_port()}",
        registry,
        lambda: (True, {}),
        lambda: (True, {}),
        web_config=web_config,
        limits=limits,
    )
    server.start()
    try:
        yield server, registry
    finally:
        server.stop()


def dropped(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("awops_http_connections_dropped_total", {"reason": reason})


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_connections_beyond_the_cap_evict_the_oldest_unfinished_and_cost_no_thread():
    with serving() as (server, registry):
        threads_before = threading.active_count()
        idle = open_idle(server.port, 200)
        try:
            status, _ = get(f"http://127.0.0.1:{server.port}/healthz")
            assert status == 200
            assert registry.get_sample_value("awops_http_connections") <= 8
            assert dropped(registry, "evicted") >= 200 - 8
            assert threading.active_count() == threads_before
        finally:
            for sock in idle:
                sock.close()


def test_a_tls_handshake_falls_under_the_request_deadline(tmp_path: Path):
    with serving(write_web_config(tmp_path)) as (server, registry):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            # A TLS record header announcing a ClientHello of 512 bytes, sent a byte at a time.
            closed = trickle_until_closed(sock, b"\x16\x03\x01\x02\x00", TRICKLE_BOUND_SECONDS)
        assert closed, "the server waited on a trickled handshake past the bound"
        assert dropped(registry, "deadline") == 1
        # Idle connections that never start a handshake do not keep a scrape out either.
        idle = open_idle(server.port, 50)
        try:
            cafile = tmp_path / "tls.crt"
            base = f"https://127.0.0.1:{server.port}"
            assert fetch(f"{base}/healthz", cafile)[0] == 200
            assert fetch(f"{base}/metrics", cafile)[0] == 401
            status, body = fetch(f"{base}/metrics", cafile, ("prometheus", PASSWORD))
            assert status == 200 and "awops_http_connections_max 8.0" in body
        finally:
            for sock in idle:
                sock.close()


def test_a_slow_reader_of_the_answer_is_cut_off_too():
    limits = ConnectionLimits(max_connections=8, response_deadline_seconds=1.0)
    with serving(limits=limits) as (server, registry):
        big = b"x" * (64 * MIB)  # far beyond what the loopback socket buffers hold
        server.route("/big", lambda request: Response(200, "text/plain", big))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")
            wait_for(lambda: dropped(registry, "deadline") == 1, 60, "the answer's deadline")
            received = 0
            with contextlib.suppress(OSError):
                while chunk := sock.recv(MIB):
                    received += len(chunk)
        assert received < len(big)


def test_requests_the_server_does_not_serve_get_a_clear_status():
    with serving() as (server, _registry):
        port = server.port
        head = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert b"Content-Length: 12" in head  # the GET body's length, no body sent
        assert raw(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
        assert raw(port, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        assert raw(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        huge = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert raw(port, huge).startswith(b"HTTP/1.1 431 ")
        too_long = b"GET /healthz HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
        assert raw(port, too_long).startswith(b"HTTP/1.1 413 ")
        chunked = b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert raw(port, chunked).startswith(b"HTTP/1.1 501 ")
        with_body = b"GET /healthz?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        assert raw(port, with_body).endswith(b'{"ok": true}')


def test_added_routes_are_served_and_may_require_basic_auth(tmp_path: Path):
    web_config = write_web_config(tmp_path, tls=False)
    with serving(web_config) as (server, _registry):
        server.route("/api/status", lambda request: Response(200, "application/json", b"{}"))
        server.route("/private", lambda request: Response(200, "text/plain", b"p"), auth=True)
        with pytest.raises(ValueError, match="cannot require auth"):
            server.route("/fast", server._routes["/healthz"].handler, inline=True, auth=True)
        with pytest.raises(ValueError, match="already served"):
            server.route("/metrics", lambda request: Response(200, "text/plain", b""))
        base = f"http://127.0.0.1:{server.port}"
        assert fetch(f"{base}/api/status", None) == (200, "{}")
        assert fetch(f"{base}/private", None)[0] == 401
        assert fetch(f"{base}/private", None, ("prometheus", PASSWORD)) == (200, "p")


def test_connections_that_would_eat_the_descriptor_reserve_are_refused():
    # A reserve as large as the limit leaves nothing to give: every connection is refused.
    limits = ConnectionLimits(descriptor_reserve=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    with serving(limits=limits) as (server, registry):
        for _ in range(3):
            try:
                answer = raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
            except ConnectionResetError:
                answer = b""
            assert answer == b""
        assert dropped(registry, "descriptors") == 3


def test_slow_handlers_cannot_fill_the_connection_slots_and_keep_probes_out():
    # A handler thread stuck (a bcrypt round per wrong password, in real life): requests past
    # max_pending_handlers get 503 at once instead of holding slots nobody may evict.
    limits = ConnectionLimits(max_connections=8, handler_threads=1, max_pending_handlers=1)
    entered, release = threading.Event(), threading.Event()
    with serving(limits=limits) as (server, registry):

        def stuck(request: object) -> Response:
            entered.set()
            release.wait(60)
            return Response(200, "text/plain", b"done")

        server.route("/stuck", stuck)
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as waiting:
            try:
                waiting.sendall(b"GET /stuck HTTP/1.1\r\n\r\n")
                assert entered.wait(30)
                for _ in range(10):
                    busy = raw(server.port, b"GET /stuck HTTP/1.1\r\n\r\n")
                    assert busy.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in busy
                assert get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
                assert dropped(registry, "busy") == 10
            finally:
                release.set()
            assert waiting.makefile("rb").read().endswith(b"done")
