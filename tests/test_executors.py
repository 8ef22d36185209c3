"""The executors and the task runner: names and ready executors, CPU counts, a bounded
window of jobs in flight, results whose arrival order does not reach the bytes, workers
that die with their parent, and dask kept out of builds that do not ask for it."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import shapely

from tileindex import plan as plan_module
from tileindex.errors import ConfigError, GeometryInvalidError, SchedulerLostError, WorkerError
from tileindex.executors import (
    EXECUTORS,
    Job,
    TaskRunner,
    default_workers,
    get_executor,
)
from tileindex.executors import runner as runner_module
from tileindex.faults import ENV
from tileindex.geometry import CountryGeometry
from tileindex.pipeline import build

from factories import build_args, make_inputs

COUNTRIES = {
    "AA": [shapely.Polygon([(0, 0), (30, 2), (28, 25), (1, 20)])],
    "BB": [shapely.box(10, 5, 15, 10)],
    "CC": [shapely.box(-60, -30, -40, -10)],
}
GRID = {"ncols": 720, "nrows": 360, "transform": (0.5, 0.0, -180.0, 0.0, -0.5, 90.0)}
LAYOUT = {"rows_per_row_group": 300, "row_groups_per_file": 2}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path_factory.mktemp("executors"), COUNTRIES, **GRID)


# -- names, ready executors, worker counts ------------------------------------------


def test_an_unknown_executor_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'threads'") as info:
        get_executor("threads", 2)
    assert all(name in str(info.value) for name in EXECUTORS)


def test_an_executor_that_is_neither_a_name_nor_an_executor_is_refused() -> None:
    with pytest.raises(ConfigError, match="not int"):
        get_executor(4, 2)  # type: ignore[arg-type]


def test_a_process_pool_uses_the_spawn_context() -> None:
    pool, n = get_executor("process", 2)
    try:
        assert n == 2
        assert pool._mp_context.get_start_method() == "spawn"  # type: ignore[attr-defined]
    finally:
        pool.shutdown()


def test_a_ready_executor_is_used_as_it_is_with_its_own_size() -> None:
    with ThreadPoolExecutor(max_workers=3) as threads:
        pool, n = get_executor(threads)
        assert pool is threads and n == 3
        assert get_executor(threads, 2) == (threads, 2)


def test_the_runner_leaves_a_ready_executor_open() -> None:
    with ThreadPoolExecutor(max_workers=2) as threads:
        with TaskRunner(threads, None) as runner:
            got = runner.run([Job(k, _square, (k,), f"job {k}") for k in range(5)], _ignore)
        assert got == {k: k * k for k in range(5)}
        assert threads.submit(_square, 3, 1).result() == 9  # not shut down


def test_the_cpu_count_falls_back_where_affinity_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert default_workers() == 7
    pool, n = get_executor("process", None)
    pool.shutdown()
    assert n == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot be determined"
    assert default_workers() == 1


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_the_cpu_count_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_workers() == 2


# -- the window in flight ---------------------------------------------------------------


def _square(x: int, attempt: int) -> int:
    return x * x


def _ignore(key: Hashable, result: Any) -> None:
    pass


def test_serial_jobs_are_consumed_one_by_one_so_progress_moves() -> None:
    trace: list[str] = []

    def work(k: int, attempt: int) -> int:
        trace.append(f"run {k}")
        return k

    jobs = [Job(k, work, (k,), f"job {k}") for k in range(4)]
    with TaskRunner("serial", 1) as runner:
        runner.run(jobs, lambda key, _: trace.append(f"done {key}"))
    assert trace == ["run 0", "done 0", "run 1", "done 1", "run 2", "done 2", "run 3", "done 3"]


def test_a_hard_failure_stops_the_run_before_the_other_jobs_start() -> None:
    ran: list[int] = []

    def work(k: int, attempt: int) -> int:
        ran.append(k)
        if k == 1:
            raise GeometryInvalidError(f"job {k} has a bad geometry")
        return k

    jobs = [Job(k, work, (k,), f"job {k}") for k in range(20)]
    with pytest.raises(GeometryInvalidError, match="job 1"), TaskRunner("serial", 1) as runner:
        runner.run(jobs, _ignore)
    assert ran == [0, 1]


class _Counting(Executor):
    """A thread pool that records how many submitted jobs were not yet consumed."""

    def __init__(self, workers: int) -> None:
        self._threads = ThreadPoolExecutor(max_workers=workers)
        self._max_workers = workers
        self.outstanding = 0
        self.peak = 0
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.outstanding += 1
        self.submitted += 1
        self.peak = max(self.peak, self.outstanding)
        return self._threads.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)


def test_a_pool_has_at_most_two_jobs_per_worker_in_flight() -> None:
    pool = _Counting(workers=3)

    def consumed(key: Hashable, result: Any) -> None:
        pool.outstanding -= 1

    jobs = [Job(k, _sleepy_square, (k,), f"job {k}") for k in range(40)]
    try:
        with TaskRunner(pool, None) as runner:
            got = runner.run(jobs, consumed)
    finally:
        pool.shutdown()
    assert got == {k: k * k for k in range(40)}
    assert pool.submitted == 40
    assert pool.peak == 6  # filled up to the bound, never past it


def _sleepy_square(x: int, attempt: int) -> int:
    time.sleep(0.002)
    return x * x


def test_a_job_that_keeps_failing_on_a_pool_stops_the_rest() -> None:
    pool = _Counting(workers=2)

    def work(k: int, attempt: int) -> int:
        if k == 0:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return k

    jobs = [Job(k, work, (k,), f"job {k}") for k in range(200)]
    try:
        with pytest.raises(WorkerError, match=r"job 0 failed 4 times; last error: RuntimeError"):
            TaskRunner(pool, None, max_retries=3).run(jobs, _ignore)
    finally:
        pool.shutdown(cancel_futures=True)
    assert pool.submitted < 40  # the failure did not wait for the other 199 jobs


class _LostCluster(Executor):
    """An executor whose cluster went away: its futures never resolve, and its
    ``check()`` says so once ``after`` checks have passed."""

    def __init__(self, after: int) -> None:
        self._max_workers = 2
        self.checks = 0
        self._after = after

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()  # never done

    def check(self) -> None:
        self.checks += 1
        if self.checks > self._after:
            raise SchedulerLostError("lost the connection to the scheduler")


def test_a_runner_waiting_on_a_lost_cluster_stops_when_the_executor_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "CHECK_SECONDS", 0.05)
    pool = _LostCluster(after=2)
    jobs = [Job(k, _sleepy_square, (k,), f"job {k}") for k in range(10)]
    t0 = time.monotonic()
    with pytest.raises(SchedulerLostError, match="lost the connection"):
        TaskRunner(pool, None).run(jobs, _ignore)
    assert pool.checks == 3 and time.monotonic() - t0 < 5


class _OutOfOrder(Executor):
    """Completes jobs last-submitted first: a stand-in for workers finishing in any
    order. Submitting only queues; a thread runs the newest job whenever two or more are
    queued, or the one left after a pause."""

    def __init__(self) -> None:
        self._stack: list[tuple[Future[Any], Callable[[], Any]]] = []
        self._lock = threading.Lock()
        self._last_submit = time.monotonic()
        self._stop = threading.Event()
        self.completed: list[int] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._stack.append((future, lambda: fn(*args, **kwargs)))
            self._last_submit = time.monotonic()
        return future

    def _loop(self) -> None:
        while not self._stop.wait(0.002):
            with self._lock:
                idle = time.monotonic() - self._last_submit > 0.05
                if not self._stack or (len(self._stack) < 2 and not idle):
                    continue
                future, call = self._stack.pop()
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                key = getattr(result, "unit_id", getattr(result, "part_index", None))
                self.completed.append(key)
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stop.set()
        self._thread.join()


def test_the_order_results_arrive_in_does_not_reach_the_bytes(inputs, tmp_path: Path) -> None:
    serial = build(*inputs, tmp_path / "serial", chunk_size=32, **LAYOUT)
    pool = _OutOfOrder()
    try:
        shuffled = build(
            *inputs, tmp_path / "shuffled", chunk_size=32, executor=pool, workers=2, **LAYOUT
        )
    finally:
        pool.shutdown()
    assert pool.completed != sorted(pool.completed)  # the test did reorder the results
    assert (
        shuffled.report.determinism_receipt["sha256_hex"]
        == serial.report.determinism_receipt["sha256_hex"]
    )
    for key in ("tile_index", "tile_bounds"):
        files = sorted(shuffled.paths[key].iterdir())
        assert [p.read_bytes() for p in files] == [
            p.read_bytes() for p in sorted(serial.paths[key].iterdir())
        ]
    assert shuffled.summaries == serial.summaries


class _Recording(ThreadPoolExecutor):
    """Threads that keep the arguments of every job they are given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.calls.append((fn.__name__, args))
        return super().submit(fn, *args, **kwargs)


def test_a_units_job_names_its_country_geometry_instead_of_carrying_it(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a country's geometry goes to the workers once, as a file under the staging folder,
    # not pickled into each of its units' jobs (which a dask scheduler relays twice)
    serial = build(*inputs, tmp_path / "serial", chunk_size=32, **LAYOUT)
    small_units = functools.partial(plan_module.plan_units, unit_cells=2_000)
    monkeypatch.setattr(plan_module, "plan_units", small_units)  # several units a country
    with _Recording() as pool:
        got = build(*inputs, tmp_path / "pool", chunk_size=32, executor=pool, **LAYOUT)
    units = [args for name, args in pool.calls if name == "mask_unit"]
    per_country = Counter(args[1].country_iso for args in units)  # type: ignore[attr-defined]
    assert max(per_country.values()) > 1  # some country has several units
    for args in units:
        assert not any(isinstance(a, CountryGeometry) for a in args)
        assert len(pickle.dumps(args)) < 4096
    assert got.report.determinism_receipt == serial.report.determinism_receipt


# -- dask is optional ----------------------------------------------------------------


def test_builds_without_dask_never_import_it(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path, {"AA": [shapely.box(0, 0, 10, 10)]})
    script = f"""
import sys
import tileindex, tileindex.cli, tileindex.executors
from tileindex.pipeline import build
inputs = {[str(p) for p in inputs]!r}
build(*inputs, {str(tmp_path / "serial")!r}, workers=1)
build(*inputs, {str(tmp_path / "process")!r}, workers=2, chunk_size=4)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def no_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if dask were not installed: ``None`` in sys.modules makes an import fail."""
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("no_dask")
def test_the_dask_executor_without_dask_names_the_extra() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'tileindex\[dask\]'"):
        get_executor("dask", 2)
    pool, n = get_executor("process", 2)  # the other executors do not need it
    pool.shutdown()
    assert n == 2


@pytest.mark.usefixtures("no_dask")
def test_a_dask_build_without_dask_fails_cleanly(inputs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tileindex\[dask\]"):
        build(*inputs, tmp_path, executor="dask", workers=2)
    assert not (tmp_path / "data").exists()


# -- workers die with their parent ----------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root``, mapped to its start time (to tell a reused pid)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents.setdefault(st[1], []).append(int(entry.name))
            starts[int(entry.name)] = st[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z" and st[2] == start  # a zombie has exited


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_within_seconds_when_the_parent_is_killed(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tileindex", *build_args(*inputs, out, "--workers", "2")]
    log = tmp_path / "build.log"
    # every unit sleeps first, so the build is still masking when the parent dies; the
    # output goes to a file: a pipe would stay open as long as any orphan holds it
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, env={**os.environ, ENV: "unit:sleep:*"}, stdout=sink, stderr=sink
        )
    family: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            family = _descendants(proc.pid)
            workers = [p for p in family if "spawn_main" in _cmdline(p)]
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert len(workers) == 2, f"the build never started its workers: {log.read_text()}"
        time.sleep(0.5)  # let both take a unit
        family = _descendants(proc.pid)
        assert any("resource_tracker" in _cmdline(p) for p in family)
        assert proc.poll() is None, "the build finished before its parent could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(*p) for p in family.items()):
            time.sleep(0.1)
        left = {p: _cmdline(p) for p, start in family.items() if _alive(p, start)}
        assert not left, f"processes of the killed build are still running: {left}"
    finally:
        for pid, start in family.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
