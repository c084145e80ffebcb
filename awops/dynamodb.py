"""What the DynamoDB checks and jobs share: ActingWeb's tables, describe answers, error mapping.

Job modules import this at their top: it imports botocore only during an AWS call, so the
registry's start-up stays cheap.

The three read-only checks (``dynamodb-gsi``, ``dynamodb-ttl``, ``dynamodb-pitr``) all need each
table's ``DescribeTable``. :func:`shared_state` keeps those answers for a short while
(``[dynamodb] describe_cache_seconds``) on the process' AWS clients, so one ``run-once`` of the
three, or the daemon running them minutes apart, pays one ``DescribeTable`` per table.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awops.aws import translated_aws_errors
from awops.errors import JobError
from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.aws import AwsClients
    from awops.config import DynamoDBSettings
    from awops.metrics import MetricsBase

logger = logging.getLogger(__name__)

# suffix: (hash key, range key, {GSI name: GSI hash key}), as ActingWeb 3.13+ creates the tables
# (pynamodb models in actingweb/db/dynamodb/*.py: PAY_PER_REQUEST, every GSI projecting ALL),
# in the order of actingweb.db.verify_tables.required_models().
ACTINGWEB_TABLES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "actors": ("id", None, {"creator-index": "creator"}),
    "attributes": ("id", "bucket_name", {}),
    "peertrustees": ("id", "peerid", {}),
    "properties": ("id", "name", {}),
    "subscriptions": ("id", "peer_sub_id", {}),
    "subscriptiondiffs": ("id", "subid_seqnr", {}),
    "subscription_suspensions": ("id", "target_key", {}),
    "trusts": ("id", "peerid", {"secret-index": "secret"}),
    "property_lookup_v2": ("lookup_key", None, {}),
}
# USE_PROPERTY_LOOKUP_TABLE=false: no lookup table, a value-keyed GSI on properties instead.
LEGACY_TABLES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    **{k: v for k, v in ACTINGWEB_TABLES.items() if k != "property_lookup_v2"},
    "properties": ("id", "name", {"property-index": "value"}),
}
TTL_TABLE_SUFFIX = "attributes"
TTL_ATTRIBUTE = "ttl_timestamp"
GSI_PROJECTION = "ALL"

# Error codes botocore retries as throttling; once its attempts are used up they reach us.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "Throttling",
        "TooManyRequestsException",
    }
)


@dataclass
class ExpectedTable:
    """One table awops expects; ``hash_key`` None means a configured table of unknown schema."""

    name: str
    suffix: str
    hash_key: str | None = None
    range_key: str | None = None
    indexes: dict[str, str] | None = None  # GSI name -> hash key; None: not checked
    ttl_attribute: str = ""


def expected_tables(settings: DynamoDBSettings) -> list[ExpectedTable]:
    """The tables of ``[dynamodb] expected_tables``, else ActingWeb's set for the lookup mode."""
    schemas = ACTINGWEB_TABLES if settings.use_property_lookup_table else LEGACY_TABLES
    suffixes = settings.expected_tables or list(schemas)
    tables = []
    for suffix in suffixes:
        name = f"{settings.prefix}_{suffix}"
        known = schemas.get(suffix)
        ttl = TTL_ATTRIBUTE if suffix == TTL_TABLE_SUFFIX else ""
        if known is None:
            tables.append(ExpectedTable(name, suffix, ttl_attribute=ttl))
        else:
            hash_key, range_key, indexes = known
            tables.append(ExpectedTable(name, suffix, hash_key, range_key, dict(indexes), ttl))
    return tables


def table_names(settings: DynamoDBSettings, suffixes: list[str]) -> list[str]:
    """Full names for a job's ``tables`` option; an empty list means every expected table."""
    if not suffixes:
        return [table.name for table in expected_tables(settings)]
    return [f"{settings.prefix}_{suffix}" for suffix in suffixes]


# --- errors ----------------------------------------------------------------------------------


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, else ''."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translated_errors(client: Any, what: str) -> AbstractContextManager[None]:
    """Turn botocore's failures into awops errors that name the endpoint and the operation.

    An unreachable endpoint becomes :class:`BackendUnavailable`; throttling that outlasted
    botocore's retries, and any other AWS error, become :class:`JobError`. Both are status
    ``error``, never healthy.
    """

    def failed(code: str, message: str, attempts: int) -> JobError:
        if code in THROTTLING_CODES:
            return JobError(
                f"DynamoDB throttled {what} ({code}) after {attempts} attempt(s); "
                "raise [dynamodb] max_attempts or the table's capacity"
            )
        return JobError(f"DynamoDB {what} failed: {code}: {message}")

    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", "DynamoDB")
    return translated_aws_errors("DynamoDB", endpoint, what, what, failed)


# --- shared describe answers -------------------------------------------------------------------


class DynamoDBState:
    """Control-plane answers kept for ``ttl_seconds``, shared by every run of one process.

    Each key is fetched under its own lock, so two jobs running at once still make one call.
    ``calls`` counts the calls actually made, by operation.
    """

    def __init__(
        self, client: Any, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.calls: dict[str, int] = {}
        self._answers: dict[tuple[str, str], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def describe_table(self, name: str) -> dict[str, Any] | None:
        """``DescribeTable``'s ``Table``, or None when the table does not exist."""
        answer: dict[str, Any] | None = self._cached(
            "DescribeTable", name, lambda: self._describe_table(name)
        )
        return answer

    def time_to_live(self, name: str) -> dict[str, Any] | None:
        """``DescribeTimeToLive``'s ``TimeToLiveDescription``, or None for a missing table."""
        answer: dict[str, Any] | None = self._cached(
            "DescribeTimeToLive",
            name,
            lambda: self._missing_is_none(
                lambda: self.client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            ),
        )
        return answer

    def continuous_backups(self, name: str) -> dict[str, Any] | None:
        """``DescribeContinuousBackups``' description, or None for a missing table."""
        answer: dict[str, Any] | None = self._cached(
            "DescribeContinuousBackups",
            name,
            lambda: self._missing_is_none(
                lambda: self.client.describe_continuous_backups(TableName=name)[
                    "ContinuousBackupsDescription"
                ]
            ),
        )
        return answer

    def list_tables(self) -> list[str]:
        """Every table name in the region (``ListTables``, all pages)."""
        result: list[str] = self._cached("ListTables", "", self._list_tables)
        return result

    def forget(self, name: str) -> None:
        """Drop what is known about ``name`` (after changing it)."""
        with self._lock:
            for key in [key for key in self._answers if key[1] == name]:
                del self._answers[key]

    def _describe_table(self, name: str) -> dict[str, Any] | None:
        table: dict[str, Any] | None = self._missing_is_none(
            lambda: self.client.describe_table(TableName=name)["Table"]
        )
        return table

    def _list_tables(self) -> list[str]:
        names: list[str] = []
        request: dict[str, Any] = {}
        while True:
            self._count("ListTables")
            page = self.client.list_tables(**request)
            names += page.get("TableNames", [])
            if not page.get("LastEvaluatedTableName"):
                return names
            request["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]

    def _missing_is_none(self, fetch: Callable[[], Any]) -> Any:
        # Only called during an AWS call, when botocore is loaded already.
        from botocore.exceptions import ClientError

        try:
            return fetch()
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    def _count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1

    def _cached(self, operation: str, name: str, fetch: Callable[[], Any]) -> Any:
        key = (operation, name)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                hit = self._answers.get(key)
            if hit is not None and self.clock() - hit[0] < self.ttl_seconds:
                return hit[1]
            if operation != "ListTables":  # counted per page
                self._count(operation)
            with translated_errors(self.client, f"{operation} {name}".rstrip()):
                answer = fetch()
            with self._lock:
                self._answers[key] = (self.clock(), answer)
            return answer


_STATES: weakref.WeakKeyDictionary[AwsClients, DynamoDBState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def shared_state(aws: AwsClients) -> DynamoDBState:
    """The :class:`DynamoDBState` of these AWS clients; it lives and dies with them."""
    with _STATES_LOCK:
        state = _STATES.get(aws)
        if state is None:
            state = DynamoDBState(aws.dynamodb(), aws.settings.describe_cache_seconds)
            _STATES[aws] = state
        return state


# --- reading DescribeTable ---------------------------------------------------------------------


def key_of(key_schema: list[dict[str, str]]) -> tuple[str | None, str | None]:
    """(hash key, range key) of a ``KeySchema``."""
    hash_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "HASH"), None)
    range_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "RANGE"), None)
    return hash_key, range_key


def billing_mode(table: dict[str, Any]) -> str:
    """PAY_PER_REQUEST or PROVISIONED; tables that were always provisioned may omit the summary."""
    mode = table.get("BillingModeSummary", {}).get("BillingMode")
    if mode:
        return str(mode)
    throughput = table.get("ProvisionedThroughput", {})
    if throughput.get("ReadCapacityUnits", 0) or throughput.get("WriteCapacityUnits", 0):
        return "PROVISIONED"
    return "PAY_PER_REQUEST"


def record_table_metrics(metrics: MetricsBase, name: str, table: dict[str, Any] | None) -> None:
    """``awops_dynamodb_table_*`` from one ``DescribeTable`` (None: the table is missing)."""
    active = metrics.series(catalogue.DYNAMODB_TABLE_ACTIVE)
    items = metrics.series(catalogue.DYNAMODB_TABLE_ITEMS)
    size = metrics.series(catalogue.DYNAMODB_TABLE_SIZE)
    if table is None:
        active.labels(table=name).set(0)
        return
    active.labels(table=name).set(1 if table.get("TableStatus") == "ACTIVE" else 0)
    items.labels(table=name).set(table.get("ItemCount", 0))
    size.labels(table=name).set(table.get("TableSizeBytes", 0))


# --- bounded parallel scans --------------------------------------------------------------------


@dataclass
class ScanResult:
    matched: int = 0  # items the filter kept (``Count``)
    scanned: int = 0  # items read (``ScannedCount``)
    read_units: float = 0.0
    minimum: float | None = None  # smallest value of the projected attribute, if one was asked
    complete: bool = False  # every segment reached its end
    stopped_by: str = ""  # "read-unit budget", "time budget", "stop requested" or ""
    segments_done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def parallel_scan(
    client: Any,
    table: str,
    *,
    segments: int,
    deadline: float,
    stop_requested: Callable[[], bool],
    read_units_budget: float = 0.0,
    read_units_per_second: float = 0.0,
    page_size: int = 1000,
    filter_expression: str = "",
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    minimum_of: str = "",
) -> ScanResult:
    """Scan ``table`` in ``segments`` parallel segments, within a read-unit and time budget.

    With ``minimum_of`` (an attribute name placeholder such as ``#t``) each page projects just
    that attribute of the matching items and the smallest value is kept; otherwise
    ``Select=COUNT``. Both cost the same read units: DynamoDB bills what a scan reads, not what
    it returns. ``read_units_budget`` 0 means unbounded; a budget can be overrun by at most one
    page per segment. ``read_units_per_second`` > 0 paces the scan. ``deadline`` is a
    ``time.monotonic()`` value.
    """
    result = ScanResult()
    halt = threading.Event()
    started = time.monotonic()
    base: dict[str, Any] = {
        "TableName": table,
        "TotalSegments": segments,
        "ReturnConsumedCapacity": "TOTAL",
        "Limit": page_size,
    }
    if filter_expression:
        base["FilterExpression"] = filter_expression
    if names:
        base["ExpressionAttributeNames"] = names
    if values:
        base["ExpressionAttributeValues"] = values
    if minimum_of:
        base["ProjectionExpression"] = minimum_of
    else:
        base["Select"] = "COUNT"
    attribute = (names or {}).get(minimum_of, minimum_of)

    def stop(reason: str) -> None:
        with result._lock:
            result.stopped_by = result.stopped_by or reason
        halt.set()

    def scan_segment(segment: int) -> None:
        request = {**base, "Segment": segment}
        while not halt.is_set():
            if stop_requested():
                stop("stop requested")
                return
            if time.monotonic() >= deadline:
                stop("time budget")
                return
            page = client.scan(**request)
            lowest = None
            for item in page.get("Items", []):
                value = item.get(attribute, {}).get("N")
                if value is not None and (lowest is None or float(value) < lowest):
                    lowest = float(value)
            with result._lock:
                result.matched += page.get("Count", 0)
                result.scanned += page.get("ScannedCount", 0)
                result.read_units += page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
                if lowest is not None and (result.minimum is None or lowest < result.minimum):
                    result.minimum = lowest
                consumed = result.read_units
            if not page.get("LastEvaluatedKey"):
                with result._lock:
                    result.segments_done += 1
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            if read_units_budget and consumed >= read_units_budget:
                stop("read-unit budget")
                return
            if read_units_per_second > 0:
                ahead = consumed / read_units_per_second - (time.monotonic() - started)
                if ahead > 0:
                    halt.wait(min(ahead, max(0.0, deadline - time.monotonic())))

    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="awops-scan") as pool:
        futures = [pool.submit(scan_segment, segment) for segment in range(segments)]
        failure: BaseException | None = None
        for future in futures:
            try:
                future.result()
            except BaseException as exc:
                halt.set()
                failure = failure or exc
    if failure is not None:
        with translated_errors(client, f"Scan {table}"):
            raise failure
    result.complete = result.segments_done == segments
    if result.complete:
        result.stopped_by = ""
    return result


def utc_stamp(epoch_seconds: float) -> str:
    """``20261201T203915Z``: sortable, and legal in table and backup names."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))
