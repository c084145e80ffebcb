"""A loopback proxy in front of moto that behaves, where restores are concerned, like AWS.

moto (5.2) has every API a DynamoDB restore uses, but two of its answers differ from AWS':

- it freezes a table's ``LatestRestorableDateTime`` at the moment PITR was switched on (and
  ``EarliestRestorableDateTime`` with it), so nine tables enabled one after the other have nine
  disjoint one-millisecond windows. AWS moves ``LatestRestorableDateTime`` forward, to about
  five minutes before now. The proxy answers ``DescribeContinuousBackups`` with AWS' shape
  (``ContinuousBackupsDescription.PointInTimeRecoveryDescription``, epoch seconds) and the
  latest restorable time moved to now minus ``lag_seconds``; ``windows`` sets a table's
  window outright.
- its restores are ACTIVE at once. The tables named in ``creating`` are described the way
  AWS describes a table being restored: ``TableStatus`` ``CREATING`` and
  ``RestoreSummary.RestoreInProgress`` true.

Everything else passes through unchanged, with :class:`FaultProxy`'s failures on top. Each
request's operation and JSON body is kept in ``calls``. The ``restore_proxy`` fixture lives in
tests/test_dynamodb_restore.py, its only user.
"""

from __future__ import annotations

import json
import threading
import time
from email.message import Message
from typing import Any

from tests.fix_faultproxy import FaultProxy, Reply


class RestoreProxy(FaultProxy):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.lag_seconds = 0.0
        self.windows: dict[str, tuple[float, float]] = {}
        self.creating: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._calls_lock = threading.Lock()

    def operations(self, *names: str) -> list[dict[str, Any]]:
        """Request bodies of the calls to ``names``, in order."""
        with self._calls_lock:
            return [body for operation, body in self.calls if operation in names]

    def operation_names(self) -> list[str]:
        with self._calls_lock:
            return [operation for operation, _ in self.calls]

    def forward(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        status, answer_headers, answer = super().forward(method, path, headers, body)
        target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
        operation = target.rpartition(".")[2]
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        with self._calls_lock:
            self.calls.append((operation, request))
        if status != 200:
            return status, answer_headers, answer
        changed = None
        if operation == "DescribeContinuousBackups":
            changed = self._moving_window(request.get("TableName", ""), json.loads(answer))
        elif operation == "DescribeTable" and request.get("TableName") in self.creating:
            document = json.loads(answer)
            document["Table"]["TableStatus"] = "CREATING"
            summary = document["Table"].setdefault("RestoreSummary", {})
            summary["RestoreInProgress"] = True
            changed = document
        if changed is None:
            return status, answer_headers, answer
        # The body changed, so the checksum DynamoDB sends (and botocore checks) goes.
        kept = [(k, v) for k, v in answer_headers if k.lower() != "x-amz-crc32"]
        return status, kept, json.dumps(changed).encode()

    def _moving_window(self, table: str, document: dict[str, Any]) -> dict[str, Any]:
        pitr = document["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
            return document
        if table in self.windows:
            earliest, latest = self.windows[table]
            pitr["EarliestRestorableDateTime"] = earliest
        else:
            earliest = float(pitr["EarliestRestorableDateTime"])
            latest = max(earliest, time.time() - self.lag_seconds)
        pitr["LatestRestorableDateTime"] = latest
        return document
