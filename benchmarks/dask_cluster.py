"""The distributed engine against the process pool: the world at ``--resolution`` built on
a real dask cluster (a ``dask scheduler`` and two single-threaded ``dask worker``
processes on the loopback interface, started from the command line as on a cluster)
and by the 2-process pool, same inputs, same machine.

    python benchmarks/dask_cluster.py [--resolution 30] [--repeats 3] [--predicate center]
                                      [--record LABEL]

The cluster is started once and kept for every repeat, as a user's cluster would be
(its start-up is reported apart, not timed with the builds). Each repeat runs, as child
processes measured from outside and alternating which goes first:

- ``process pool``: ``tileindex build --workers 2 --no-cache``;
- ``dask``: ``tileindex build --executor dask --scheduler ADDRESS --no-cache``.

Printed: medians, the ratio dask / process pool (target ≤ 1.15), the peak RSS of each
dask worker (nanny + worker process, sampled every 0.1 s) and of the client's process
tree, and whether every dask build published the process pool's bytes (the
determinism receipt). ``--record LABEL`` appends the table to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, PY, _report_file, _tree_rss, inputs, measure, ours_cmd, record

WORK = BENCH / "_work" / "dask_cluster"
TARGET = 1.15
START_SECONDS = 120


@contextlib.contextmanager
def cluster(folder: Path, workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and ``workers`` single-threaded workers, each its own process group,
    all killed on exit."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    scheduler_file = folder / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (folder / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [PY, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        return proc

    try:
        start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host=127.0.0.1",
            "--port=0",
            "--no-dashboard",
            "--dashboard-address=127.0.0.1:0",
            "--idle-timeout=3600s",
            f"--scheduler-file={scheduler_file}",
        )
        deadline = time.monotonic() + START_SECONDS
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise SystemExit((folder / "scheduler.log").read_text()[-2000:])
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            start(
                f"worker{i}",
                "distributed.cli.dask_worker",
                address,
                "--host=127.0.0.1",
                "--nworkers=1",
                "--nthreads=1",
                "--no-dashboard",
                "--memory-limit=0",  # measured here, not policed by dask
                f"--local-directory={folder / f'worker{i}'}",
                "--death-timeout=60s",
            )
        import distributed

        with distributed.Client(address, timeout=START_SECONDS) as client:
            client.wait_for_workers(workers, timeout=START_SECONDS)
        yield address, procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=30)


class Peaks:
    """The peak RSS of each process tree in ``procs``, sampled every 0.1 s while on."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.procs = procs
        self.peak = [0] * len(procs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                self.peak[i] = max(self.peak[i], _tree_rss(proc.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _receipt(out: Path) -> str:
    report = json.loads(_report_file(out, "s1_run_report.json").read_text())
    return str(report["determinism_receipt"]["sha256_hex"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--predicate", default="center")
    p.add_argument("--record", metavar="LABEL")
    args = p.parse_args()
    inp = inputs(args.resolution)
    t0 = time.perf_counter()
    with cluster(WORK / "cluster") as (address, procs):
        started = time.perf_counter() - t0
        print(f"cluster at {address}: up in {started:.1f} s", flush=True)
        cmds = {
            "process pool": lambda o: ours_cmd(inp, o, args.predicate, 2),
            "dask": lambda o: [
                *ours_cmd(inp, o, args.predicate, 2),
                "--executor",
                "dask",
                "--scheduler",
                address,
            ],
        }
        names = list(cmds)
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        worker_peaks: list[int] = []
        receipts: dict[str, set[str]] = {n: set() for n in names}
        for rep in range(args.repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                out = WORK / f"out-{name.replace(' ', '-')}"
                shutil.rmtree(out, ignore_errors=True)
                with Peaks(procs[1:]) as peaks:
                    m = measure(cmds[name](out), name, WORK / f"{name.replace(' ', '-')}-{rep}.log")
                if name == "dask":
                    worker_peaks.append(max(peaks.peak))
                receipts[name].add(_receipt(out))
                runs[name].append(m)
                rss = m["tree_rss_peak_bytes"] / 2**20
                print(
                    f"rep {rep} {name}: {m['wall_s']:.1f} s (CPU of the client's tree "
                    f"{m['cpu_s']:.1f} s, its peak RSS {rss:,.0f} MiB)",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
    med = {n: statistics.median(r["wall_s"] for r in runs[n]) for n in names}
    ratio = med["dask"] / med["process pool"]
    same = len(receipts["dask"] | receipts["process pool"]) == 1
    lines = [
        "| engine | wall (median) | runs (s) | client process tree peak RSS "
        "| dask worker peak RSS |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs[n])
        client = max(r["tree_rss_peak_bytes"] for r in runs[n]) / 2**20
        worker = f"{max(worker_peaks) / 2**20:,.0f} MiB" if n == "dask" else "-"
        lines.append(f"| {n} | {med[n]:.1f} s | {walls} | {client:,.0f} MiB | {worker} |")
    text = "\n".join(lines) + (
        f"\n\n- dask / process pool = **{ratio:.3f}** (target ≤ {TARGET}: "
        f"{'met' if ratio <= TARGET else 'not met'}); same receipt for every build: {same} "
        f"(`{sorted(receipts['process pool'])[0][:12]}…`); the cluster (scheduler + 2 "
        f"workers) came up in {started:.1f} s, not included; load before the runs "
        f"{min(r['load1_before'] for n in names for r in runs[n]):.1f}-"
        f"{max(r['load1_before'] for n in names for r in runs[n]):.1f}\n"
    )
    print(text)
    if args.record:
        record(
            f"Distributed: {args.record} — world at {args.resolution:g}″, "
            f"{args.predicate}, medians of {args.repeats}",
            "`benchmarks/dask_cluster.py`: a `dask scheduler` and two `dask worker "
            "--nthreads 1` processes on 127.0.0.1, kept up for every repeat, against "
            "`tileindex build --workers 2`; no cache, alternating, measured from "
            f"outside.\n\n{text}",
        )


if __name__ == "__main__":
    main()
