"""Jobs on an executor: a bounded window in flight, retries, pool rebuilds."""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tileindex.errors import DiskFullError, TileIndexError, WorkerError
from tileindex.executors.registry import ExecutorSpec, get_executor
from tileindex.executors.serial import SerialExecutor

log = logging.getLogger(__name__)

MAX_RETRIES = 3
# Jobs in flight per worker, as dask's local scheduler keeps its pool busy: enough that
# a worker never waits for the parent, few enough that results are consumed (progress
# moves, memory stays bounded) and that a failure stops the run within a few jobs.
IN_FLIGHT_PER_WORKER = 2
# How often the runner, waiting for results, asks the executor whether it can still
# deliver any (a dask client whose scheduler died): a dead cluster ends the run within
# this time instead of leaving it waiting for ever.
CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    """One task: ``fn(*args, attempt)``; ``key`` identifies it in results and messages."""

    key: Hashable
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str


class _Outcome(Enum):
    DONE = "done"
    RETRY = "retry"
    LOST = "lost"  # its worker process died


class TaskRunner:
    """Runs jobs on an executor with retries, and rebuilds a process pool whose workers
    died. Jobs start in the given order (put heavy ones first), at most
    :attr:`in_flight` at a time; results are handed to ``on_result`` as they come, so
    whatever depends on the bytes must order them by key, never by arrival.

    ``executor`` is a name (see :func:`get_executor`) or a ready executor, which the
    runner uses but neither shuts down nor rebuilds.

    A job that raises is tried again, up to ``max_retries`` more times, with the same
    arguments (so with the same result); a :class:`TileIndexError` is a verdict about
    the input, not a fault, and fails the run at once, as does a full disk. When a
    worker process dies (SIGKILL, OOM killer), the pool is rebuilt and the unfinished
    jobs run again, up to ``max_retries`` times.
    """

    def __init__(
        self,
        executor: ExecutorSpec,
        workers: int | None,
        max_retries: int = MAX_RETRIES,
        scheduler: str | None = None,
    ):
        self._spec = executor
        self._workers = workers
        self._scheduler = scheduler
        self._max_retries = max_retries
        self._owned = executor is None or isinstance(executor, str)
        self._pool, self.workers = get_executor(executor, workers, scheduler)
        self.restarts = 0

    @property
    def in_flight(self) -> int:
        """How many jobs may be submitted and not yet consumed."""
        if isinstance(self._pool, SerialExecutor):
            return 1  # a job runs inside submit: running ahead gains nothing
        return IN_FLIGHT_PER_WORKER * self.workers

    @property
    def dashboard_link(self) -> str | None:
        return getattr(self._pool, "dashboard_link", None)

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def close(self, cancel: bool = False) -> None:
        if not self._owned:
            return
        if cancel or not isinstance(self._pool, ProcessPoolExecutor):
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        else:
            # every job is done: the workers' interpreter teardown (a second or two)
            # overlaps with the receipt and the publish instead of delaying them; the
            # pool's own exit hook still joins them before this process ends
            self._pool.shutdown(wait=False)

    def run(
        self,
        jobs: Sequence[Job],
        on_result: Callable[[Hashable, Any], None],
        verify: Callable[[Hashable, Any], str | None] | None = None,
    ) -> dict[Hashable, Any]:
        """Run every job and return the results by key; raises a
        :class:`TileIndexError` (``WorkerError`` for a job that kept failing)."""
        attempts = {job.key: 0 for job in jobs}
        queue = deque(jobs)
        running: dict[Future[Any], Job] = {}
        results: dict[Hashable, Any] = {}

        def settle(futures: Sequence[Future[Any]]) -> list[tuple[Job, _Outcome]]:
            # in submission order, so logs and callbacks follow the plan where they can
            outcomes = []
            for fut in futures:
                job = running.pop(fut)
                outcome = self._settle(job, fut, attempts[job.key], verify)
                if outcome is _Outcome.DONE:
                    results[job.key] = fut.result()
                    on_result(job.key, results[job.key])
                outcomes.append((job, outcome))
            return outcomes

        try:
            while queue or running:
                while queue and len(running) < self.in_flight:
                    job = queue.popleft()
                    attempts[job.key] += 1
                    running[self._pool.submit(job.fn, *job.args, attempts[job.key])] = job
                done, _ = wait(running, timeout=CHECK_SECONDS, return_when=FIRST_COMPLETED)
                if not done:
                    self._check()
                    continue
                outcomes = settle([f for f in running if f in done])
                if any(o is _Outcome.LOST for _, o in outcomes):
                    # the pool is broken: every job still running fails the same way
                    wait(running)
                    outcomes += settle(list(running))
                again = [job for job, o in outcomes if o is not _Outcome.DONE]
                queue.extendleft(reversed(again))  # retried first, in their order
                if any(o is _Outcome.LOST for _, o in outcomes):
                    self._restart(queue)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
        return results

    def _check(self) -> None:
        # executors that can lose their cluster say so (DaskExecutor.check raises)
        check = getattr(self._pool, "check", None)
        if callable(check):
            check()

    def _settle(
        self,
        job: Job,
        fut: Future[Any],
        attempt: int,
        verify: Callable[[Hashable, Any], str | None] | None,
    ) -> _Outcome:
        try:
            res = fut.result()
        except TileIndexError:
            raise
        except BrokenProcessPool:
            return _Outcome.LOST
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(
                    f"no space left on device while {job.label} ({exc}); free space "
                    "on the output file system or choose another --out"
                ) from exc
            self._failed(job, attempt, exc)
            return _Outcome.RETRY
        except Exception as exc:
            self._failed(job, attempt, exc)
            return _Outcome.RETRY
        problem = verify(job.key, res) if verify is not None else None
        if problem is not None:
            self._failed(job, attempt, RuntimeError(problem))
            return _Outcome.RETRY
        return _Outcome.DONE

    def _failed(self, job: Job, attempt: int, exc: BaseException) -> None:
        if attempt > self._max_retries:
            raise WorkerError(
                f"{job.label} failed {attempt} times; last error: {type(exc).__name__}: {exc}"
            ) from exc
        log.warning("%s failed (attempt %d), retrying: %s", job.label, attempt, exc)

    def _restart(self, pending: Sequence[Job]) -> None:
        self.restarts += 1
        labels = ", ".join(j.label for j in list(pending)[:3])
        if not self._owned:
            raise WorkerError(
                f"a worker process of the given executor died (unfinished: {labels}); "
                "a ready executor cannot be rebuilt, pass an executor name instead"
            )
        if self.restarts > self._max_retries:
            raise WorkerError(
                f"worker processes died {self.restarts} times (unfinished: {labels}); "
                "check memory limits or run with --workers 1 to see the error"
            )
        log.warning("a worker process died; restarting the pool for %d jobs", len(pending))
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self.workers = get_executor(self._spec, self._workers, self._scheduler)
