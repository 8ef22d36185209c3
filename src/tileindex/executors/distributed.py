"""dask.distributed behind ``Executor.submit``; dask is imported only when asked for."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import sys
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError
from typing import Any

from tileindex.errors import ConfigError, SchedulerLostError, TileIndexError

EXTRA = "pip install 'tileindex[dask]'"
# how long closing the client may take; a client whose scheduler died would otherwise
# keep trying to reconnect for dask's whole connect timeout
CLOSE_SECONDS = 5.0
# the reason dask gives the futures it cancels when the scheduler connection drops
_CONNECTION_LOST = "scheduler-connection-lost"


def _distributed() -> Any:
    try:
        import dask.distributed
    except ImportError as exc:
        raise ConfigError(
            f"the dask executor needs dask.distributed, which is not installed ({exc}); "
            f"install the extra: {EXTRA}"
        ) from None
    return dask.distributed


class DaskExecutor(Executor):
    """A dask.distributed cluster behind ``Executor.submit``: a ready ``client``, an
    existing scheduler at ``address``, or a LocalCluster of ``workers`` single-threaded
    worker processes. What it started it closes again on shutdown; a ready client stays
    open. Workers must reach the output root (shared storage).

    A lost worker is dask's business: the scheduler runs its tasks again on the others.
    A lost scheduler is not recoverable (its task state is gone): every future then
    fails with :class:`SchedulerLostError`, and :meth:`check` raises it as well, so a
    build ends at once with nothing published instead of waiting on a dead cluster.
    """

    def __init__(self, workers: int, address: str | None = None, client: Any = None) -> None:
        self._cluster = None
        self._owns_client = client is None
        if client is None:
            distributed = _distributed()
            if address is None:
                self._cluster = distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                )
                client = distributed.Client(self._cluster)
            else:
                client = _connect(distributed, address)
        self._client = client
        self.address: str = client.scheduler.address
        self.dashboard_link: str = client.dashboard_link
        self.workers: int = sum(client.nthreads().values()) or workers
        self._futures: weakref.WeakSet[Any] = weakref.WeakSet()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.check()
        task = self._client.submit(fn, *args, pure=False, **kwargs)
        self._futures.add(task)
        result: Future[Any] = Future()
        result.add_done_callback(functools.partial(_cancel_task, task))
        task.add_done_callback(functools.partial(self._deliver, result))
        return result

    def check(self) -> None:
        """Raise :class:`SchedulerLostError` unless the client is connected."""
        if self._gone():
            raise self._lost()

    def _deliver(self, result: Future[Any], task: Any) -> None:
        # runs on dask's callback thread once the task finished, failed or was cancelled
        try:
            outcome = task.result()
        except BaseException as exc:
            lost = getattr(exc, "reason", None) == _CONNECTION_LOST
            _settle(result, exception=self._lost() if lost or self._gone() else exc)
        else:
            _settle(result, value=outcome)

    def _gone(self) -> bool:
        # "connecting" once the scheduler connection dropped, "closed" after dask gave up
        return self._client.status != "running"

    def _lost(self) -> SchedulerLostError:
        # said when the runner stops: its callers (build, values) publish only after it
        return SchedulerLostError(
            f"lost the connection to the dask scheduler at {self.address}; nothing was "
            "published: restart the scheduler and its workers and build again (the same "
            "inputs give the same bytes)"
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pending = [f for f in self._futures if not f.done()]
        if pending and not self._gone():
            if cancel_futures or not wait:
                with contextlib.suppress(Exception):  # best effort: the client may be closing
                    self._client.cancel(pending)
            else:
                _distributed().wait(pending)
        if self._owns_client:
            with _quiet_reconnect(self._gone()), contextlib.suppress(OSError, TimeoutError):
                self._client.close(timeout=CLOSE_SECONDS)
        if self._cluster is not None:
            self._cluster.close()


def _connect(distributed: Any, address: str) -> Any:
    """A client of the scheduler at ``address``, within dask's connect timeout."""
    problem: TileIndexError
    try:
        return distributed.Client(address)
    except (OSError, TimeoutError) as exc:
        problem = SchedulerLostError(
            f"cannot reach the dask scheduler at {address} ({exc}); start it "
            "(dask scheduler) or give its address with --scheduler"
        )
    except ValueError as exc:
        problem = ConfigError(
            f"--scheduler: {address!r} is not a dask scheduler address ({exc}); "
            "write it like tcp://HOST:8786"
        )
    # the half-made client sits in a reference cycle; collected at interpreter exit, with
    # its event loop gone, its clean-up would time out and print a traceback: collect it
    # now, raising outside the handlers so that no exception context keeps it alive
    gc.collect()
    raise problem


class _LostSchedulerNoise(logging.Filter):
    """Drops what dask logs when a client whose scheduler died is closed: the traceback
    of its cancelled reconnect loop, and "Failed to reconnect to scheduler after ...
    seconds, closing client", which dask says whenever that loop ends without
    reconnecting, also when it ends because the client is being closed. The run's own
    one-line error already says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        return not str(record.msg).startswith("Failed to reconnect to scheduler")


_NOISE = _LostSchedulerNoise()


@contextlib.contextmanager
def _quiet_reconnect(lost: bool) -> Iterator[None]:
    # the reconnect loop of a client whose scheduler died logs from dask's event loop
    # thread, possibly after close() returned: once a lost client is closed here, its
    # farewell stays filtered for the rest of the process (only those two messages)
    logger = logging.getLogger("distributed.client")
    logger.addFilter(_NOISE)
    try:
        yield
    finally:
        if not lost:
            logger.removeFilter(_NOISE)


def _cancel_task(task: Any, result: Future[Any]) -> None:
    # the caller gave up on this result (a failed run): stop the task in the cluster too
    if result.cancelled():
        with contextlib.suppress(Exception):  # best effort: the client may be closing
            task.cancel()


def _settle(result: Future[Any], value: Any = None, exception: BaseException | None = None) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled by the caller meanwhile
        if exception is not None:
            result.set_exception(exception)
        else:
            result.set_result(value)


def is_client(obj: object) -> bool:
    """Whether ``obj`` is a ``dask.distributed.Client``, without importing dask: a
    client can only exist once its module is imported."""
    module = sys.modules.get("distributed")
    return module is not None and isinstance(obj, module.Client)
