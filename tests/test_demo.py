"""``make demo`` prints each awops command with the variables it ran with, secrets masked, so a
newcomer can repeat any step by hand."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo import MASK, awops_variables, shell_command
from tests.fix_awops import clean_environ
from tests.fix_pg import PgDatabase

ROOT = Path(__file__).resolve().parent.parent


def test_commands_are_printed_with_their_variables_and_secrets_masked() -> None:
    base = {"HOME": "/root", "PG_DB_HOST": "same"}
    env = {
        **base,
        "PG_DB_PORT": "5433",
        "PG_DB_PASSWORD": "pg-pw",
        "AWS_SECRET_ACCESS_KEY": "aws-key",
        "AWS_SESSION_TOKEN": "aws-token",
        "AWOPS_BACKUP_TARGET": "file:///tmp/a b",
        "UNRELATED": "x",
    }
    assert awops_variables(env, base) == {
        "AWOPS_BACKUP_TARGET": "'file:///tmp/a b'",
        "AWS_SECRET_ACCESS_KEY": MASK,
        "AWS_SESSION_TOKEN": MASK,
        "PG_DB_PASSWORD": MASK,
        "PG_DB_PORT": "5433",
    }
    assert shell_command(["run-once", "pg-health", "--json"], {**env, "PG_DB_PORT": "1"}, env) == (
        "$ PG_DB_PORT=1 awops run-once pg-health --json"
    )
    assert shell_command(["jobs"], env, env) == "$ awops jobs"


def test_a_printed_command_repeats_the_step(aw_db: PgDatabase) -> None:
    env = clean_environ(aw_db.awops_env())
    exports = [f"export {name}={value}" for name, value in awops_variables(env, os.environ).items()]
    command = shell_command(["run-once", "pg-health"], env, env).removeprefix("$ ")
    script = "\n".join([*exports, command]).replace(MASK, aw_db.cluster.password)
    # A newcomer's shell: the installed awops on PATH, none of the demo's variables.
    shell_env = {**clean_environ(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", script], env=shell_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:2] == ["pg-health", "ok"]


@pytest.mark.slow
def test_make_demo_shows_its_environment_and_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for expected in (
        f"$ export PG_DB_PASSWORD={MASK}",
        f"$ export AWS_SECRET_ACCESS_KEY={MASK}",
        "$ export AWOPS_BACKENDS=postgresql,dynamodb",
        "$ awops jobs",
        "$ awops run-once --all",
    ):
        assert expected in lines
    assert [line for line in lines if line.startswith("$ awops run --config ")]
    assert [line for line in lines if line.startswith("$ export PG_DB_PORT=")]
    # The throwaway cluster's password (tests.fix_pg makes them "aw-test-...") never shows.
    assert "aw-test-" not in result.stdout + result.stderr
