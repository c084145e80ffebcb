"""Every key documented once, where it is defined, and docs/configuration.md made from that."""

import dataclasses
import subprocess
import sys
from pathlib import Path

from awops.config import JOB_COMMON_KEYS, SECTIONS
from awops.config_doc import explain
from awops.registry import JobRegistry, builtin_registry
from tests.fix_awops import clean_environ, run_awops

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = "python -m awops.config_doc > docs/configuration.md"


def _awops_jobs():
    # Other tests register jobs of their own in the same process.
    return [job for job in builtin_registry() if job.__module__.startswith("awops.")]


def test_every_key_of_every_section_and_job_has_a_description() -> None:
    undocumented = [
        f"[{name}] {field.name}"
        for name, cls in SECTIONS.items()
        for field in dataclasses.fields(cls)
        if not field.metadata.get("doc", "").strip()
    ]
    undocumented += [
        f"[jobs.{job.name}] {field.name} ({job.Options.__module__})"
        for job in _awops_jobs()
        for field in dataclasses.fields(job.Options)
        if not field.metadata.get("doc", "").strip()
    ]
    undocumented += [key for key, doc in JOB_COMMON_KEYS.items() if not doc.strip()]
    assert undocumented == [], "give each setting(...) a one-line doc="


def test_the_committed_reference_is_the_generated_one() -> None:
    # Generated as the command does it, in a process of its own.
    generated = subprocess.run(
        [sys.executable, "-m", "awops.config_doc"],
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert REFERENCE.read_text() == generated, f"docs/configuration.md is stale: {REGENERATE}"
    in_process = JobRegistry()
    for job in _awops_jobs():
        in_process.register(job)
    assert explain(in_process) == generated


def test_the_reference_names_each_key_once_with_its_variable() -> None:
    text = REFERENCE.read_text()
    for key, variable in [
        ("window_slack_seconds", "AWOPS_JOB_DYNAMODB_PITR_WINDOW_SLACK_SECONDS"),
        ("work_dir", "AWOPS_JOB_PG_BACKUP_VERIFY_WORK_DIR"),
        ("maintenance_dbname", "AWOPS_JOB_PG_BACKUP_VERIFY_MAINTENANCE_DBNAME"),
        ("compress_level", "AWOPS_JOB_PG_BACKUP_COMPRESS_LEVEL"),
        ("s3_abort_retry_seconds", "AWOPS_BACKUP_S3_ABORT_RETRY_SECONDS"),
        ("host", "PG_DB_HOST"),
    ]:
        (row,) = [line for line in text.splitlines() if variable in line]
        assert row.startswith(f"| `{key}` |")
    for job in _awops_jobs():
        assert f"### [jobs.{job.name}]" in text


def test_config_explain_prints_the_reference() -> None:
    result = run_awops("config", "--explain", env={"PG_DB_PORT": "not a number"})
    # It explains, never validates: a broken configuration is when it is wanted.
    assert result.returncode == 0, result.stderr
    assert result.stdout == REFERENCE.read_text()
