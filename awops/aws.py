"""boto3 clients built from ActingWeb's variables; boto3 is imported only when a job needs it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from awops.config import DynamoDBSettings
from awops.errors import BackendUnavailable


class AwsClients:
    """One client per service, shared by runs (boto3 clients are thread-safe)."""

    def __init__(
        self, settings: DynamoDBSettings, on_dynamodb_reached: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self._on_dynamodb_reached = on_dynamodb_reached
        self._clients: dict[tuple[str, str, str, tuple[str, str]], Any] = {}
        self._lock = threading.Lock()

    def dynamodb(self) -> Any:
        # An empty endpoint leaves boto3 to its own AWS_ENDPOINT_URL_DYNAMODB or the AWS default.
        return self.client("dynamodb", self.settings.endpoint_url)

    def s3(
        self, endpoint_url: str = "", access_key_id: str = "", secret_access_key: str = ""
    ) -> Any:
        """S3's client; with a key and secret (a target URL's own), one that signs with those
        instead of boto3's default chain."""
        return self.client("s3", endpoint_url, "", (access_key_id, secret_access_key))

    def rds(self, endpoint_url: str = "", region: str = "") -> Any:
        # An empty endpoint leaves boto3 to its own AWS_ENDPOINT_URL_RDS or the AWS default.
        return self.client("rds", endpoint_url, region)

    def application_autoscaling(self) -> Any:
        """DynamoDB auto scaling's home. boto3 finds its endpoint itself (the AWS default, or
        ``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING``); ``AWS_DB_HOST`` is DynamoDB's alone."""
        return self.client("application-autoscaling")

    def client(
        self,
        service: str,
        endpoint_url: str = "",
        region: str = "",
        credentials: tuple[str, str] = ("", ""),
    ) -> Any:
        """``service``'s client; an empty ``region`` is ``[dynamodb] region``; ``credentials``
        (key, secret) replace boto3's default chain when both are given."""
        key = (service, endpoint_url, region, credentials)
        with self._lock:
            if key not in self._clients:
                import boto3
                from botocore.config import Config as BotoConfig

                s = self.settings
                config = BotoConfig(
                    region_name=region or s.region,
                    # botocore's "max_attempts" counts retries; total_max_attempts counts calls.
                    retries=cast(Any, {"mode": s.retry_mode, "total_max_attempts": s.max_attempts}),
                    connect_timeout=s.connect_timeout_seconds,
                    read_timeout=s.read_timeout_seconds,
                )
                session: Any = boto3.session.Session()
                access_key_id, secret_access_key = credentials
                signing = (
                    {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
                    if access_key_id and secret_access_key
                    else {}
                )
                client = session.client(
                    service, endpoint_url=endpoint_url or None, config=config, **signing
                )
                if service == "dynamodb":
                    # Any parsed answer, even an error, proves the endpoint is reachable.
                    client.meta.events.register(
                        "after-call.dynamodb", lambda **_: self._on_dynamodb_reached()
                    )
                self._clients[key] = client
            return self._clients[key]


def epoch(value: Any) -> float | None:
    """A datetime (botocore's) or epoch number as epoch seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@contextmanager
def translated_aws_errors(
    service: str,
    endpoint: str,
    during: str,
    operation: str,
    client_error: Callable[[str, str, int], Exception],
) -> Iterator[None]:
    """Turn botocore's failures into awops errors, status ``error``, never healthy.

    An unreachable ``endpoint`` (named with what was ``during`` way) and missing credentials
    become :class:`BackendUnavailable`; an AWS error becomes what ``client_error`` makes of
    its code, message and the attempts botocore made (throttling outlasts its retries).
    """
    from botocore import exceptions as bex

    try:
        yield
    except (bex.ConnectionError, bex.HTTPClientError) as exc:
        raise BackendUnavailable(
            f"{service} endpoint {endpoint} unreachable during {during}: {type(exc).__name__}"
        ) from None
    except bex.NoCredentialsError:
        raise BackendUnavailable(
            f"no AWS credentials for {service} ({operation}): set AWS_ACCESS_KEY_ID or a role"
        ) from None
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        raise client_error(str(error.get("Code", "")), error.get("Message", ""), attempts) from None
