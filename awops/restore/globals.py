"""Applying a backup's roles (``pg_dumpall --globals-only --no-role-passwords`` output).

Roles that exist are skipped whole: their attributes, comments, settings and memberships
stay as they are, so restoring into a cluster that already has ActingWeb's role changes
nothing of it. A role that is missing is created with its attributes, comment, settings and
memberships, all in one transaction: either every missing role is there afterwards or none
is. Tablespaces (directories of another host) and per-database settings (for databases that
may not exist yet) are not applied; the report lists them. The roles come without passwords:
set one (``ALTER ROLE ... PASSWORD``) before the application logs in with it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from awops.errors import first_line
from awops.restore.request import RestoreError

logger = logging.getLogger(__name__)

_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE_ROLE = re.compile(rf"^CREATE ROLE (?P<role>{_IDENT})$", re.IGNORECASE)
_OF_ROLE = re.compile(
    rf"^(?:ALTER ROLE|COMMENT ON ROLE|SECURITY LABEL FOR \S+ ON ROLE) (?P<role>{_IDENT})(?=\s|$)",
    re.IGNORECASE,
)
_IN_DATABASE = re.compile(rf"^ALTER ROLE {_IDENT} IN DATABASE ", re.IGNORECASE)
_GRANT = re.compile(
    rf"^GRANT (?P<what>.+?) TO (?P<grantee>{_IDENT})(?P<options>(?: WITH [A-Z ,]+?)?)"
    rf"(?: GRANTED BY {_IDENT})?$",
    re.IGNORECASE | re.DOTALL,
)
_TABLESPACE = re.compile(r"^(?:CREATE|ALTER|COMMENT ON) TABLESPACE\b|\bON TABLESPACE\b", re.I)


def unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def split_statements(script: str) -> list[str]:
    """The SQL statements of a pg_dumpall script, without comments and psql meta-commands.

    Statements end at a ``;`` outside quotes; string literals ('...', with '' inside) and
    quoted identifiers ("...") may hold ``;``, ``--`` and newlines.
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(script)
    at_line_start = True
    while i < n:
        char = script[i]
        if at_line_start and char == "\\" and not "".join(current).strip():
            i = _line_end(script, i)  # \connect, \restrict and the like: psql's, not SQL
            continue
        at_line_start = char == "\n"
        if char == "-" and script.startswith("--", i):
            i = _line_end(script, i)
            continue
        if char in ("'", '"'):
            end = i + 1
            while end < n:
                if script[end] == char:
                    if end + 1 < n and script[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            current.append(script[i : end + 1])
            i = end + 1
            continue
        if char == ";":
            statement = " ".join("".join(current).split())
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(char)
        i += 1
    if "".join(current).strip():
        statements.append(" ".join("".join(current).split()))
    return statements


def _line_end(script: str, i: int) -> int:
    end = script.find("\n", i)
    return len(script) if end < 0 else end


@dataclass
class GlobalsPlan:
    """What applying the roles object will run, and what it leaves alone."""

    statements: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # roles that exist
    not_applied: list[str] = field(default_factory=list)  # statements awops does not run

    def as_json(self) -> dict[str, Any]:
        return {
            "roles_created": self.created,
            "roles_skipped": self.skipped,
            "not_applied": self.not_applied,
        }


def plan_globals(script: str, existing_roles: set[str]) -> GlobalsPlan:
    """Which statements of ``script`` to run, given the roles the cluster has."""
    plan = GlobalsPlan()
    new_roles: set[str] = set()
    for statement in split_statements(script):
        upper = statement.upper()
        if upper.startswith("SET "):
            plan.statements.append(statement)
            continue
        create = _CREATE_ROLE.match(statement)
        if create:
            role = unquote(create["role"])
            if role in existing_roles:
                plan.skipped.append(role)
            else:
                new_roles.add(role)
                plan.created.append(role)
                plan.statements.append(statement)
            continue
        if _TABLESPACE.search(statement) or _IN_DATABASE.match(statement):
            plan.not_applied.append(statement)
            continue
        of_role = _OF_ROLE.match(statement)
        if of_role:
            if unquote(of_role["role"]) in new_roles:
                plan.statements.append(statement)
            continue
        grant = _GRANT.match(statement)
        if grant:
            if unquote(grant["grantee"]) in new_roles:
                # The grantor of the old cluster may not exist here; the restoring role
                # grants instead.
                plan.statements.append(
                    f"GRANT {grant['what']} TO {grant['grantee']}{grant['options']}"
                )
            continue
        plan.not_applied.append(statement)
    return plan


def apply_globals(conn: Any, script: str) -> GlobalsPlan:
    """Create the roles of ``script`` that ``conn``'s cluster lacks, in one transaction."""
    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    plan = plan_globals(script, existing)
    for statement in plan.not_applied:
        logger.warning("roles object: not applied: %s", statement[:200])
    if plan.skipped:
        logger.info("roles that exist, left as they are: %s", ", ".join(plan.skipped))

    try:
        with conn.transaction():
            for statement in plan.statements:
                conn.execute(statement)  # the backup's own SQL, checked by its sha256
    except psycopg.Error as exc:
        raise RestoreError(
            f"applying the backup's roles failed, none created: {first_line(exc)} (the restoring "
            "role needs CREATEROLE)"
        ) from None
    if plan.created:
        logger.info("roles created (without passwords): %s", ", ".join(plan.created))
    return plan
