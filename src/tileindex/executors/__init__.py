"""Executors behind one interface: ``concurrent.futures.Executor.submit``, by name."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from tileindex.errors import ConfigError

EXECUTORS = ("serial", "process")


class SerialExecutor(Executor):
    """Runs each task in the calling process when it is submitted (``--workers 1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, like a pool does
            future.set_exception(exc)
        return future


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def get_executor(name: str | None, workers: int | None) -> tuple[Executor, int]:
    """An executor and the number of workers it uses. ``name`` None picks ``serial`` for
    one worker and ``process`` otherwise; ``workers`` None means all cores."""
    n = default_workers() if workers is None else workers
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"workers must be a positive number, got {workers!r}")
    chosen = name or ("serial" if n == 1 else "process")
    if chosen == "serial":
        return SerialExecutor(), 1
    if chosen == "process":
        # spawn: workers start clean (no inherited locks or GEOS state) on every OS
        return ProcessPoolExecutor(
            max_workers=n, mp_context=multiprocessing.get_context("spawn")
        ), n
    raise ConfigError(f"unknown executor {chosen!r}; valid executors are {', '.join(EXECUTORS)}")
