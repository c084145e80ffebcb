"""Per-table figures of ``pg-health``: rows, dead rows, vacuum and analyze, the ttl backlog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from awops import ttl_backlog

if TYPE_CHECKING:
    from awops.checks.pg_health import queries
    from awops.checks.pg_health.findings import Findings
    from awops.checks.pg_health.options import PgHealthOptions
    from awops.metrics import MetricsBase


class TableFigures:
    """Records ActingWeb's tables against their thresholds; one per run."""

    def __init__(self, metrics: MetricsBase, options: PgHealthOptions, findings: Findings) -> None:
        self.options, self.findings = options, findings
        g, table = metrics.gauge, ["table"]
        self.live_rows = g("awops_pg_table_live_rows", "Estimated live rows", table)
        self.dead_rows = g("awops_pg_table_dead_rows", "Estimated dead rows", table)
        self.table_size = g("awops_pg_table_size_bytes", "Size with indexes and TOAST", table)
        self.last_vacuum = g(
            "awops_pg_table_last_vacuum_timestamp_seconds",
            "Last vacuum or autovacuum (0: never since statistics were reset)",
            table,
        )
        self.last_analyze = g(
            "awops_pg_table_last_analyze_timestamp_seconds",
            "Last analyze or autoanalyze (0: never since statistics were reset)",
            table,
        )
        self.ttl_expired = g("awops_pg_ttl_expired_rows", ttl_backlog.EXPIRED_ROWS_HELP, table)
        self.ttl_oldest = g(
            "awops_pg_ttl_oldest_expired_age_seconds", ttl_backlog.OLDEST_AGE_HELP, table
        )

    def tables(self, tables: queries.Tables | None) -> None:
        if tables is None:
            return
        opts = self.options
        report: dict[str, Any] = {}
        crowded: list[str] = []
        for name, stats in tables.found.items():
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
            }
            if stats.dead_rows >= opts.min_dead_rows and ratio > opts.max_dead_rows_ratio:
                crowded.append(f"{name} {stats.dead_rows} dead of {stats.live_rows} live")
        self.findings.details.update(
            tables=report,
            max_dead_rows_ratio=opts.max_dead_rows_ratio,
            min_dead_rows=opts.min_dead_rows,
        )
        if crowded:
            self.findings.problems.append(
                f"dead rows above max_dead_rows_ratio {opts.max_dead_rows_ratio:g}: "
                + ", ".join(crowded)
            )
        if tables.missing:
            self.findings.details["tables_missing"] = tables.missing
            self.findings.mark_unavailable("tables", "not found: " + ", ".join(tables.missing))

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
