"""The one registry of jobs; it rejects a second job under a name already taken."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

from awops.abc import Job
from awops.errors import RegistryError

_PLUGIN_PACKAGES = ("awops.jobs", "awops.checks")


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: dict[str, type[Job]] = {}

    def register(self, job_class: type[Job]) -> type[Job]:
        name = job_class.name
        existing = self._jobs.get(name)
        if existing is not None and existing is not job_class:
            raise RegistryError(
                f"job {name!r} is already registered by {existing.__module__}."
                f"{existing.__qualname__}"
            )
        self._jobs[name] = job_class
        return job_class

    def get(self, name: str) -> type[Job]:
        try:
            return self._jobs[name]
        except KeyError:
            known = ", ".join(self.names())
            raise RegistryError(f"unknown job {name!r}; known jobs: {known}") from None

    def names(self) -> list[str]:
        return list(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[type[Job]]:
        return iter(self._jobs.values())


BUILTIN = JobRegistry()


def register(job_class: type[Job]) -> type[Job]:
    """Class decorator for the built-in jobs and checks."""
    return BUILTIN.register(job_class)


def builtin_registry() -> JobRegistry:
    """The registry with every module under ``awops.jobs`` and ``awops.checks`` imported.

    Job modules import their heavy clients (boto3) inside functions, so this stays cheap.
    """
    for package_name in _PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                importlib.import_module(f"{package_name}.{module.name}")
    return BUILTIN
