"""The dask executor: a real LocalCluster with two worker processes publishes the bytes
of a serial build, whether tileindex starts it or is handed a ready client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import shapely

from tileindex.errors import ConfigError
from tileindex.executors import get_executor
from tileindex.pipeline import build

from factories import make_inputs

distributed = pytest.importorskip("distributed")  # the optional extra tileindex[dask]

LAYOUT = {"rows_per_row_group": 400, "row_groups_per_file": 2}
COUNTRIES = {
    "AA": [shapely.Polygon([(0, 0), (30, 2), (28, 25), (1, 20)])],
    "FJ": [shapely.box(175, -20, 185, -12)],
}
GRID = {"ncols": 720, "nrows": 360, "transform": (0.5, 0.0, -180.0, 0.0, -0.5, 90.0)}


def test_dask_local_cluster_publishes_the_serial_bytes(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path, COUNTRIES, **GRID)
    serial = build(*inputs, tmp_path / "serial", predicate="any_overlap", **LAYOUT)
    events = []

    class Recorder:
        def on_start(self, *a): ...
        def on_unit_done(self, *a): ...
        def on_country_done(self, *a): ...
        def on_finish(self, *a): ...
        def on_event(self, event):
            events.append(event)

    distributed = build(
        *inputs,
        tmp_path / "dask",
        predicate="any_overlap",
        executor="dask",
        workers=2,
        chunk_size=64,
        telemetry=Recorder(),
        **LAYOUT,
    )
    assert distributed.report.pat.workers_used == 2
    assert (
        distributed.report.determinism_receipt["sha256_hex"]
        == serial.report.determinism_receipt["sha256_hex"]
    )
    assert distributed.summaries == serial.summaries
    (executor,) = [e for e in events if e["event"] == "S1_EXECUTOR"]
    assert executor["dashboard"].startswith("http")
    assert distributed.report.pat.max_worker_rss_bytes > 0
    # the units ran in the cluster's worker processes, not here
    units = [e for e in events if e["event"] == "S1_UNIT"]
    assert units and f"pid{os.getpid()}" not in {e["worker"] for e in units}


def test_a_ready_client_runs_the_units_on_its_workers_and_stays_open(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path, COUNTRIES, **GRID)
    serial = build(*inputs, tmp_path / "serial", predicate="any_overlap", **LAYOUT)
    events = []

    class Recorder:
        def on_start(self, *a): ...
        def on_unit_done(self, *a): ...
        def on_country_done(self, *a): ...
        def on_finish(self, *a): ...
        def on_event(self, event):
            events.append(event)

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker_pids = {f"pid{pid}" for pid in client.run(os.getpid).values()}
        result = build(
            *inputs,
            tmp_path / "dask",
            predicate="any_overlap",
            executor=client,
            chunk_size=64,
            telemetry=Recorder(),
            **LAYOUT,
        )
        assert client.status == "running"  # the caller's client is left open
    assert f"pid{os.getpid()}" not in worker_pids and len(worker_pids) == 2
    units = {e["worker"] for e in events if e["event"] == "S1_UNIT"}
    assert units and units <= worker_pids
    assert result.report.pat.workers_used == 2
    assert (
        result.report.determinism_receipt["sha256_hex"]
        == serial.report.determinism_receipt["sha256_hex"]
    )


def test_a_scheduler_address_needs_the_dask_executor() -> None:
    with pytest.raises(ConfigError, match="dask"):
        get_executor("process", 2, scheduler="tcp://127.0.0.1:8786")


def test_closing_a_client_whose_scheduler_died_drops_only_dasks_farewell() -> None:
    # dask logs "Failed to reconnect ..." whenever its reconnect loop ends, also when it
    # ends because the build closes the client: the build's own one-line error says it
    import asyncio
    import logging

    from tileindex.executors.distributed import _NOISE

    def record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("distributed.client", logging.ERROR, "", 0, msg, (), info)

    farewell = "Failed to reconnect to scheduler after %.2f seconds, closing client"
    assert not _NOISE.filter(record(farewell))
    assert not _NOISE.filter(record("Reconnect loop", asyncio.CancelledError()))
    assert _NOISE.filter(record("Restarting worker"))
    assert _NOISE.filter(record("Task failed", ValueError("boom")))
