"""Weighted sampling on the world (docs/CONTRACT.md §10.4): ``tileindex.sample`` with 1 and
2 workers, alternating, and an independent check that every point lies in its region.

    python benchmarks/sample.py [--resolution 30] [--points 1000000] [--per-region 100]
                                [--repeats 3] [--check 200000] [--record LABEL]

The inputs (Natural Earth 1:10m, the WorldPop grid at ``--resolution``) and the center
build are the ones ``benchmarks/lookup.py`` prepares under ``benchmarks/_work/`` (made here
if missing). Two cases, both with ``weights="area"`` and a fixed seed:

- ``n in total``: ``--points`` points over every region, split by area;
- ``n per region``: ``--per-region`` points in each region with cells.

Each repeat runs both cases with ``workers=1`` and ``workers=2`` in this process (a pool
of two is started by the call, so its start is part of the time), the order of the two
alternating between repeats; the medians of ``--repeats`` and points/s are printed. Every
table must equal the first one of its case (``Table.equals``), and a run with small
reading batches (``batch_rows=2**14``) must too: the worker count and the chunking change
no point.

The check is independent of tileindex's kernel: on ``--check`` points drawn at random from
the ``n in total`` table (and every ``n per region`` point), each must lie in its region's
kept geometry (``Index.geometry()``) under the centre rule, decided by GEOS ``intersects``
part by part: in the part's closed shell (``intersects`` with the shell polygon) and in
none of its holes (``intersects`` with a hole polygon is true on its outline too, so a
hole's outline is excluded), and in its cell's closed box. ``--record LABEL`` appends the
results to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import git_commit, wait_for_quiet, world_index  # noqa: E402

import tileindex  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SEED = 11
SMALL_BATCH = 1 << 14


class _WorkerPeak:
    """The largest peak RSS (``VmHWM``) of any child process seen while running: the
    pools' workers, polled from ``/proc`` (``RUSAGE_CHILDREN`` would count the parent's
    pages that a forked child shares before its ``exec``)."""

    def __init__(self, every: float = 0.2) -> None:
        self.peak = 0
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def _poll(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self._every):
            for task in Path(f"/proc/{me}/task").glob("*/children"):
                for pid in task.read_text().split():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue  # it exited
                    for line in status.splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have exited (the caller joins
    the pools' workers first)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _join_workers() -> None:
    # a pool shuts down without waiting (executors/runner.py): its workers exit soon after
    for proc in multiprocessing.active_children():
        proc.join(timeout=60)


def _keys_with_cells(index: tileindex.Index) -> list[str]:
    lines = index.path("country_summaries").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines if line]
    return [d[index.key_column] for d in docs if d["cells_included"] > 0]


def _in_regions(
    index: tileindex.Index, points: pa.Table, geometry: dict[str, Any]
) -> tuple[int, list[str]]:
    """How many points fail the centre rule on their region's kept geometry or their
    cell's closed box, by GEOS ``intersects`` per part (closed shell, holes' outlines
    excluded), and a few of them."""
    g = index.grid
    key = points[index.key_column].to_numpy(zero_copy_only=False)
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    row, col = np.divmod(points["tile_id"].to_numpy().astype(np.int64), g.ncols)
    x0, x1 = g.c + g.a * col, g.c + g.a * (col + 1)
    y0, y1 = g.f + g.e * (row + 1), g.f + g.e * row
    in_cell = (y0 <= lat) & (lat <= y1)
    in_cell &= (
        ((x0 <= lon) & (lon <= x1))
        | ((x0 <= lon + 360) & (lon + 360 <= x1))
        | ((x0 <= lon - 360) & (lon - 360 <= x1))
    )
    ok = np.zeros(lon.size, dtype=bool)
    for k in np.unique(key).tolist():
        mine = np.flatnonzero(key == k)
        x, y = lon[mine], lat[mine]
        inside = np.zeros(mine.size, dtype=bool)
        for part in shapely.get_parts(geometry[k]):
            w, s, e, n = part.bounds
            near = np.flatnonzero((x >= w) & (x <= e) & (y >= s) & (y <= n))
            if not near.size:
                continue
            pts = shapely.points(x[near], y[near])
            shell = shapely.Polygon(part.exterior)
            shapely.prepare(shell)
            hit = shapely.intersects(shell, pts)
            for ring in part.interiors:
                hole = shapely.Polygon(ring)
                shapely.prepare(hole)
                hit &= ~shapely.intersects(hole, pts)
            inside[near] |= hit
        ok[mine] = inside
    bad = np.flatnonzero(~(ok & in_cell))
    shown = [
        f"{key[i]} tile {int(points['tile_id'][int(i)].as_py())} ({lon[i]!r}, {lat[i]!r}): "
        f"{'in its cell' if in_cell[i] else 'outside its cell'}, "
        f"{'in' if ok[i] else 'outside'} its region"
        for i in bad[:10].tolist()
    ]
    return int(bad.size), shown


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=30.0)
    ap.add_argument("--points", type=int, default=1_000_000, help="n in total")
    ap.add_argument("--per-region", type=int, default=100, help="n per region")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--check", type=int, default=200_000, help="points of the n-in-total table checked"
    )
    ap.add_argument(
        "--max-load", type=float, default=1.5, help="wait (up to --max-wait s) for a lower load"
    )
    ap.add_argument("--max-wait", type=float, default=600.0)
    ap.add_argument("--record", metavar="LABEL", help="append the results to RESULTS.md")
    args = ap.parse_args()

    index = world_index(args.resolution)
    regions = _keys_with_cells(index)
    cases: dict[str, dict[str, Any]] = {
        "n in total": {"n": args.points},
        "n per region": {"n": args.per_region, "per_region": True, "keys": regions},
    }
    quiet = wait_for_quiet(args.max_load, args.max_wait)
    load = quiet["load_at_start"]
    times: dict[tuple[str, int], list[float]] = {(c, w): [] for c in cases for w in (1, 2)}
    cpu: dict[tuple[str, int], list[float]] = {(c, w): [] for c in cases for w in (1, 2)}
    tables: dict[str, pa.Table] = {}
    same = True
    watch = _WorkerPeak()
    watch.start()
    for rep in range(args.repeats):
        order = (1, 2) if rep % 2 == 0 else (2, 1)
        for case, kwargs in cases.items():
            for workers in order:
                used = _cpu_seconds()
                start = time.perf_counter()
                table = tileindex.sample(index, seed=SEED, workers=workers, **kwargs)
                seconds = time.perf_counter() - start
                _join_workers()
                times[(case, workers)].append(seconds)
                cpu[(case, workers)].append(_cpu_seconds() - used)
                equal = tables.setdefault(case, table).equals(table)
                same &= equal
                print(
                    f"repeat {rep + 1} {case:12s} workers={workers}: {seconds:6.2f} s "
                    f"({cpu[(case, workers)][-1]:.1f} CPU s), "
                    f"{table.num_rows:,} points{'' if equal else ', DIFFERENT'}",
                    flush=True,
                )
    chunked = {}
    for case, kwargs in cases.items():
        table = tileindex.sample(index, seed=SEED, batch_rows=SMALL_BATCH, **kwargs)
        chunked[case] = tables[case].equals(table)
        print(f"{case}: batch_rows={SMALL_BATCH}: {'same' if chunked[case] else 'DIFFERENT'} table")
    child = watch.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    geometry = index.geometry()
    total = tables["n in total"]
    pick = np.sort(np.random.default_rng(0).choice(total.num_rows, args.check, replace=False))
    checked = {
        "n in total": total.take(pa.array(pick)),
        "n per region": tables["n per region"],
    }
    start = time.perf_counter()
    failures = {c: _in_regions(index, t, geometry) for c, t in checked.items()}
    t_check = time.perf_counter() - start
    for case, (count, shown) in failures.items():
        print(f"check {case}: {checked[case].num_rows:,} points, {count} outside their region")
        for line in shown:
            print(f"  {line}")
    drawn = len(pc.unique(total[index.key_column]))

    rows = []
    for case in cases:
        n = tables[case].num_rows
        med = {w: statistics.median(times[(case, w)]) for w in (1, 2)}
        for w in (1, 2):
            runs = ", ".join(f"{t:.2f}" for t in times[(case, w)])
            used = statistics.median(cpu[(case, w)])
            rows.append((case, n, w, med[w], runs, n / med[w], med[1] / med[w], used))
    print(f"{'case':14s} {'points':>10s} workers {'median s':>9s} {'points/s':>11s} speedup CPU s")
    for case, n, w, med_s, _runs, rate, speedup, used in rows:
        print(f"{case:14s} {n:10,d} {w:7d} {med_s:9.2f} {rate:11,.0f} {speedup:6.2f}x {used:5.1f}")
    ok = same and all(chunked.values()) and not any(c for c, _ in failures.values())
    print(
        f"identical for workers 1 and 2 and every repeat: {same}; peak RSS {rss / 2**20:.0f} MiB "
        f"(this process), {child / 2**20:.0f} MiB (largest worker); checked in {t_check:.1f} s"
    )

    if args.record:
        which = {"n in total": "a random subset", "n per region": "all"}
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        machine = platform.processor() or platform.machine()
        g = index.grid
        text = [
            f"\n### Sample: {args.record} (commit {git_commit()}, {stamp})\n",
            f'`benchmarks/sample.py`: `tileindex.sample(weights="area", seed={SEED})` on the '
            f"world at {args.resolution:g}″ ({g.ncols} x {g.nrows}, "
            f"{index.report.get('rows_emitted'):,} rows, {len(index.keys)} keys, "
            f"{len(regions)} with cells), center; {os.cpu_count()} cores ({machine}) shared "
            f"with other sessions, load {load[0]:.1f} at the start (waited "
            f"{quiet['waited_s']} s for <= {args.max_load:g}: {quiet['quiet']}); workers 1 and "
            f"2 alternating, medians of {args.repeats}, the pool's start included. CPU s: "
            "this process and its workers.\n",
            "| case | points | workers | median s | runs (s) | points/s | speedup | CPU s |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {c} | {n:,} | {w} | {m:.2f} | {r} | {p:,.0f} | {s:.2f}x | {u:.1f} |"
                for c, n, w, m, r, p, s, u in rows
            ],
            "",
            f"- Same table for workers 1 and 2 in every repeat: {same}; with "
            f"`batch_rows={SMALL_BATCH}` (16x smaller reading batches): "
            f"{all(chunked.values())}. The n-in-total sample draws in {drawn} regions.",
            f"- Memory: peak RSS {rss / 2**20:.0f} MiB in the calling process (the tables and "
            f"the kept geometry), {child / 2**20:.0f} MiB in the largest worker; the weights "
            "are read a batch at a time.",
            "- Exact: "
            + "; ".join(
                f"{checked[c].num_rows:,} points of {c} ({which[c]}): "
                f"{failures[c][0]} outside their region or cell"
                for c in cases
            )
            + " (GEOS `intersects` per part of `Index.geometry()`: closed shell, holes' "
            f"outlines excluded; {t_check:.1f} s).",
            "",
        ]
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(text))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
