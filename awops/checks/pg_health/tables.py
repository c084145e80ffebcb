"""Per-table figures of ``pg-health``: rows, dead rows, vacuum and analyze, the ttl backlog.

Freshness is judged by what changed, not by the clock alone: a table nobody writes needs no
vacuum or analyze however old its last one is. Rows changed since the last analyze
(``n_mod_since_analyze``) against live rows say whether the planner's statistics are stale;
``attributes``, where the purge deletes and the application expires most rows, is the table
this matters for first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awops.metrics import catalogue

if TYPE_CHECKING:
    from awops.checks.pg_health import queries
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.metrics import MetricsBase


class TableFigures:
    """Records ActingWeb's tables against their thresholds; one per run."""

    def __init__(self, metrics: MetricsBase, options: PgHealthOptions, findings: Findings) -> None:
        self.options, self.findings = options, findings
        g = metrics.series
        self.live_rows = g(catalogue.PG_TABLE_LIVE_ROWS)
        self.dead_rows = g(catalogue.PG_TABLE_DEAD_ROWS)
        self.table_size = g(catalogue.PG_TABLE_SIZE)
        self.last_vacuum = g(catalogue.PG_TABLE_LAST_VACUUM)
        self.last_analyze = g(catalogue.PG_TABLE_LAST_ANALYZE)
        self.mod_since_analyze = g(catalogue.PG_TABLE_MOD_SINCE_ANALYZE)
        self.ttl_expired = g(catalogue.PG_TTL_EXPIRED_ROWS)
        self.ttl_oldest = g(catalogue.PG_TTL_OLDEST_EXPIRED_AGE)

    def tables(self, tables: queries.Tables | None) -> None:
        if tables is None:
            return
        opts = self.options
        report: dict[str, Any] = {}
        crowded: list[str] = []
        for name, stats in tables.found.items():
            self.mod_since_analyze.labels(table=name).set(stats.mod_since_analyze_rows)
            self.live_rows.labels(table=name).set(stats.live_rows)
            self.dead_rows.labels(table=name).set(stats.dead_rows)
            if stats.size_bytes is not None:
                self.table_size.labels(table=name).set(stats.size_bytes)
            self.last_vacuum.labels(table=name).set(stats.last_vacuum_timestamp or 0)
            self.last_analyze.labels(table=name).set(stats.last_analyze_timestamp or 0)
            ratio = stats.dead_rows / max(stats.live_rows, 1)
            report[name] = {
                "live_rows": stats.live_rows,
                "dead_rows": stats.dead_rows,
                "dead_rows_ratio": round(ratio, 4),
                "size_bytes": stats.size_bytes,
                "last_vacuum_timestamp": stats.last_vacuum_timestamp,
                "last_analyze_timestamp": stats.last_analyze_timestamp,
                "vacuum_age_seconds": _rounded(stats.vacuum_age_seconds),
                "analyze_age_seconds": _rounded(stats.analyze_age_seconds),
                "mod_since_analyze_rows": stats.mod_since_analyze_rows,
                "mod_since_analyze_ratio": round(
                    stats.mod_since_analyze_rows / max(stats.live_rows, 1), 4
                ),
            }
            if stats.dead_rows >= opts.min_dead_rows and ratio > opts.max_dead_rows_ratio:
                crowded.append(f"{name} {stats.dead_rows} dead of {stats.live_rows} live")
        self.findings.details.update(
            tables=report,
            max_dead_rows_ratio=opts.max_dead_rows_ratio,
            min_dead_rows=opts.min_dead_rows,
            max_vacuum_age_seconds=opts.max_vacuum_age_seconds,
            max_mod_since_analyze_ratio=opts.max_mod_since_analyze_ratio,
            min_mod_since_analyze_rows=opts.min_mod_since_analyze_rows,
            max_analyze_age_seconds=opts.max_analyze_age_seconds,
        )
        if crowded:
            self.findings.problems.append(
                f"dead rows above max_dead_rows_ratio {opts.max_dead_rows_ratio:g}: "
                + ", ".join(crowded)
            )
        self._freshness(tables)
        if tables.missing:
            self.findings.details["tables_missing"] = tables.missing
            self.findings.mark_unavailable("tables", "not found: " + ", ".join(tables.missing))

    def _freshness(self, tables: queries.Tables) -> None:
        opts, problems = self.options, self.findings.problems
        stale_statistics: list[str] = []
        not_analyzed: list[str] = []
        not_vacuumed: list[str] = []
        for name, stats in tables.found.items():
            modified, analyzed = stats.mod_since_analyze_rows, stats.analyze_age_seconds
            if modified >= opts.min_mod_since_analyze_rows:
                if modified / max(stats.live_rows, 1) > opts.max_mod_since_analyze_ratio:
                    stale_statistics.append(
                        f"{name} {modified} changed of {stats.live_rows} live "
                        f"(last analyze {_ago(analyzed)})"
                    )
                if opts.max_analyze_age_seconds and _older(analyzed, opts.max_analyze_age_seconds):
                    not_analyzed.append(
                        f"{name} (last analyze {_ago(analyzed)}, {modified} rows changed)"
                    )
            vacuumed = stats.vacuum_age_seconds
            if (
                opts.max_vacuum_age_seconds
                and stats.dead_rows >= opts.min_dead_rows
                and _older(vacuumed, opts.max_vacuum_age_seconds)
            ):
                not_vacuumed.append(
                    f"{name} (last vacuum {_ago(vacuumed)}, {stats.dead_rows} dead rows)"
                )
        if stale_statistics:
            problems.append(
                "rows changed since the last analyze above max_mod_since_analyze_ratio "
                f"{opts.max_mod_since_analyze_ratio:g}: " + ", ".join(stale_statistics)
            )
        if not_analyzed:
            problems.append(
                f"not analyzed within max_analyze_age_seconds {opts.max_analyze_age_seconds:g}: "
                + ", ".join(not_analyzed)
            )
        if not_vacuumed:
            problems.append(
                f"not vacuumed within max_vacuum_age_seconds {opts.max_vacuum_age_seconds:g}: "
                + ", ".join(not_vacuumed)
            )

    def ttl(self, backlog: queries.TtlBacklog | None) -> None:
        if backlog is None:
            return
        opts, table = self.options, self.options.ttl_table
        self.ttl_expired.labels(table=table).set(backlog.expired_rows)
        self.ttl_oldest.labels(table=table).set(backlog.oldest_expired_age_seconds)
        self.findings.details["ttl"] = {
            "table": table,
            "expired_rows": backlog.expired_rows,
            "expired_rows_exact": backlog.exact,
            "max_ttl_expired_rows": opts.max_ttl_expired_rows,
            "oldest_expired_age_seconds": round(backlog.oldest_expired_age_seconds, 3),
            "max_ttl_expired_age_seconds": opts.max_ttl_expired_age_seconds,
        }
        if opts.max_ttl_expired_rows and backlog.expired_rows > opts.max_ttl_expired_rows:
            about = "" if backlog.exact else "about "
            self.findings.problems.append(
                f"{about}{backlog.expired_rows} expired rows in {table} above max_ttl_expired_rows "
                f"{opts.max_ttl_expired_rows}"
            )
        if backlog.oldest_expired_age_seconds > opts.max_ttl_expired_age_seconds:
            self.findings.problems.append(
                f"oldest expired row in {table} expired "
                f"{backlog.oldest_expired_age_seconds:.0f} s ago, above "
                f"max_ttl_expired_age_seconds {opts.max_ttl_expired_age_seconds:g}"
            )


def _older(age_seconds: float | None, limit_seconds: float) -> bool:
    """Never (None, since the statistics were reset) counts as older than any limit."""
    return age_seconds is None or age_seconds > limit_seconds


def _ago(age_seconds: float | None) -> str:
    return "never" if age_seconds is None else f"{age_seconds:.0f} s ago"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
