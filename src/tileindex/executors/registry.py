"""Executors by name (``serial``, ``process``, ``dask``) or a ready one, and worker counts."""

from __future__ import annotations

import os
from concurrent.futures import Executor
from typing import TYPE_CHECKING, TypeAlias

from tileindex.errors import ConfigError
from tileindex.executors.distributed import DaskExecutor, is_client
from tileindex.executors.process import process_pool
from tileindex.executors.serial import SerialExecutor

if TYPE_CHECKING:
    from dask.distributed import Client

EXECUTORS = ("serial", "process", "dask")

# A name from EXECUTORS, None (chosen by the worker count), a ready
# concurrent.futures.Executor or a dask.distributed.Client.
ExecutorSpec: TypeAlias = "str | Executor | Client | None"


def default_workers() -> int:
    """The CPUs this process may run on; every CPU where affinity is unknown (macOS,
    Windows have no ``os.sched_getaffinity``)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1


def get_executor(
    name: ExecutorSpec = None, workers: int | None = None, scheduler: str | None = None
) -> tuple[Executor, int]:
    """An executor and the number of workers it uses.

    ``name`` None picks ``serial`` for one worker and ``process`` otherwise; ``workers``
    None means every CPU (or, for a ready executor, its own size); ``scheduler`` is a
    dask scheduler address (``dask`` only). A ready ``Executor`` is returned as it is,
    a ``dask.distributed.Client`` behind :class:`DaskExecutor`; the caller keeps
    ownership of either.
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive number, got {workers!r}")
    if scheduler is not None and name != "dask":
        raise ConfigError("a scheduler address needs --executor dask")
    if isinstance(name, Executor):
        size = getattr(name, "_max_workers", None)
        return name, workers or (size if isinstance(size, int) and size > 0 else 1)
    if is_client(name):
        pool = DaskExecutor(workers or 1, client=name)
        return pool, pool.workers
    if name is not None and not isinstance(name, str):
        raise ConfigError(
            f"executor must be one of {', '.join(EXECUTORS)}, a concurrent.futures.Executor "
            f"or a dask.distributed.Client, not {type(name).__name__}"
        )
    n = default_workers() if workers is None else workers
    chosen = name or ("serial" if n == 1 else "process")
    if chosen == "serial":
        return SerialExecutor(), 1
    if chosen == "process":
        return process_pool(n), n
    if chosen == "dask":
        pool = DaskExecutor(n, scheduler)
        return pool, pool.workers
    raise ConfigError(f"unknown executor {chosen!r}; valid executors are {', '.join(EXECUTORS)}")
