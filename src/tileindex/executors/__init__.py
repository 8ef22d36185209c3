"""Executors behind one interface: ``concurrent.futures.Executor.submit``, by name."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tileindex.errors import ConfigError, DiskFullError, TileIndexError, WorkerError

log = logging.getLogger(__name__)

EXECUTORS = ("serial", "process", "dask")


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


class DaskExecutor(Executor):
    """A dask.distributed cluster behind ``Executor.submit``: an existing scheduler at
    ``address``, or a LocalCluster of ``workers`` single-threaded worker processes that
    is closed again on shutdown. Workers must reach the output root (shared storage)."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if address is None:
            self._cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            self._client = Client(self._cluster)
        else:
            self._client = Client(address)
        self.dashboard_link: str = self._client.dashboard_link
        self.workers = len(self._client.scheduler_info()["workers"]) or workers
        self._executor = self._client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def get_executor(
    name: str | None, workers: int | None, scheduler: str | None = None
) -> tuple[Executor, int]:
    """An executor and the number of workers it uses. ``name`` None picks ``serial`` for
    one worker and ``process`` otherwise; ``workers`` None means all cores;
    ``scheduler`` is a dask scheduler address (``dask`` only)."""
    n = default_workers() if workers is None else workers
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"workers must be a positive number, got {workers!r}")
    chosen = name or ("serial" if n == 1 else "process")
    if scheduler is not None and chosen != "dask":
        raise ConfigError("a scheduler address needs --executor dask")
    if chosen == "serial":
        return SerialExecutor(), 1
    if chosen == "process":
        # spawn: workers start clean (no inherited locks or GEOS state) on every OS
        return ProcessPoolExecutor(
            max_workers=n, mp_context=multiprocessing.get_context("spawn")
        ), n
    if chosen == "dask":
        pool = DaskExecutor(n, scheduler)
        return pool, pool.workers
    raise ConfigError(f"unknown executor {chosen!r}; valid executors are {', '.join(EXECUTORS)}")


MAX_RETRIES = 3


@dataclass(frozen=True)
class Job:
    """One task: ``fn(*args, attempt)``; ``key`` identifies it in results and messages."""

    key: Hashable
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str


class TaskRunner:
    """Runs jobs on a named executor with retries, and rebuilds a process pool whose
    workers died. Jobs are submitted in the given order (put heavy ones first).

    A job that raises is tried again, up to ``max_retries`` more times, with the same
    arguments (so with the same result); a :class:`TileIndexError` is a verdict about
    the input, not a fault, and fails the run at once, as does a full disk. When a
    worker process dies (SIGKILL, OOM killer), the pool is rebuilt and the unfinished
    jobs run again, up to ``max_retries`` times.
    """

    def __init__(
        self,
        name: str | None,
        workers: int | None,
        max_retries: int = MAX_RETRIES,
        scheduler: str | None = None,
    ):
        self._name = name
        self._workers = workers
        self._scheduler = scheduler
        self._max_retries = max_retries
        self._pool, self.workers = get_executor(name, workers, scheduler)
        self.restarts = 0

    @property
    def dashboard_link(self) -> str | None:
        return getattr(self._pool, "dashboard_link", None)

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def run(
        self,
        jobs: Sequence[Job],
        on_result: Callable[[Hashable, Any], None],
        verify: Callable[[Hashable, Any], str | None] | None = None,
    ) -> dict[Hashable, Any]:
        attempts = {job.key: 0 for job in jobs}
        pending = {job.key: job for job in jobs}
        results: dict[Hashable, Any] = {}
        while pending:
            futures: dict[Future[Any], Job] = {}
            for job in pending.values():
                attempts[job.key] += 1
                futures[self._pool.submit(job.fn, *job.args, attempts[job.key])] = job
            broken = False
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    res = fut.result()
                except TileIndexError:
                    raise
                except BrokenProcessPool:
                    broken = True
                    continue
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise DiskFullError(
                            f"no space left on device while {job.label} ({exc}); free space "
                            "on the output file system or choose another --out"
                        ) from exc
                    self._failed(job, attempts[job.key], exc)
                    continue
                except Exception as exc:
                    self._failed(job, attempts[job.key], exc)
                    continue
                problem = verify(job.key, res) if verify is not None else None
                if problem is not None:
                    self._failed(job, attempts[job.key], RuntimeError(problem))
                    continue
                results[job.key] = res
                del pending[job.key]
                on_result(job.key, res)
            if broken:
                self._restart(pending)
        return results

    def _failed(self, job: Job, attempt: int, exc: BaseException) -> None:
        if attempt > self._max_retries:
            raise WorkerError(
                f"{job.label} failed {attempt} times; last error: {type(exc).__name__}: {exc}"
            ) from exc
        log.warning("%s failed (attempt %d), retrying: %s", job.label, attempt, exc)

    def _restart(self, pending: Mapping[Hashable, Job]) -> None:
        self.restarts += 1
        if self.restarts > self._max_retries:
            labels = ", ".join(j.label for j in list(pending.values())[:3])
            raise WorkerError(
                f"worker processes died {self.restarts} times (unfinished: {labels}); "
                "check memory limits or run with --workers 1 to see the error"
            )
        log.warning("a worker process died; restarting the pool for %d jobs", len(pending))
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self.workers = get_executor(self._name, self._workers, self._scheduler)
