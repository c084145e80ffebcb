"""The one registry of jobs; it rejects a second job under a name already taken.

Built-in jobs are found by module name (``awops/checks/pg_health/`` holds ``pg-health``) and
imported when first asked for, so ``awops run-once pg-health`` defines only the jobs it runs
or finds configured: cron pays start-up on every run.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from awops.abc import Job
from awops.errors import RegistryError

_PLUGIN_PACKAGES = ("awops.jobs", "awops.checks")

JobClassT = TypeVar("JobClassT", bound=type[Job[Any]])


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: dict[str, type[Job[Any]]] = {}
        self._modules: dict[str, str] = {}  # job name -> module not imported yet

    def add_lazy(self, name: str, module: str) -> None:
        """Make ``name`` known, to be imported from ``module`` when first asked for."""
        if name not in self._jobs:
            self._modules[name] = module

    def register(self, job_class: JobClassT) -> JobClassT:
        name = job_class.name
        existing = self._jobs.get(name)
        if existing is not None and existing is not job_class:
            raise RegistryError(
                f"job {name!r} is already registered by {existing.__module__}."
                f"{existing.__qualname__}"
            )
        self._jobs[name] = job_class
        return job_class

    def get(self, name: str) -> type[Job[Any]]:
        if name not in self._jobs and name in self._modules:
            module = self._modules.pop(name)
            importlib.import_module(module)
            if name not in self._jobs:
                raise RegistryError(f"module {module} registers no job named {name!r}")
        try:
            return self._jobs[name]
        except KeyError:
            known = ", ".join(self.known_names())
            raise RegistryError(f"unknown job {name!r}; known jobs: {known}") from None

    def load(self, names: Iterable[str] | None = None) -> None:
        """Import the named jobs (those known), or every known job."""
        for name in list(self._modules if names is None else names):
            if name in self._modules:
                self.get(name)

    def names(self) -> list[str]:
        """The jobs imported so far."""
        return list(self._jobs)

    def known_names(self) -> list[str]:
        """Every job, imported or not."""
        return [*self._jobs, *(name for name in self._modules if name not in self._jobs)]

    def __contains__(self, name: object) -> bool:
        return name in self._jobs or name in self._modules

    def __iter__(self) -> Iterator[type[Job[Any]]]:
        return iter(self._jobs.values())


BUILTIN = JobRegistry()


def register(job_class: JobClassT) -> JobClassT:
    """Class decorator for the built-in jobs and checks."""
    return BUILTIN.register(job_class)


def builtin_registry(only: Iterable[str] | None = None) -> JobRegistry:
    """The built-in registry with every job module imported, or only those of ``only``.

    Jobs left out are still known by name and imported when asked for (a configured job's
    options must be validated). Job modules import heavy clients (boto3) inside functions.
    """
    for package_name in _PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                job_name = module.name.replace("_", "-")
                BUILTIN.add_lazy(job_name, f"{package_name}.{module.name}")
    BUILTIN.load(only)
    return BUILTIN
