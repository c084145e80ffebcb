"""The commands a newcomer runs first: what they say about a job that cannot work, where the
backend choice came from, errors under --json, and shell completion."""

import json
import sys
from pathlib import Path

import pytest

from tests.fix_awops import run_awops
from tests.fix_pg import PgDatabase, free_port

DEFAULT_ORIGIN = "DATABASE_BACKEND unset: ActingWeb's default, dynamodb"


def job_row(listing: str, job: str) -> str:
    (row,) = [line for line in listing.splitlines() if line.split()[:1] == [job]]
    return row


def test_pg_backup_without_a_target_is_said_by_config_check_and_jobs() -> None:
    env = {"DATABASE_BACKEND": "postgresql"}
    check = run_awops("config", "--check", env=env)
    assert check.returncode == 0, check.stderr
    (warning,) = [line for line in check.stderr.splitlines() if "pg-backup:" in line]
    assert warning.startswith("awops: warning: pg-backup: no backup target")
    assert "[backup] targets" in warning and "AWOPS_BACKUP_TARGET" in warning
    assert "enabled = false" in warning
    assert "pg-backup-verify: no backup target" in check.stderr
    # Printed as a comment at the top of the effective configuration too.
    shown = run_awops("config", env=env).stdout
    assert "# warning: pg-backup: no backup target" in shown.splitlines()[1]

    listing = run_awops("jobs", env=env).stdout
    assert job_row(listing, "pg-backup").endswith("- (no backup target)")
    assert job_row(listing, "pg-backup-verify").endswith("- (no backup target)")
    assert job_row(listing, "pgbackrest").endswith("- (no stanza set)")

    with_target = {**env, "AWOPS_BACKUP_TARGET": "/var/backups/awops"}
    check = run_awops("config", "--check", env=with_target)
    assert check.returncode == 0 and "warning" not in check.stderr
    assert job_row(run_awops("jobs", env=with_target).stdout, "pg-backup").endswith("Z")
    # A job that is off says nothing.
    off = run_awops("config", "--check", env={**env, "AWOPS_JOB_PG_BACKUP_ENABLED": "false"}).stderr
    assert "pg-backup:" not in off and "pg-backup-verify:" in off


def test_pg_backup_without_a_target_reports_error_and_pgbackrest_without_stanza_skips(
    aw_db: PgDatabase,
) -> None:
    result = run_awops("run-once", "pg-backup", "pgbackrest", "--json", env=aw_db.awops_env())
    assert result.returncode == 1, result.stderr
    backup, pgbackrest = json.loads(result.stdout)["jobs"]
    assert backup["status"] == "error"
    assert backup["summary"] == (
        "cannot run: no backup target (set [backup] targets or AWOPS_BACKUP_TARGET, "
        "or [jobs.pg-backup] enabled = false)"
    )
    assert pgbackrest["status"] == "skipped"
    assert pgbackrest["summary"] == (
        "nothing to check: no stanza set (set [jobs.pgbackrest] stanza or "
        "AWOPS_JOB_PGBACKREST_STANZA)"
    )


def test_the_printed_configuration_saved_as_a_file_is_a_working_configuration(
    tmp_path: Path,
) -> None:
    env = {"DATABASE_BACKEND": "postgresql", "PG_DB_PASSWORD": "the-real-one"}
    printed = run_awops("config", env=env)
    assert printed.returncode == 0
    saved = tmp_path / "awops.toml"
    saved.write_text(printed.stdout)
    assert "the-real-one" not in printed.stdout
    assert [line for line in printed.stdout.splitlines() if "********" in line] == [
        '# password = "********"  (a secret, not printed: write it here, or set PG_DB_PASSWORD)'
    ]
    check = run_awops("config", "--check", "--config", str(saved), env={})
    assert check.returncode == 0, check.stderr
    # A mask written by hand (or saved by an older awops) is refused before anything runs.
    saved.write_text('[postgresql]\npassword = "********"\n')
    refused = run_awops("run-once", "pg-health", "--config", str(saved), env={})
    assert refused.returncode == 2
    assert f"{saved}: postgresql.password: expected the real secret" in refused.stderr
    from_env = run_awops("config", "--check", env={"PG_DB_PASSWORD": "********"})
    assert from_env.returncode == 2
    assert "environment PG_DB_PASSWORD: expected the real secret" in from_env.stderr


def test_config_and_jobs_say_where_the_backends_came_from() -> None:
    listing = run_awops("jobs", env={})
    assert listing.stdout.splitlines()[0] == f"backends: dynamodb ({DEFAULT_ORIGIN})"
    shown = run_awops("config", env={}).stdout
    assert f'backends = ["dynamodb"]  # {DEFAULT_ORIGIN}' in shown
    check = run_awops("config", "--check", env={"DATABASE_BACKEND": "postgresql"})
    assert "backends: environment DATABASE_BACKEND=postgresql" in check.stdout
    skipped = run_awops("run-once", "pg-health", "--json", env={})
    (job,) = json.loads(skipped.stdout)["jobs"]
    assert job["status"] == "skipped"
    assert DEFAULT_ORIGIN in job["summary"]


def _no_aws_credentials(tmp_path: Path) -> dict[str, str]:
    """Nothing for botocore to find, and the instance metadata service never asked."""
    return {
        "AWS_DB_HOST": f"http://127.0.0.1:{free_port()}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "BOTO_CONFIG": str(tmp_path / "none"),
    }


def test_dynamodb_errors_say_when_the_backend_was_chosen_by_default(tmp_path: Path) -> None:
    env = _no_aws_credentials(tmp_path)
    result = run_awops("run-once", "dynamodb-gsi", "--json", env=env)
    assert result.returncode == 1, result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "error"
    assert "no AWS credentials" in job["summary"]
    assert f"DynamoDB is used because {DEFAULT_ORIGIN}" in job["summary"]
    assert "set DATABASE_BACKEND=postgresql" in job["summary"]
    chosen = run_awops(
        "run-once", "dynamodb-gsi", "--json", env={**env, "DATABASE_BACKEND": "dynamodb"}
    )
    (job,) = json.loads(chosen.stdout)["jobs"]
    assert job["status"] == "error" and "no AWS credentials" in job["summary"]
    assert "DynamoDB is used because" not in job["summary"]


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ["pg-health"],
            {"PG_DB_PORT": "abc", "PG_DB_PASSWORD": "hide-this"},
            "environment PG_DB_PORT: expected a whole number",
        ),
        (["pg-health"], {"PG_DB_PASSWORD": "********"}, "expected the real secret"),
        (["no-such-job"], {}, "unknown job 'no-such-job'"),
        ([], {}, "name at least one job, or pass --all"),
    ],
)
def test_run_once_json_prints_the_document_on_usage_and_configuration_errors(
    args: list[str], env: dict[str, str], said: str
) -> None:
    result = run_awops("run-once", *args, "--json", env=env)
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["jobs"] == []
    assert said in document["error"]
    assert said in result.stderr
    assert "hide-this" not in result.stdout + result.stderr


def test_run_once_json_config_file_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "awops.toml"
    bad.write_text("[jobs.pg-health]\nschedul = 'every 5m'\n")
    result = run_awops("run-once", "pg-health", "--json", "--config", str(bad), env={})
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert f"{bad}: jobs.pg-health.schedul" in error
    assert "did you mean 'schedule'?" in error


def _complete(words: str, cword: int, shell: str = "bash") -> list[str]:
    result = run_awops(
        env={
            "_AWOPS_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_shell_completion_completes_job_names() -> None:
    completed = _complete("awops run-once pg-", 2)
    names = {line.split(",", 1)[1] for line in completed}
    assert {"pg-health", "pg-backup", "pg-backup-verify", "pg-ttl-purge"} <= names
    assert all(name.startswith("pg-") for name in names)
    # A name already given is not offered again.
    again = {line.split(",", 1)[1] for line in _complete("awops run-once pg-health pg-", 3)}
    assert "pg-health" not in again and "pg-backup" in again
    assert {line.split(",", 1)[1] for line in _complete("awops run-once dynamodb-t", 2)} == {
        "dynamodb-ttl"
    }
    assert "plain,run-once" in _complete("awops ru", 1)


def test_completion_scripts_come_from_the_installed_command() -> None:
    awops = Path(sys.executable).parent / "awops"
    for shell, marker in [
        ("bash", "_awops_completion"),
        ("zsh", "#compdef awops"),
        ("fish", "complete --no-files --command awops"),
    ]:
        result = run_awops(env={"_AWOPS_COMPLETE": f"{shell}_source"})
        assert result.returncode == 0, result.stderr
        assert "_AWOPS_COMPLETE" in result.stdout and marker in result.stdout
    if awops.exists():
        import subprocess

        from tests.fix_awops import clean_environ

        script = subprocess.run(
            [str(awops)],
            env=clean_environ({"_AWOPS_COMPLETE": "bash_source"}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "complete -o nosort -F _awops_completion awops" in script.stdout
