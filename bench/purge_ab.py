"""``pg-ttl-purge`` with its defaults against the same job with other settings, alternating.

For tuning: both run as ``awops run-once pg-ttl-purge`` on fresh copies of ``bench.purge``'s
table (2,000,000 rows, half expired) on its durable server, with the same revocations running,
in alternating order. The baseline is the build's defaults; the variant adds the given
settings (environment names). Prints each trial and, for each side, the median job and process
time, the statement_timeout hits, the longest transaction and the revocations' max latency.

    flock /tmp/awops-bench.lock .venv/bin/python -m bench.purge_ab --trials 10 \\
        AWOPS_JOB_PG_TTL_PURGE_BATCH_TARGET_MS=125 AWOPS_JOB_PG_TTL_PURGE_STATEMENT_TIMEOUT_MS=150
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from bench.purge import (
    DURABLE_SETTINGS,
    SERVER_SETTINGS,
    awops_purge,
    build_template,
    drop,
    fresh_copy,
    ms,
    under_revocations,
)
from tests.fix_pg import PgCluster

ROWS = 2_000_000
REVOKE_PAUSE_SECONDS = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("settings", nargs="+", help="the variant's NAME=VALUE settings")
    args = parser.parse_args()
    sides: dict[str, dict[str, str]] = {
        "defaults": {},
        "variant": dict(item.split("=", 1) for item in args.settings),
    }
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    cluster = PgCluster(extra_settings={**SERVER_SETTINGS, **DURABLE_SETTINGS}).init().start()
    try:
        build_template(cluster, ROWS)
        for trial in range(1, args.trials + 1):
            order = list(sides) if trial % 2 else list(reversed(sides))
            for side in order:
                db = fresh_copy(cluster, "purge_awops")
                (_rows, seconds, job_seconds, details), revoke, _sampled = under_revocations(
                    db,
                    ROWS,
                    REVOKE_PAUSE_SECONDS,
                    trial,
                    lambda db=db, side=side: awops_purge(db, sides[side]),
                )
                drop(cluster, db)
                figures = {
                    "job": job_seconds,
                    "process": seconds,
                    "timeouts": int(details.get("statement_timeouts", 0)),
                    "longest": float(details["longest_batch_seconds"]),
                    "revoke_max": revoke["max"],
                }
                results[side].append(figures)
                print(
                    f"trial {trial} {side}: job {job_seconds:.2f} s, process {seconds:.2f} s, "
                    f"{details['batches']} batches, {figures['timeouts']} statement_timeouts, "
                    f"longest {ms(figures['longest'])}, revocation max {ms(revoke['max'])}",
                    flush=True,
                )
    finally:
        cluster.destroy()

    print(f"\nmedians of {args.trials} trials each:")
    for side, settings in sides.items():
        rows = results[side]

        def median(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.median(row[key] for row in rows)

        print(
            f"  {side:<8} job {median('job'):.3f} s, process {median('process'):.3f} s, "
            f"statement_timeouts {sum(row['timeouts'] for row in rows)} in all, "
            f"longest {ms(median('longest'))}, revocation max {ms(median('revoke_max'))}"
            f"{'  ' + str(settings) if settings else ''}"
        )
    base, variant = results["defaults"], results["variant"]
    ratio = statistics.median(r["job"] for r in variant) / statistics.median(r["job"] for r in base)
    print(f"  job time, variant / defaults: {ratio:.2f}x")


if __name__ == "__main__":
    main()
