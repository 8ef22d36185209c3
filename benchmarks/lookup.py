"""Point lookup on the world (docs/CONTRACT.md §10.4): tileindex.lookup against geopandas
``sjoin`` and DuckDB spatial on the same random points, same machine, one core.

    python benchmarks/lookup.py [--resolution 30] [--points 10000000] [--record LABEL]

The real inputs (Natural Earth 1:10m, the WorldPop grid at ``--resolution``) are
prepared once into ``benchmarks/_work/lookup-<res>arcsec/`` and built once (center) into
``benchmarks/_work/lookup-out-<res>arcsec/``. Points: uniform in lon over [-180, 180)
and in lat over the grid's rows (land and sea), plus ``--boundary-share`` of them put
exactly on vertices of the kept geometry (shells and holes), where the rules differ.

Timed (``perf_counter``, one process, one thread): building the lookup structure once
(``PointLookup.from_index``), then ``tileindex.lookup`` over all points (the median of
``--repeat`` runs, also in CPU time; and the peak memory a first run allocates: beyond
the answer table it returns, that must not grow with the points); geopandas:
``points_from_xy`` + ``sjoin(predicate="intersects")`` against the kept geometry; DuckDB
spatial (the ``duckdb-ext-spatial`` wheel, loaded from disk; skipped with the reason when
it cannot be loaded offline): ``ST_Intersects(geom, ST_Point(lon, lat))`` with one thread.

Agreement is on the (point, key) pairs. ``intersects`` is the closed polygon: a point on a
hole's outline is in the polygon for geopandas and DuckDB, and not for tileindex (open
holes, the center rule), so an enclave's outline goes to both the enclave and its host
there and to the enclave alone here. Every disagreement is printed (a sample) with the
point's distance to the region's boundary: each must be 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from run import git_commit, world_index  # noqa: E402

import tileindex  # noqa: E402
from tileindex.lookup import PointLookup, lookup  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TARGET = 5e6  # points/s per core at 30″


def _points(index: tileindex.Index, n: int, share: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    g = index.grid
    south, north = g.f + g.e * g.nrows, g.f
    lon = rng.uniform(-180.0, 180.0, n)
    lat = rng.uniform(south, north, n)
    k = int(n * share)
    if k:
        # half on any vertex (shared borders: every method gives both regions), half on
        # hole vertices (enclave outlines: where intersects and the center rule differ)
        parts = shapely.get_parts(np.asarray(list(index.geometry().values()), dtype=object))
        xy = shapely.get_coordinates(parts)
        holes = [r for p in parts for r in p.interiors]
        hxy = shapely.get_coordinates(np.asarray(holes, dtype=object)) if holes else xy
        at = rng.choice(n, k, replace=False)
        pick = rng.integers(0, xy.shape[0], k - k // 2)
        hpick = rng.integers(0, hxy.shape[0], k // 2)
        lon[at] = np.r_[xy[pick, 0], hxy[hpick, 0]]
        lat[at] = np.r_[xy[pick, 1], hxy[hpick, 1]]
    return lon, lat


def _pairs(point: np.ndarray, key: np.ndarray, nkeys: int) -> np.ndarray:
    return np.unique(point.astype(np.int64) * nkeys + key.astype(np.int64))


def _traced(fn):
    """``fn()`` and the peak bytes it had allocated at once, an upper bound: NumPy's and
    Python's (tracemalloc) plus Arrow's (a pool used by nothing else before)."""
    pool = pa.system_memory_pool()
    if pool.backend_name == pa.default_memory_pool().backend_name or pool.max_memory():
        return fn(), -1  # no fresh pool to count Arrow's allocations in
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
    return result, peak + pool.max_memory()


def _ours(index, lon, lat, batch, repeat):
    """The structure's build time; the peak memory a first, untimed run allocates (the
    answer table it returns is part of it); the median wall and CPU time of ``repeat``
    more runs; the answer's (point, key) pairs."""
    t0 = time.perf_counter()
    finder = PointLookup.from_index(index)
    t_build = time.perf_counter() - t0
    # a first run, untimed, traced: the memory it needs, its answer included
    table, peak = _traced(lambda: lookup(finder, lon, lat, batch_size=batch))
    times, cpu = [], []
    for _ in range(repeat):
        table = None  # the previous answer is freed before the next run
        t0, c0 = time.perf_counter(), time.process_time()
        table = lookup(finder, lon, lat, batch_size=batch)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    kid = pc.index_in(table.column(index.key_column), value_set=pa.array(finder.keys))
    valid = kid.is_valid().to_numpy(zero_copy_only=False)
    kid = kid.fill_null(0).to_numpy()
    pt = table.column("point").to_numpy()
    pairs = _pairs(pt[valid], kid[valid], len(finder.keys))
    timing = (float(np.median(times)), times, float(np.median(cpu)))
    return finder, t_build, timing, peak, table.nbytes, pairs


def _geopandas(finder, geoms, lon, lat):
    if importlib.util.find_spec("geopandas") is None:
        return None, "geopandas is not installed (pip install -r benchmarks/requirements.txt)"
    import geopandas as gpd

    regions = gpd.GeoDataFrame(
        {"rid": np.arange(len(finder.keys))},
        geometry=[geoms[k] for k in finder.keys],
        crs="EPSG:4326",
    )
    t0 = time.perf_counter()
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    joined = gpd.sjoin(pts, regions, predicate="intersects", how="inner")
    seconds = time.perf_counter() - t0
    pairs = _pairs(joined.index.to_numpy(), joined["rid"].to_numpy(), len(finder.keys))
    return (seconds, pairs), ""


def _duckdb(finder, geoms, lon, lat):
    if importlib.util.find_spec("duckdb") is None:
        return None, "duckdb is not installed (pip install -r benchmarks/requirements.txt)"
    import duckdb

    ext = None
    if importlib.util.find_spec("duckdb_ext") is not None:
        base = Path(importlib.util.find_spec("duckdb_ext").submodule_search_locations[0])
        found = sorted(base.glob(f"extensions/v{duckdb.__version__}/*/spatial.duckdb_extension"))
        ext = found[0] if found else None
    if ext is None:
        return None, (
            f"no spatial extension for duckdb {duckdb.__version__} on disk "
            "(pip install duckdb-ext-spatial with the matching duckdb); not downloaded"
        )
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": 1})
    try:
        con.execute(f"LOAD '{ext}'")
    except duckdb.Error as exc:
        return None, f"the spatial extension did not load offline ({exc})"
    wkb = shapely.to_wkb([geoms[k] for k in finder.keys])
    regions = pa.table({"rid": np.arange(len(finder.keys)), "wkb": pa.array(wkb, pa.binary())})
    points = pa.table({"pid": np.arange(lon.size), "lon": lon, "lat": lat})
    con.register("regions_arrow", regions)
    con.register("points_arrow", points)
    con.execute(
        "CREATE TABLE regions AS SELECT rid, ST_GeomFromWKB(wkb) AS geom FROM regions_arrow"
    )
    t0 = time.perf_counter()
    got = con.execute(
        "SELECT p.pid, r.rid FROM points_arrow p JOIN regions r "
        "ON ST_Intersects(r.geom, ST_Point(p.lon, p.lat))"
    ).fetchnumpy()
    seconds = time.perf_counter() - t0
    return (seconds, _pairs(got["pid"], got["rid"], len(finder.keys))), ""


def _explain(name, ours, theirs, finder, geoms, lon, lat, sample=8):
    """Disagreements with the distance of each point to its region's boundary and to
    the outlines of the region's holes (where closed and open holes differ)."""
    nk = len(finder.keys)
    only_ours, only_theirs = np.setdiff1d(ours, theirs), np.setdiff1d(theirs, ours)
    hole_lines: dict[str, shapely.Geometry] = {}
    lines = []
    dists, on_hole = [], 0
    for which, arr in (("tileindex only", only_ours), (f"{name} only", only_theirs)):
        pt, kid = np.divmod(arr, nk)
        for p, k in zip(pt.tolist(), kid.tolist(), strict=True):
            key = finder.keys[k]
            if key not in hole_lines:
                rings = [r for part in shapely.get_parts(geoms[key]) for r in part.interiors]
                hole_lines[key] = shapely.multilinestrings(rings) if rings else None
            point = shapely.Point(lon[p], lat[p])
            d = shapely.distance(point, geoms[key].boundary)
            hole = hole_lines[key] is not None and shapely.distance(point, hole_lines[key]) == 0
            dists.append(d)
            on_hole += bool(hole)
            if len(lines) < sample:
                where = "on a hole's outline" if hole else "not on a hole's outline"
                lines.append(
                    f"    {which}: point {p} ({float(lon[p])!r}, {float(lat[p])!r}) {key}: "
                    f"distance {d:g} to its boundary, {where}"
                )
    on_boundary = sum(1 for d in dists if d == 0.0)
    return only_ours.size, only_theirs.size, on_boundary, on_hole, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=30.0, help="grid arc-seconds (30)")
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--boundary-share", type=float, default=0.001)
    ap.add_argument("--batch-size", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat", type=int, default=3, help="time tileindex.lookup N times, report the median"
    )
    ap.add_argument(
        "--peer-points",
        type=int,
        default=1_000_000,
        help="geopandas and DuckDB get the first N points (they run at ~1e3-1e5 points/s "
        "on the world's large polygons); agreement is on those points",
    )
    ap.add_argument("--skip-peers", action="store_true", help="time tileindex only")
    ap.add_argument("--record", metavar="LABEL", help="append the results to RESULTS.md")
    args = ap.parse_args()

    index = world_index(args.resolution)
    lon, lat = _points(index, args.points, args.boundary_share, args.seed)
    finder, t_build, (t_lookup, times, t_cpu), peak, answer, ours = _ours(
        index, lon, lat, args.batch_size, args.repeat
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rate = args.points / t_lookup
    rows = [("tileindex.lookup", t_lookup, rate, ours.size, "—", "")]
    print(
        f"grid {args.resolution:g}″ ({index.grid.ncols} x {index.grid.nrows}), "
        f"{len(finder.keys)} regions, {args.points:,} points "
        f"({args.boundary_share:g} on vertices, half of them on hole vertices)"
    )
    print(
        f"structure: built in {t_build:.2f} s, {finder.codes.size:,} intervals, "
        f"{finder.blocks.size:,} blocks ({(finder.blocks >= -1).mean():.1%} uniform), "
        f"{finder.nbytes / 2**20:.1f} MiB of arrays; peak RSS {rss / 2**30:.2f} GiB"
    )
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"tileindex.lookup: {t_lookup:.2f} s (median of {len(times)}: {runs}), "
        f"{rate:,.0f} points/s ({args.points / t_cpu:,.0f} per CPU second), {ours.size:,} pairs"
    )
    memory = (
        f"peak allocation {peak / 2**20:.0f} MiB of which the answer is {answer / 2**20:.0f} "
        f"MiB, so {(peak - answer) / 2**20:.0f} MiB of work space (batches of "
        f"{args.batch_size:,} points)"
        if peak >= 0
        else "memory not traced (Arrow has no separate pool here)"
    )
    print(f"tileindex.lookup: {memory}")
    geoms = index.geometry()
    notes = []
    if not args.skip_peers:
        m = min(args.peer_points, args.points)
        mine = ours[ours < m * len(finder.keys)]  # pairs of the first m points
        for name, run in (("geopandas sjoin", _geopandas), ("duckdb spatial", _duckdb)):
            res, why = run(finder, geoms, lon[:m], lat[:m])
            if res is None:
                print(f"{name}: skipped: {why}")
                notes.append(f"{name} skipped: {why}")
                continue
            seconds, theirs = res
            a, b, zero, hole, lines = _explain(name, mine, theirs, finder, geoms, lon, lat)
            agree = 1.0 - (a + b) / max(np.union1d(mine, theirs).size, 1)
            print(
                f"{name} ({m:,} points): {seconds:.2f} s, {m / seconds:,.0f} points/s, "
                f"{theirs.size:,} pairs; agreement {agree:.6%}: {a} pairs only ours, "
                f"{b} only theirs, {zero} of {a + b} on the region's boundary (distance 0), "
                f"{hole} on one of its holes' outlines (closed there, open here)"
            )
            for line in lines:
                print(line)
            rows.append(
                (
                    f"{name} ({m:,} points)",
                    seconds,
                    m / seconds,
                    theirs.size,
                    f"{agree:.6%}",
                    f"{a} / {b}: {zero} on the region's boundary, {hole} on a hole's outline",
                )
            )
    if args.record:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        machine = platform.processor() or platform.machine()
        text = [
            f"\n### Lookup: {args.record} (commit {git_commit()}, {stamp})\n",
            f"{args.points:,} points ({args.boundary_share:g} on vertices, half on hole vertices), "
            f"grid "
            f"{args.resolution:g}″, {len(finder.keys)} regions, one core, {machine}; "
            f"structure built once in {t_build:.2f} s ({finder.nbytes / 2**20:.1f} MiB of arrays), "
            f"peak RSS {rss / 2**30:.2f} GiB; tileindex.lookup: median of {len(times)} runs "
            f"({runs} s; {args.points / t_cpu:,.0f} points per CPU second), {memory}.\n",
            "| method | seconds | points/s | pairs | agreement | disagreements (ours / theirs) |",
            "|---|---|---|---|---|---|",
            *[f"| {m} | {s:.2f} | {r:,.0f} | {p:,} | {a} | {d} |" for m, s, r, p, a, d in rows],
            *[f"\n{n}" for n in notes],
            "",
        ]
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(text))
    target = "met" if rate >= TARGET else "not met"
    print(f"target {TARGET:,.0f} points/s per core (at 30″): {target} at {args.resolution:g}″")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
