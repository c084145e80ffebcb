"""The connection loop: one thread, one selector, a bounded number of connections.

A thread per connection let idle connections alone exhaust the daemon: each costs a thread and
a descriptor, and headers are read before basic auth can refuse anybody. Here a connection costs
a few hundred bytes until its request is complete, and:

* at most ``max_connections`` are open. At the cap the oldest connection whose request is still
  unfinished is closed for the newcomer, so a fresh ``/healthz`` probe gets in however many idle
  connections a client opens; a newcomer is refused only when every open connection already has
  a complete request being answered;
* each connection has ``request_deadline_seconds`` from accept for its TLS handshake, request
  line, headers and body together. It is a deadline for the whole request, not per ``recv``, so
  a client trickling a byte at a time is cut off like an idle one;
* the answer has ``response_deadline_seconds`` to be written;
* at most ``max_pending_handlers`` requests wait for or run on the worker threads; beyond
  that a request is answered 503 at once;
* a connection is refused when it would leave fewer than ``descriptor_reserve`` descriptors free,
  and accepting pauses briefly when the process is out of them.

Cheap handlers (the probes) answer on the loop; the others run on a few worker threads
(``/metrics`` may cost a bcrypt round); writing the answer is the loop's work again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import cast

from awops.metrics.http._connection import UNFINISHED, Connection, ConnectionLimits, State
from awops.metrics.http._descriptors import descriptors_low, open_files_limit
from awops.metrics.http._protocol import Request, Response, text_response

logger = logging.getLogger(__name__)

# A handler's answer: a response at once, or work for a worker thread that returns one.
Dispatch = Callable[[Request], "Response | Callable[[], Response]"]

DROP_REASONS = ("deadline", "evicted", "refused", "descriptors", "busy")

_RECV_BYTES = 64 * 1024
_SEND_BYTES = 64 * 1024
# Accepts per loop turn, so a connection flood cannot starve the connections already open.
_ACCEPT_BATCH = 64
_ACCEPT_PAUSE_SECONDS = 0.5
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_WARN_INTERVAL_SECONDS = 60.0
_LISTENER, _WAKE = object(), object()
_BUSY = text_response(HTTPStatus.SERVICE_UNAVAILABLE, "busy, try again", (("Retry-After", "1"),))


class ConnectionLoop:
    """Serves one listening socket until :meth:`stop`; see the module docstring."""

    def __init__(
        self,
        listener: socket.socket,
        dispatch: Dispatch,
        tls: ssl.SSLContext | None,
        limits: ConnectionLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self._dispatch = dispatch
        self._tls = tls
        self.limits = limits
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        for sock in (listener, self._wake_reader, self._wake_writer):
            sock.setblocking(False)
        self._connections: dict[Connection, None] = {}  # insertion order = accept order
        self._finished: deque[tuple[Connection, Response]] = deque()
        self._workers = ThreadPoolExecutor(limits.handler_threads, thread_name_prefix="awops-http")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="awops-http", daemon=True)
        self._descriptor_limit = open_files_limit()
        self._accept_paused_until: float | None = None
        self._handling = 0  # requests handed to the workers and not yet answered
        self._last_warning: dict[str, float] = {}
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, _WAKE)
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)
        else:
            self._close_everything()
        self._workers.shutdown(wait=False, cancel_futures=True)

    # -- the loop ----------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                accept = False
                for key, _events in self._selector.select(self._select_timeout()):
                    if key.data is _LISTENER:
                        accept = True
                    elif key.data is _WAKE:
                        self._drain_wake()
                    else:
                        self._service(key.data)
                self._write_finished()
                # Last, so a flood of newcomers cannot evict a connection whose request has
                # just arrived before it is read.
                if accept:
                    self._accept_ready()
                self._expire()
                self._resume_accepting()
        except Exception:
            logger.exception("http: the connection loop failed; the endpoints are down")
        finally:
            self._close_everything()

    def _select_timeout(self) -> float:
        now = self._clock()
        wake_at = [c.deadline for c in self._connections if c.deadline is not None]
        if self._accept_paused_until is not None:
            wake_at.append(self._accept_paused_until)
        return max(0.0, min([now + 1.0, *wake_at]) - now)

    def _service(self, conn: Connection) -> None:
        # A failure while serving one connection closes that connection, never the loop.
        try:
            if conn.state is State.HANDSHAKE:
                self._handshake(conn)
            if conn.state is State.READING:
                self._read(conn)
            elif conn.state is State.WRITING:
                self._write(conn)
        except Exception:
            logger.exception("http: error serving %s", conn.client_host)
            self._close(conn)

    # -- accepting ---------------------------------------------------------------------------

    def _accept_ready(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self._drop("descriptors", "http: out of file descriptors (%s)", exc.strerror)
                    self._selector.unregister(self._listener)
                    self._accept_paused_until = self._clock() + _ACCEPT_PAUSE_SECONDS
                    return
                continue  # the client gave up before accept (ECONNABORTED and the like)
            self._admit(sock, str(address[0]))

    def _admit(self, sock: socket.socket, client_host: str) -> None:
        limits = self.limits
        if descriptors_low(sock.fileno(), self._descriptor_limit, limits.descriptor_reserve):
            self._drop(
                "descriptors",
                "http: refused %s: fewer than %d file descriptors left (limit %d)",
                client_host,
                limits.descriptor_reserve,
                self._descriptor_limit,
            )
            sock.close()
            return
        if len(self._connections) >= limits.max_connections:
            oldest = next((c for c in self._connections if c.state in UNFINISHED), None)
            if oldest is None:
                self._drop(
                    "refused",
                    "http: refused %s: %d connections open, every one being answered",
                    client_host,
                    len(self._connections),
                )
                sock.close()
                return
            self._drop(
                "evicted",
                "http: %d connections open (the cap); closed the oldest unfinished one, from %s",
                limits.max_connections,
                oldest.client_host,
            )
            self._close(oldest)
        sock.setblocking(False)
        state = State.READING
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError as exc:  # the client already reset the connection
                logger.debug("http: %s left before the TLS handshake: %s", client_host, exc)
                sock.close()
                return
            state = State.HANDSHAKE
        deadline = self._clock() + limits.request_deadline_seconds
        conn = Connection(sock, client_host, state, deadline)
        self._connections[conn] = None
        # A probe's request (or ClientHello) is usually there already: serve it now, before
        # later newcomers could evict it.
        self._service(conn)

    def _resume_accepting(self) -> None:
        paused_until = self._accept_paused_until
        if paused_until is not None and self._clock() >= paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)

    # -- one connection ----------------------------------------------------------------------

    def _handshake(self, conn: Connection) -> None:
        try:
            cast(ssl.SSLSocket, conn.sock).do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._want(conn, selectors.EVENT_WRITE)
        except OSError as exc:  # SSLError included: plain HTTP on the TLS port, bad client cert
            logger.debug("http: TLS handshake with %s failed: %s", conn.client_host, exc)
            self._close(conn)
        else:
            conn.state = State.READING

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                data = conn.sock.recv(_RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._want(conn, selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._want(conn, selectors.EVENT_WRITE)
                return
            except OSError:  # reset, or a TLS alert
                self._close(conn)
                return
            if not data:  # the client left before its request was complete
                self._close(conn)
                return
            conn.inbox += data
            if self._take_request(conn):
                return

    def _take_request(self, conn: Connection) -> bool:
        """Parse what has arrived; true once the connection has moved on from reading."""
        taken = conn.take_request(self.limits)
        if taken is None:
            return False
        if isinstance(taken, Response):
            self._answer(conn, taken)
        else:
            self._start_answering(conn, taken)
        return True

    def _start_answering(self, conn: Connection, request: Request) -> None:
        try:
            planned = self._dispatch(request)
        except Exception:
            logger.exception("http: error answering %s", request.path)
            planned = text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        if isinstance(planned, Response):
            self._answer(conn, planned)
            return
        if self._handling >= self.limits.max_pending_handlers:
            # Otherwise slow handlers (a bcrypt round per wrong password) would fill every
            # connection slot with requests that cannot be evicted, and refuse the probes.
            self._drop("busy", "http: %d requests wait for a handler; answered 503", self._handling)
            self._answer(conn, _BUSY)
            return
        self._handling += 1
        conn.state = State.HANDLING
        conn.deadline = None  # the handler's time is the handler's; the write gets a deadline
        self._want(conn, 0)
        try:
            self._workers.submit(self._work, conn, planned)
        except RuntimeError:  # stopping: the pool takes no more work
            self._handling -= 1
            self._close(conn)

    def _work(self, conn: Connection, work: Callable[[], Response]) -> None:
        """In a worker thread: produce the answer and hand it back to the loop."""
        try:
            response = work()
        except Exception:
            logger.exception("http: error answering %s", conn.request.path if conn.request else "")
            response = text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        self._finished.append((conn, response))
        self._wake()

    def _write_finished(self) -> None:
        while self._finished:
            conn, response = self._finished.popleft()
            self._handling -= 1
            if conn.state is State.HANDLING:
                self._answer(conn, response)

    def _answer(self, conn: Connection, response: Response) -> None:
        head_only = conn.request is not None and conn.request.method == "HEAD"
        conn.outbox = memoryview(response.encode(include_body=not head_only))
        conn.state = State.WRITING
        conn.deadline = self._clock() + self.limits.response_deadline_seconds
        self._write(conn)

    def _write(self, conn: Connection) -> None:
        while conn.outbox:
            try:
                sent = conn.sock.send(conn.outbox[:_SEND_BYTES])
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._want(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._want(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            conn.outbox = conn.outbox[sent:]
        self._close(conn)

    # -- bookkeeping -------------------------------------------------------------------------

    def _want(self, conn: Connection, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: Connection) -> None:
        if conn.state is State.CLOSED:
            return
        self._want(conn, 0)
        conn.state = State.CLOSED
        self._connections.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _expire(self) -> None:
        now = self._clock()
        for conn in list(self._connections):
            if conn.deadline is not None and conn.deadline <= now:
                phase = "answer" if conn.state is State.WRITING else "request"
                self._drop(
                    "deadline", "http: closed %s: its %s took too long", conn.client_host, phase
                )
                self._close(conn)

    def _drop(self, reason: str, message: str, *args: object) -> None:
        """Count a dropped connection (before closing it, so whoever sees the close sees the
        count); warn at most once a minute per reason, as a flood would otherwise flood the
        log too (the counter keeps the exact number)."""
        self.dropped[reason] += 1
        now = self._clock()
        last = self._last_warning.get(reason)
        if last is None or now - last >= _WARN_INTERVAL_SECONDS:
            self._last_warning[reason] = now
            logger.warning(
                "%s (more this minute only count in awops_http_connections_dropped_total)",
                message % args,
            )
        else:
            logger.debug(message, *args)

    def _wake(self) -> None:
        # OSError: the pipe is full (a wake-up is pending anyway) or closed (stopped).
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass

    def _close_everything(self) -> None:
        if self._selector.get_map() is None:  # closed already
            return
        for conn in list(self._connections):
            self._close(conn)
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            sock.close()
        self._selector.close()
