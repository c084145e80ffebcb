"""File descriptors: raise the soft limit once, and keep a reserve for the database work.

The PostgreSQL pool, the lock connections, ``pg_dump``'s pipes and the boto3 clients all need
descriptors. A flood of HTTP connections must never take the last of them, or every job fails
with "connection is bad" while the flood lasts.
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)

# Ample for a pool of PG_POOL_MAX_SIZE connections plus lock sessions, a pg_dump with its pipes
# and boto3's connection pools, with room to spare.
DESCRIPTOR_RESERVE = 128
# When the hard limit is "unlimited", the soft limit is raised only this far: the kernel's
# fs.nr_open caps it anyway, and a bounded number keeps select-style code elsewhere sane.
_UNLIMITED_TARGET = 65536


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit in effect.

    Many distributions start services with a soft limit of 1024 and a far higher hard one; the
    higher one costs nothing until descriptors are used.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
            return soft
        logger.info("open files limit raised from %d to %d", soft, target)
        return target
    return soft


def open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def descriptors_low(new_fd: int, limit: int, reserve: int) -> bool:
    """Whether a freshly accepted descriptor leaves fewer than ``reserve`` free.

    The kernel hands out the lowest free number, so every number below ``new_fd`` is in use:
    at least ``new_fd + 1`` descriptors are open, counted without a system call.
    """
    return new_fd + 1 > limit - reserve
