"""The dask executor on a real cluster: a ``dask scheduler`` and two ``dask worker``
processes on the loopback interface, started from the command line as on a real
cluster. A build there publishes the bytes of a process-pool build; a worker killed
mid-build costs nothing but time (dask runs its tasks on the other); a scheduler killed
mid-build ends the build with S1_SCHEDULER_LOST and nothing published, and a rerun
publishes the same bytes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tileindex
from tileindex.errors import SchedulerLostError
from tileindex.faults import ENV as FAULTS_ENV
from tileindex.pipeline import BuildResult, build
from tileindex.shards import STAGING_DIRNAME

from factories import build_args

distributed = pytest.importorskip("distributed")  # the optional extra tileindex[dask]

# every unit first sleeps faults.SLEEP_SECONDS (2 s), so a build is still running when
# its first unit is done: that is when the tests kill a worker or the scheduler
SLOW_UNITS = "unit:sleep:*"
START_SECONDS = 60  # for the scheduler and both workers to come up on a loaded machine
FAIL_SECONDS = 60  # for a build to end once its scheduler is dead


@dataclass
class Cluster:
    """A scheduler and two single-threaded workers, each its own process group."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    logs: Path
    killed: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process and its children (a worker's nanny and worker process)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.killed.append(proc)

    def worker_of(self, pid: int) -> subprocess.Popen[bytes]:
        """The ``dask worker`` command whose process group holds ``pid``."""
        group = os.getpgid(pid)
        (worker,) = [w for w in self.workers if w.pid == group]
        return worker

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
            for log in sorted(self.logs.glob("*.log"))
        )


def _python_path() -> str:
    # the workers import tileindex to run its tasks: the one under test, installed or not
    src = str(Path(tileindex.__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))


def _start_cluster(folder: Path, faults: str) -> Cluster:
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": _python_path(), FAULTS_ENV: faults}
    # if pytest itself dies, the scheduler exits once idle and the workers once it is gone
    scheduler_file = folder / "scheduler.json"

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (folder / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )

    procs = [
        start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host=127.0.0.1",
            "--port=0",  # a free port, read back from the scheduler file
            "--no-dashboard",
            "--dashboard-address=127.0.0.1:0",  # its HTTP endpoints, on a free port too
            "--idle-timeout=300s",
            f"--scheduler-file={scheduler_file}",
        )
    ]
    cluster = Cluster("", procs[0], [], folder)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert procs[0].poll() is None, cluster.log_tail()
            assert time.monotonic() < deadline, cluster.log_tail()
            time.sleep(0.05)
        cluster.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            procs.append(
                start(
                    f"worker{i}",
                    "distributed.cli.dask_worker",
                    cluster.address,
                    "--host=127.0.0.1",
                    "--nworkers=1",
                    "--nthreads=1",
                    "--no-dashboard",
                    "--memory-limit=1GiB",
                    f"--local-directory={folder / f'worker{i}'}",
                    "--death-timeout=60s",
                )
            )
        cluster.workers = procs[1:]
        with distributed.Client(cluster.address, timeout=START_SECONDS) as client:
            client.wait_for_workers(2, timeout=START_SECONDS)
    except BaseException:
        _stop(procs)
        raise
    return cluster


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=30)


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts clusters (``faults``: the workers' TILEINDEX_FAULTS); every process of
    each is killed when the test ends, whatever happened."""
    started: list[Cluster] = []

    def start(faults: str = "") -> Cluster:
        cluster = _start_cluster(tmp_path / f"cluster{len(started)}", faults)
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        _stop([p for c in started for p in (c.scheduler, *c.workers)])


@pytest.fixture(scope="module")
def reference(small_world, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The small world built by a pool of two worker processes."""
    out = tmp_path_factory.mktemp("process-pool")
    return build(*small_world, out, executor="process", workers=2)


class _OnFirstUnit:
    """Telemetry that records events and calls ``action`` with the first S1_UNIT."""

    def __init__(self, action: Callable[[dict[str, Any]], None]) -> None:
        self.events: list[dict[str, Any]] = []
        self._action = action

    def on_start(self, *a: object) -> None: ...
    def on_unit_done(self, *a: object) -> None: ...
    def on_country_done(self, *a: object) -> None: ...
    def on_finish(self, *a: object) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None:
        first = event["event"] == "S1_UNIT" and not self.units()
        self.events.append(event)
        if first:
            self._action(event)

    def units(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "S1_UNIT"]

    def planned(self) -> int:
        (plan,) = [e for e in self.events if e["event"] == "S1_PLAN"]
        return len(plan["units"])


def _files(partition: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(partition.iterdir())}


def _assert_same_bytes(result: BuildResult, reference: BuildResult) -> None:
    assert (
        result.report.determinism_receipt["sha256_hex"]
        == reference.report.determinism_receipt["sha256_hex"]
    )
    for name in ("tile_index", "tile_bounds"):
        assert _files(result.paths[name]) == _files(reference.paths[name])
    assert result.summaries == reference.summaries


def _staging_left(out: Path) -> list[Path]:
    folder = out / STAGING_DIRNAME
    return list(folder.iterdir()) if folder.exists() else []


def _pid(worker: str) -> int:
    return int(worker.removeprefix("pid"))


def test_a_real_cluster_publishes_the_process_pool_bytes(
    small_world, reference, start_cluster, tmp_path: Path
) -> None:
    cluster = start_cluster()
    telemetry = _OnFirstUnit(lambda event: None)
    result = build(
        *small_world,
        tmp_path / "out",
        executor="dask",
        scheduler=cluster.address,
        telemetry=telemetry,
    )
    _assert_same_bytes(result, reference)
    assert result.report.pat.workers_used == 2
    (executor,) = [e for e in telemetry.events if e["event"] == "S1_EXECUTOR"]
    assert executor["workers"] == 2
    # every unit ran in a worker process of the cluster, none in this one
    units = telemetry.units()
    assert len(units) == telemetry.planned() > 1
    groups = {os.getpgid(_pid(u["worker"])) for u in units}
    assert groups <= {w.pid for w in cluster.workers}
    assert not _staging_left(tmp_path / "out")


def test_a_worker_killed_mid_build_costs_nothing_but_time(
    small_world, reference, start_cluster, tmp_path: Path
) -> None:
    cluster = start_cluster(SLOW_UNITS)

    def kill_the_other_worker(event: dict[str, Any]) -> None:
        # the first unit is back from one worker; the other is in the middle of its own
        reporter = cluster.worker_of(_pid(event["worker"]))
        (other,) = [w for w in cluster.workers if w is not reporter]
        cluster.kill(other)

    telemetry = _OnFirstUnit(kill_the_other_worker)
    result = build(
        *small_world,
        tmp_path / "out",
        executor="dask",
        scheduler=cluster.address,
        telemetry=telemetry,
    )
    (dead,) = cluster.killed
    assert dead in cluster.workers and dead.returncode == -signal.SIGKILL
    _assert_same_bytes(result, reference)
    assert not _staging_left(tmp_path / "out")
    # the survivor ran the dead worker's units again: all but at most one are its own
    units = telemetry.units()
    (survivor,) = [w for w in cluster.workers if w is not dead]
    by_survivor = [u for u in units if os.getpgid(_pid(u["worker"])) == survivor.pid]
    assert len(units) == telemetry.planned() > 2
    assert len(by_survivor) >= len(units) - 1


def test_a_dead_scheduler_fails_the_build_cleanly_and_the_rerun_is_identical(
    small_world, reference, start_cluster, tmp_path: Path
) -> None:
    cluster = start_cluster(SLOW_UNITS)
    out = tmp_path / "out"
    # the CLI, as a user runs it; its event log says when the first unit is done
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tileindex",
            *build_args(*small_world, out, "--executor", "dask", "--scheduler", cluster.address),
        ],
        env={**os.environ, "PYTHONPATH": _python_path()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        killed_at = _kill_scheduler_after_first_unit(cluster, out, proc)
        _, err = proc.communicate(timeout=FAIL_SECONDS)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert took < FAIL_SECONDS
    # one line that says what happened, the S1_ERROR event, no traceback
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines[0].startswith("error: lost the connection to the dask scheduler at")
    assert lines[0].endswith("(S1_SCHEDULER_LOST)")
    assert json.loads(lines[1])["code"] == "S1_SCHEDULER_LOST"
    (log,) = out.glob("logs/**/events.jsonl")
    assert json.loads(log.read_text().splitlines()[-1])["code"] == "S1_SCHEDULER_LOST"
    # nothing at the final paths, no staging left behind
    assert not (out / "data").exists() and not (out / "reports").exists()
    assert not _staging_left(out)
    # the rerun (here in-process) publishes the bytes the lost run would have
    rerun = build(*small_world, out)
    _assert_same_bytes(rerun, reference)


def _kill_scheduler_after_first_unit(
    cluster: Cluster, out: Path, proc: subprocess.Popen[str]
) -> float:
    """Wait for the first S1_UNIT in the build's event log, SIGKILL the scheduler, and
    return when (monotonic)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before its first unit"
        for log in out.glob("logs/**/events.jsonl"):
            if '"S1_UNIT"' in log.read_text():
                cluster.kill(cluster.scheduler)
                return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"no unit was done within {START_SECONDS} s\n{cluster.log_tail()}")


def test_an_unreachable_scheduler_is_a_clean_error(small_world, tmp_path: Path) -> None:
    import dask

    # a port of ours that does not listen: connecting is refused until dask gives up
    with (
        socket.socket() as port,
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
    ):
        port.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{port.getsockname()[1]}"
        with pytest.raises(
            SchedulerLostError, match=f"cannot reach the dask scheduler at {address}"
        ):
            build(*small_world, tmp_path, executor="dask", scheduler=address)
    assert not (tmp_path / "data").exists() and not _staging_left(tmp_path)
