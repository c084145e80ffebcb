import typing

import pytest

from awops.abc import Job
from awops.config import load_config
from awops.context import JobContext, Resources
from awops.errors import RegistryError
from awops.metrics import NullMetrics
from awops.registry import JobRegistry, builtin_registry
from awops.result import Outcome, Status


def make_job(job_name: str) -> type[Job]:
    class Example(Job):
        name = job_name
        backend = "postgresql"
        description = "example"
        default_schedule = "every 1m"

        def _run(self) -> Outcome:
            return Outcome.ok("fine")

    return Example


def test_duplicate_names_are_rejected() -> None:
    registry = JobRegistry()
    registry.register(make_job("example"))
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(make_job("example"))


def test_unknown_name_lists_known_ones() -> None:
    registry = JobRegistry()
    registry.register(make_job("one"))
    with pytest.raises(RegistryError, match="known jobs: one"):
        registry.get("two")


def test_builtin_jobs_are_registered_with_contract_fields() -> None:
    registry = builtin_registry()
    assert "pg-health" in registry
    for job_class in registry:
        assert job_class.backend in ("postgresql", "dynamodb")
        assert job_class.description
        assert job_class.default_schedule


def test_exception_in_job_becomes_error() -> None:
    class Broken(Job):
        name = "broken"
        backend = "postgresql"
        description = "raises"
        default_schedule = "every 1m"

        def _run(self) -> Outcome:
            raise RuntimeError("boom")

    config = load_config(None, JobRegistry(), {"DATABASE_BACKEND": "postgresql"})
    context = JobContext("broken", "r1", config, None, False, NullMetrics(), Resources(config), 0)
    outcome = Broken(context).run()
    assert outcome.status is Status.ERROR
    assert "boom" in outcome.summary


def test_every_builtin_job_is_generic_in_the_options_it_declares() -> None:
    registry = builtin_registry()
    registry.load()
    for job_class in registry:
        if not job_class.__module__.startswith("awops."):
            continue  # a job another test registered
        parameters = [
            typing.get_args(base)
            for base in getattr(job_class, "__orig_bases__", ())
            if typing.get_origin(base) is Job
        ]
        assert parameters == [(job_class.Options,)], job_class.name
