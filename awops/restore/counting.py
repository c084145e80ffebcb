"""Counting the restored rows, each table as soon as pg_restore is done with it.

In a parallel restore pg_restore says ``finished item <id>`` for every entry. Once a table's
data and every entry that locks it exclusively (``ALTER TABLE ... ADD CONSTRAINT``, rules,
policies: the entries named after the table) are finished, nothing pg_restore still does
conflicts with a ``count(*)`` of it (index builds take a SHARE lock, foreign keys SHARE ROW
EXCLUSIVE), so it is counted then, by one of the counting sessions, while pg_restore goes on
with other tables. What was not counted by the end (a serial restore says nothing per
entry) is counted after. The counts are what pg-backup counts: ``count(*) FROM ONLY`` of every
table of :data:`~awops.restore.backup_parts.COUNTED_TABLES_QUERY`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import sql

from awops.restore.backup_parts import COUNTED_TABLES_QUERY
from awops.restore.toc import OF_TABLE, Name, TocEntry, longest_match


class RowCounter:
    """Row counts of a restore's tables; :meth:`finished` is told of each finished entry."""

    def __init__(self, entries: Iterable[TocEntry], known_tables: Iterable[str]) -> None:
        known = {_split(key) for key in known_tables}
        self._table_of: dict[int, Name] = {}
        self._pending: dict[Name, set[int]] = {}
        for entry in entries:
            if entry.desc == "TABLE DATA" or entry.desc in OF_TABLE:
                table = longest_match(entry, known)
                if table is not None:
                    self._table_of[entry.dump_id] = table
                    self._pending.setdefault(table, set()).add(entry.dump_id)
        self._lock = threading.Lock()
        self._ready: queue.SimpleQueue[Name | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.counts: dict[str, int] = {}
        self.counted_early = 0  # tables counted while pg_restore still worked
        self._early = True

    def finished(self, dump_id: int) -> None:
        """pg_restore finished entry ``dump_id`` (called from its stderr reader)."""
        with self._lock:
            table = self._table_of.pop(dump_id, None)
            if table is None:
                return
            pending = self._pending[table]
            pending.discard(dump_id)
            if not pending:
                self._ready.put(table)

    def start(self, sessions: Sequence[Any]) -> None:
        """Count ready tables with ``sessions``, one thread each, until :meth:`result`."""
        for number, conn in enumerate(sessions):
            thread = threading.Thread(
                target=self._work, args=(conn,), name=f"awops-count-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self, conn: Any) -> None:
        while (table := self._ready.get()) is not None:
            try:
                self.counts[f"{table[0]}.{table[1]}"] = count_table(conn, table)
                if self._early:
                    self.counted_early += 1
            except BaseException as exc:  # raised again by result()
                self._errors.append(exc)
                return

    def close(self) -> None:
        """Stop the counting threads (after their current table)."""
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def result(self, sessions: Sequence[Any]) -> dict[str, int]:
        """Every counted table's rows, once pg_restore has exited: what is left is counted
        now, shared out among ``sessions``."""
        self.close()
        self._early = False
        if self._errors:
            raise self._errors[0]
        tables = [(s, t) for s, t in sessions[0].execute(COUNTED_TABLES_QUERY).fetchall()]
        for schema, table in tables:
            if f"{schema}.{table}" not in self.counts:
                self._ready.put((schema, table))
        self.start(sessions)
        self.close()
        if self._errors:
            raise self._errors[0]
        return {f"{s}.{t}": self.counts[f"{s}.{t}"] for s, t in sorted(tables)}


def count_table(conn: Any, table: Name) -> int:
    query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
        sql.Identifier(table[0]), sql.Identifier(table[1])
    )
    (rows,) = conn.execute(query).fetchone()
    return int(rows)


def _split(key: str) -> Name:
    schema, _, name = key.partition(".")
    return schema, name
