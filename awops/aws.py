"""boto3 clients built from ActingWeb's variables; boto3 is imported only when a job needs it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from awops.config import DynamoDBSettings


class AwsClients:
    """One client per service, shared by runs (boto3 clients are thread-safe)."""

    def __init__(
        self, settings: DynamoDBSettings, on_dynamodb_reached: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self._on_dynamodb_reached = on_dynamodb_reached
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def dynamodb(self) -> Any:
        # An empty endpoint leaves boto3 to its own AWS_ENDPOINT_URL_DYNAMODB or the AWS default.
        return self.client("dynamodb", self.settings.endpoint_url)

    def s3(self, endpoint_url: str = "") -> Any:
        return self.client("s3", endpoint_url)

    def rds(self, endpoint_url: str = "", region: str = "") -> Any:
        # An empty endpoint leaves boto3 to its own AWS_ENDPOINT_URL_RDS or the AWS default.
        return self.client("rds", endpoint_url, region)

    def application_autoscaling(self) -> Any:
        """DynamoDB auto scaling's home. boto3 finds its endpoint itself (the AWS default, or
        ``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING``); ``AWS_DB_HOST`` is DynamoDB's alone."""
        return self.client("application-autoscaling")

    def client(self, service: str, endpoint_url: str = "", region: str = "") -> Any:
        """``service``'s client; an empty ``region`` is ``[dynamodb] region``."""
        key = (service, endpoint_url, region)
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
                client = session.client(service, endpoint_url=endpoint_url or None, config=config)
                if service == "dynamodb":
                    # Any parsed answer, even an error, proves the endpoint is reachable.
                    client.meta.events.register(
                        "after-call.dynamodb", lambda **_: self._on_dynamodb_reached()
                    )
                self._clients[key] = client
            return self._clients[key]
