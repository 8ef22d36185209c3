"""dask.distributed behind ``Executor.submit``; dask is imported only when asked for."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from tileindex.errors import ConfigError

EXTRA = "pip install 'tileindex[dask]'"


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
    open. Workers must reach the output root (shared storage)."""

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
                client = distributed.Client(address)
        self._client = client
        self.dashboard_link: str = client.dashboard_link
        self.workers: int = sum(client.nthreads().values()) or workers
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)
        if self._owns_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def is_client(obj: object) -> bool:
    """Whether ``obj`` is a ``dask.distributed.Client``, without importing dask: a
    client can only exist once its module is imported."""
    module = sys.modules.get("distributed")
    return module is not None and isinstance(obj, module.Client)
