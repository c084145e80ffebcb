"""An archive's table of contents (``pg_restore --list``), and choosing tables from it.

``pg_restore --table`` restores a table's definition and data but none of its indexes or
constraints. Choosing entries from the table of contents instead (``--use-list``) brings
the table, its data, and everything that belongs to it: constraints, indexes, defaults,
triggers, rules, policies, its own sequences, comments and grants. Which table an index or a
sequence belongs to is not in the listing, so the DDL of those entries is read back from
the archive (``pg_restore --file=-`` of just them: no data is read) and parsed.

A foreign key is kept only when the table it references is restored as well: into a side
database, a key to a table that is not there would fail the whole restore.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# One identifier as pg_dump writes it: quoted (with "" for a quote) or plain lower case.
_IDENT = r'(?:"(?:[^"]|"")*"|[a-z_][a-z0-9_$]*)'
_QUALIFIED = rf"(?P<{{0}}_schema>{_IDENT})\.(?P<{{0}}_name>{_IDENT})"
_ENTRY = re.compile(r"^(?P<id>\d+); (?P<tableoid>\d+) (?P<oid>\d+) (?P<rest>.*)$")
_HEADER_VERSION = re.compile(r"^;\s+Dumped by pg_dump version: (?P<version>.+)$")
_INDEX_DDL = re.compile(
    rf"^CREATE (?:UNIQUE )?INDEX (?P<index>{_IDENT}) ON (?:ONLY )?" + _QUALIFIED.format("table"),
    re.MULTILINE,
)
_FK_DDL = re.compile(
    r"^ALTER TABLE (?:ONLY )?"
    + _QUALIFIED.format("table")
    + rf"\s+ADD CONSTRAINT (?P<constraint>{_IDENT}) FOREIGN KEY .*? REFERENCES "
    + _QUALIFIED.format("ref"),
    re.MULTILINE | re.DOTALL,
)
_OWNED_DDL = re.compile(
    r"^ALTER SEQUENCE "
    + _QUALIFIED.format("seq")
    + r" OWNED BY "
    + _QUALIFIED.format("table")
    + rf"\.{_IDENT};",
    re.MULTILINE,
)
_IDENTITY_DDL = re.compile(
    r"^ALTER TABLE (?:ONLY )?"
    + _QUALIFIED.format("table")
    + rf" ALTER COLUMN {_IDENT} ADD GENERATED .*? AS IDENTITY \(\s*SEQUENCE NAME "
    + _QUALIFIED.format("seq"),
    re.MULTILINE | re.DOTALL,
)
# Entries whose tag starts with the name of the table they belong to ("table constraint");
# some take an ACCESS EXCLUSIVE lock on it (ALTER TABLE ... ADD CONSTRAINT, CREATE RULE).
OF_TABLE = frozenset(
    ("CONSTRAINT", "CHECK CONSTRAINT", "DEFAULT", "TRIGGER", "RULE", "POLICY", "ROW SECURITY")
)
# Entries whose owner table is read from their DDL.
NEEDS_DDL = frozenset(("INDEX", "FK CONSTRAINT", "SEQUENCE", "SEQUENCE OWNED BY"))
# Every kind of entry pg_dump writes, longest first: "TABLE DATA" before "TABLE".
_KINDS = """
    TABLE DATA|TABLE|INDEX ATTACH|INDEX|FK CONSTRAINT|CHECK CONSTRAINT|CONSTRAINT|DEFAULT ACL
    |DEFAULT|TRIGGER|RULE|POLICY|ROW SECURITY|SEQUENCE OWNED BY|SEQUENCE SET|SEQUENCE|COMMENT
    |ACL|SCHEMA|MATERIALIZED VIEW DATA|MATERIALIZED VIEW|VIEW|FUNCTION|EXTENSION|TYPE|DOMAIN
    |STATISTICS|FOREIGN TABLE|PUBLICATION TABLE|PUBLICATION|SUBSCRIPTION|EVENT TRIGGER
    |AGGREGATE|PROCEDURE|OPERATOR|COLLATION|CONVERSION|TEXT SEARCH CONFIGURATION
    |TEXT SEARCH DICTIONARY|LARGE OBJECT|BLOBS|BLOB"""
_DESCS = sorted((kind.strip() for kind in _KINDS.split("|")), key=len, reverse=True)


def unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def listed(name: str) -> str:
    """``name`` as ``pg_restore --list`` prints it: line breaks become spaces."""
    return name.replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class TocEntry:
    """One line of ``pg_restore --list``: ``dump_id; tableoid oid DESC schema tag owner``.

    Schema, tag and owner are separated by spaces that names may hold too, so they are not
    split apart: :meth:`names` asks whether the entry is of a given schema and name.
    """

    line: str
    dump_id: int
    desc: str
    rest: str  # "schema tag owner"; schema "-" for entries outside a schema

    def names(self, schema: str, *parts: str) -> bool:
        """Whether the entry's schema and tag start with ``schema`` and ``parts``, joined by
        spaces (what follows is the owner, or more of the tag: see :func:`longest_match`)."""
        words = " ".join(listed(p) for p in (schema, *parts))
        return self.rest == words or self.rest.startswith(words + " ")


@dataclass
class Toc:
    """The archive's entries, and the pg_dump version its header names."""

    entries: list[TocEntry]
    pg_dump_version: str = ""


def parse_toc(listing: str) -> Toc:
    """The entries of ``pg_restore --list`` output; lines it cannot read are not entries."""
    toc = Toc([])
    for line in listing.splitlines():
        header = _HEADER_VERSION.match(line)
        if header:
            toc.pg_dump_version = header["version"].strip()
            continue
        match = _ENTRY.match(line)
        if match is None:
            continue
        text = match["rest"]
        desc = next((d for d in _DESCS if text.startswith(d + " ")), None)
        if desc is None:
            desc = text.partition(" ")[0]
        toc.entries.append(TocEntry(line, int(match["id"]), desc, text[len(desc) + 1 :]))
    return toc


@dataclass
class Selection:
    """The entries that restore the chosen tables, and the foreign keys left out."""

    entries: list[TocEntry]
    tables: list[str]  # "schema.table"
    skipped_foreign_keys: list[str] = field(default_factory=list)

    def use_list(self) -> str:
        """The text of a ``pg_restore --use-list`` file."""
        return "".join(entry.line + "\n" for entry in self.entries)


@dataclass
class _Owners:
    """Which table each index and sequence belongs to; what each foreign key references."""

    index_table: dict[tuple[str, str], str] = field(default_factory=dict)
    sequence_table: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    foreign_keys: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)


def _read_owners(ddl: str) -> _Owners:
    owners = _Owners()
    for m in _INDEX_DDL.finditer(ddl):
        # An index lives in its table's schema.
        index = (unquote(m["table_schema"]), unquote(m["index"]))
        owners.index_table[index] = unquote(m["table_name"])
    for m in _FK_DDL.finditer(ddl):
        key = (unquote(m["table_schema"]), unquote(m["table_name"]), unquote(m["constraint"]))
        owners.foreign_keys[key] = (unquote(m["ref_schema"]), unquote(m["ref_name"]))
    for pattern in (_OWNED_DDL, _IDENTITY_DDL):
        for m in pattern.finditer(ddl):
            seq = (unquote(m["seq_schema"]), unquote(m["seq_name"]))
            owners.sequence_table[seq] = (unquote(m["table_schema"]), unquote(m["table_name"]))
    return owners


Name = tuple[str, str]  # (schema, name)


def longest_match(entry: TocEntry, candidates: Iterable[Name], *kind: str) -> Name | None:
    """The candidate the entry names, the longest when several do: an entry of table
    ``a b`` starts with ``a`` too."""
    found = [c for c in candidates if entry.names(c[0], *kind, c[1])]
    return max(found, key=lambda c: len(c[1])) if found else None


def select_tables(
    toc: Toc,
    tables: Iterable[str],
    read_ddl: Callable[[list[TocEntry]], str],
    existing_schemas: Iterable[str] = ("public",),
    known_tables: Iterable[str] = (),
) -> Selection:
    """The entries that restore ``tables`` (manifest keys, ``schema.table``) with what
    belongs to them. ``read_ddl`` returns the SQL of the entries it is given;
    ``existing_schemas`` are not created again (nor dropped by ``--clean``);
    ``known_tables`` are every table of the backup (the manifest's keys), so that an entry
    of table ``a b`` is not taken for one of table ``a``."""
    wanted = {_split(key) for key in tables}
    known = wanted | {_split(key) for key in known_tables}
    need_ddl = [e for e in toc.entries if e.desc in NEEDS_DDL and not e.rest.startswith("- ")]
    owners = _read_owners(read_ddl(need_ddl)) if need_ddl else _Owners()
    all_indexes = set(owners.index_table)
    indexes = {(s, i) for (s, i), table in owners.index_table.items() if (s, table) in wanted}
    sequences = {seq for seq, table in owners.sequence_table.items() if table in wanted}
    schemas = {schema for schema, _ in wanted} - set(existing_schemas)
    selection = Selection([], sorted(f"{s}.{t}" for s, t in wanted))

    for entry in toc.entries:
        keep = False
        if entry.desc in ("TABLE", "TABLE DATA") or entry.desc in OF_TABLE:
            keep = longest_match(entry, known) in wanted
        elif entry.desc == "SCHEMA":
            keep = any(entry.names("-", schema) for schema in schemas)
        elif entry.desc == "FK CONSTRAINT":
            keep = longest_match(entry, known) in wanted and _foreign_key_kept(
                entry, wanted, owners, selection
            )
        elif entry.desc == "INDEX":
            keep = longest_match(entry, all_indexes) in indexes
        elif entry.desc in ("SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET"):
            keep = longest_match(entry, set(owners.sequence_table)) in sequences
        elif entry.desc in ("COMMENT", "ACL"):
            keep = _describes_kept(entry, known, wanted, all_indexes, indexes, sequences)
        if keep:
            selection.entries.append(entry)
    return selection


def _split(key: str) -> Name:
    schema, _, name = key.partition(".")
    return schema, name


def _foreign_key_kept(
    entry: TocEntry, wanted: set[Name], owners: _Owners, selection: Selection
) -> bool:
    for (schema, table, constraint), referenced in owners.foreign_keys.items():
        if entry.names(schema, table, constraint):
            if referenced in wanted:
                return True
            selection.skipped_foreign_keys.append(
                f"{schema}.{table} {constraint} (references {referenced[0]}.{referenced[1]}, "
                "which is not restored)"
            )
            return False
    selection.skipped_foreign_keys.append(f"{entry.rest} (its DDL could not be read)")
    return False


def _describes_kept(
    entry: TocEntry,
    known: set[Name],
    wanted: set[Name],
    all_indexes: set[Name],
    indexes: set[Name],
    sequences: set[Name],
) -> bool:
    """A comment or grant on a kept table, column, index, sequence or constraint."""
    if longest_match(entry, known, "TABLE") in wanted:
        return True
    if longest_match(entry, all_indexes, "INDEX") in indexes:
        return True
    if longest_match(entry, sequences, "SEQUENCE") is not None:
        return True
    for schema, table in wanted:
        column = f"{listed(schema)} COLUMN {listed(table)}."
        on_table = f" ON {listed(table)} "
        if entry.rest.startswith(column):
            return True
        if entry.rest.startswith(f"{listed(schema)} CONSTRAINT ") and on_table in entry.rest:
            return True
    return False
