"""The ``pgbackrest`` command line, driven with its JSON output.

Every command gets ``--stanza`` and, when set, ``--config``; console logging is off and
warnings go to stderr, so stdout holds only the JSON. No password is ever on the command line:
pgBackRest reads its database and repository settings from its own configuration.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from awops.pgbackrest import process
from awops.pgbackrest.errors import PgBackRestError
from awops.pgbackrest.info import StanzaInfo, parse_info
from awops.pgbackrest.process import RunAs

logger = logging.getLogger(__name__)


class CheckFailed(PgBackRestError):
    """``pgbackrest check`` ran and failed: archiving or the configuration is broken."""


@dataclass(frozen=True)
class Settings:
    """Where pgBackRest is and which stanza awops asks about (the job options that say so)."""

    program: str
    config: str
    stanza: str
    option_prefix: str  # "jobs.pgbackrest": named in errors so the operator finds the key


def resolve_program(program: str, option: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise PgBackRestError(
            f"{program} not found: install pgBackRest (Debian: apt-get install pgbackrest) "
            f"or set {option} to its path"
        )
    return found


class PgBackRest:
    """Runs pgbackrest commands for one stanza as children that stop when the job stops."""

    def __init__(
        self,
        settings: Settings,
        *,
        stop_requested: Callable[[], bool],
        command_timeout_seconds: float,
        run_as: RunAs | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.program = resolve_program(settings.program, f"{settings.option_prefix}.pgbackrest")
        self.stop_requested = stop_requested
        self.command_timeout_seconds = command_timeout_seconds
        self.run_as = run_as
        self.env = dict(env) if env is not None else process.child_environment(run_as)

    def arguments(self, *extra: str) -> list[str]:
        args = [self.program]
        if self.settings.config:
            args.append(f"--config={self.settings.config}")
        args += [
            f"--stanza={self.settings.stanza}",
            "--log-level-console=off",
            "--log-level-stderr=warn",
            *extra,
        ]
        return args

    def _run(
        self, args: Sequence[str], what: str, timeout_seconds: float, timeout_option: str
    ) -> process.Completed:
        logger.debug("running %s", " ".join(args))
        return process.run(
            args,
            env=self.env,
            run_as=self.run_as,
            stop_requested=self.stop_requested,
            timeout_seconds=timeout_seconds,
            what=what,
            timeout_option=f"{self.settings.option_prefix}.{timeout_option}",
        )

    def info(self, repo: int = 0) -> StanzaInfo:
        """The stanza's status, backups and archive; ``repo`` 0 = every repository."""
        extra = ["--log-level-file=off", "--output=json"]
        if repo:
            extra.append(f"--repo={repo}")
        result = self._run(
            self.arguments(*extra, "info"),
            "pgbackrest info",
            self.command_timeout_seconds,
            "command_timeout_seconds",
        )
        if result.returncode != 0:
            raise PgBackRestError(
                f"pgbackrest info failed (exit {result.returncode}): {result.message}"
            )
        return parse_info(result.stdout, self.settings.stanza)

    def list_archive(self, repo: int, path: str) -> dict[str, dict[str, Any]]:
        """``repo-ls`` of ``archive/<stanza>/<path>`` in repository ``repo``: name -> entry."""
        where = f"archive/{self.settings.stanza}/{path}"
        result = self._run(
            self.arguments(
                "--log-level-file=off", f"--repo={repo}", "--output=json", "repo-ls", where
            ),
            f"pgbackrest repo-ls {where}",
            self.command_timeout_seconds,
            "command_timeout_seconds",
        )
        if result.returncode != 0:
            raise PgBackRestError(
                f"pgbackrest repo-ls {where} failed (exit {result.returncode}): {result.message}"
            )
        try:
            listing = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise PgBackRestError(f"pgbackrest repo-ls {where} printed no JSON") from None
        if not isinstance(listing, dict):
            raise PgBackRestError(f"pgbackrest repo-ls {where} printed JSON that is not a map")
        return {name: entry for name, entry in listing.items() if name != "."}

    def check(self, archive_timeout_seconds: float, timeout_seconds: float) -> None:
        """``pgbackrest check``: a WAL switch, archived through ``archive_command``, arrives
        in every repository. Raises :class:`CheckFailed` with pgBackRest's message."""
        extra = (
            [f"--archive-timeout={archive_timeout_seconds:g}"] if archive_timeout_seconds else []
        )
        result = self._run(
            self.arguments(*extra, "check"),
            "pgbackrest check",
            timeout_seconds,
            "check_timeout_seconds",
        )
        if result.returncode != 0:
            raise CheckFailed(
                f"pgbackrest check failed (exit {result.returncode}): {result.message}"
            )

    def restore(
        self,
        *,
        repo: int,
        label: str,
        data_dir: str,
        tablespace_dir: str,
        process_max: int,
        timeout_seconds: float,
    ) -> None:
        """Restore backup ``label`` of ``repo`` into the empty ``data_dir`` only.

        Recovery stops at consistency and promotes; archiving is off in the copy, so it never
        pushes WAL of its own into the repository. Tablespaces go under ``tablespace_dir``, not
        to their production paths; symlinks become directories (pgBackRest's default); a
        ``pg1-host`` in the configuration is ignored, so the restore is always local.
        """
        extra = [
            f"--repo={repo}",
            f"--set={label}",
            f"--pg1-path={data_dir}",
            "--reset-pg1-host",
            "--type=immediate",
            "--target-action=promote",
            "--archive-mode=off",
            f"--tablespace-map-all={tablespace_dir}",
        ]
        if process_max:
            extra.append(f"--process-max={process_max}")
        result = self._run(
            self.arguments(*extra, "restore"),
            "pgbackrest restore",
            timeout_seconds,
            "timeout_seconds",
        )
        if result.returncode != 0:
            raise PgBackRestError(
                f"pgbackrest restore of {label} failed (exit {result.returncode}): {result.message}"
            )
