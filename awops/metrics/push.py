"""Push ``run-once`` metrics to a Pushgateway so a CronJob's results outlive its pod."""

from __future__ import annotations

import logging
import socket

from prometheus_client import push_to_gateway

from awops.config import Config
from awops.logs import scrubber
from awops.metrics import Metrics

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_SECONDS = 10.0


def push_run_metrics(config: Config, metrics: Metrics) -> bool:
    """Push; a failed push is logged and never changes the exit code."""
    instance = config.daemon.instance or socket.gethostname()
    try:
        push_to_gateway(
            config.metrics.pushgateway_url,
            job="awops",
            grouping_key={"instance": instance},
            registry=metrics.registry,
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except Exception as exc:
        logger.warning("push to Pushgateway failed: %s", scrubber.scrub(str(exc)))
        return False
    logger.info("pushed metrics to the Pushgateway (instance %s)", instance)
    return True
