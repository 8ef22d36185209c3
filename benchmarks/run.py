"""Side-by-side benchmarks of the tileindex build, the floor script and other engines.

    python benchmarks/run.py [--resolution 30] [--repeats 3] [--skip-slow]

Every contender runs as its own process and is measured from outside: wall clock
(``time.perf_counter`` around the child), user+sys CPU (``getrusage(RUSAGE_CHILDREN)``
deltas, so worker processes count), peak RSS of the largest single process (GNU
``/usr/bin/time -v``, when present) and the peak of the summed RSS of the whole
process tree (sampled from /proc every 0.1 s; shared pages count once per process).

Sections (see benchmarks/RESULTS.md for the numbers):
  A  tileindex build, center, --workers 1 and 2
  B  tileindex build, any_overlap, --workers 2
  C  the floor script (benchmarks/floor.py): GDAL centre rule + the same writer
  D  the legacy per-cell engine on sample windows, extrapolated to the world
  E  rasterio rasterize (centre rule) over all country windows, mask only
  F  exactextract coverage > 0 (any_overlap analogue) on large countries, extrapolated
  G  brute-force shapely.contains_xy on every centroid of sample windows, extrapolated
  H  scaling: tileindex build center --workers 2 at other resolutions
  P  a pyinstrument profile of one build (center, --workers 1)
A, B, C and E alternate within each repeat (the order reverses on odd repeats) so
that machine drift hits all of them; medians over the repeats are reported.

Results: ``benchmarks/_work/results.json`` and ``benchmarks/RESULTS.md``
(``--report-only`` re-renders the markdown from the JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
WORK = BENCH / "_work"
RESULTS = BENCH / "RESULTS.md"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
TILEINDEX = str(Path(PY).parent / "tileindex")
GNU_TIME = "/usr/bin/time"

# a boundary-rich window: the Benelux borders (with the Baarle enclaves), Luxembourg,
# and the French and German borders; NW corner lon/lat
SAMPLE_NW = (4.6, 51.93)
# large countries that do not cross the antimeridian, for exactextract
EE_COUNTRIES = "BR,CN,AU,IN,KZ,AR"
# countries whose symmetric difference with the floor is always listed
# the last repeat's outputs kept for the cell diff and the per-country comparisons
KEEP = ("ours_center_w2", "floor", "ours_any_overlap_w2")
DIFF_NAMED = ("BE", "CH", "FJ", "IT", "LS", "NL", "RU", "SM", "US", "VA", "ZA")


# -- measurement ------------------------------------------------------------------------


def _tree_rss(root: int) -> int:
    """Sum of RSS over ``root`` and its descendants, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may hold spaces: fields resume after the last ')'
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except OSError:
            continue
    return total


def _parse_gnu_time(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key == "Maximum resident set size (kbytes)":
            out["max_rss_bytes"] = int(value) * 1024
        elif key == "Percent of CPU this job got":
            out["cpu_percent"] = float(value.rstrip("%"))
    return out


def git_commit() -> str:
    """The checkout's short HEAD ("+ uncommitted changes" when tracked files differ from
    it), or "unknown" outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes" if dirty else "")


def baseline_src(commit: str) -> Path:
    """The ``src`` folder of ``commit``, extracted once with ``git archive`` into
    ``_work/baselines/<commit>/``: the baseline a benchmark runs beside the working tree."""
    folder = WORK / "baselines" / commit
    if not (folder / "src").exists():
        folder.mkdir(parents=True, exist_ok=True)
        tar = folder / "src.tar"
        with tar.open("wb") as fh:
            subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, stdout=fh, check=True)
        with tarfile.open(tar) as t:
            t.extractall(folder, filter="data")
    return folder / "src"


def git_stamp() -> tuple[str, str]:
    """(commit, UTC minute) for the heading of a recorded result."""
    return git_commit(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def record(title: str, body: str) -> None:
    """Append a result to RESULTS.md: ``### title (commit ..., UTC minute)``, then
    ``body``; every benchmark's ``--record`` goes through here."""
    commit, when = git_stamp()
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(f"\n\n### {title} (commit {commit}, {when})\n\n{body.strip()}\n")
    print(f"appended to {RESULTS}")


def world_index(resolution: float) -> Any:
    """The world's ``center`` index at ``resolution``: inputs prepared into
    ``_work/lookup-<res>arcsec/`` and built into ``_work/lookup-out-<res>arcsec/`` once,
    then shared by the read-side benchmarks (lookup, sample, encode, open)."""
    sys.path.insert(0, str(ROOT / "src"))
    import tileindex
    from tileindex.pipeline import build
    from tileindex.prepare import prepare_inputs

    inputs = WORK / f"lookup-{resolution:g}arcsec"
    if not (inputs / "grid.tif").exists():
        prepare_inputs(inputs, resolution)
    out = WORK / f"lookup-out-{resolution:g}arcsec"
    if not out.exists():
        build(
            inputs / "iso.parquet",
            inputs / "countries.parquet",
            inputs / "grid.tif",
            out,
            workers=1,
        )
    return tileindex.open(out)


def measure(
    cmd: list[str], label: str, log: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd`` as a child process (with ``env`` when given) and measure it from
    outside."""
    log.parent.mkdir(parents=True, exist_ok=True)
    timefile = log.with_suffix(".time")
    full = [GNU_TIME, "-v", "-o", str(timefile), *cmd] if Path(GNU_TIME).exists() else cmd
    load1 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _tree_rss(proc.pid))
                stop.wait(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res: dict[str, Any] = {
        "label": label,
        "cmd": " ".join(_rel(c) for c in cmd),
        "rc": rc,
        "wall_s": wall,
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "tree_rss_peak_bytes": peak[0],
        "load1_before": load1,
    }
    res["cpu_s"] = res["user_s"] + res["sys_s"]
    if timefile.exists():
        res.update(_parse_gnu_time(timefile))
    if rc != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{label} failed (exit {rc}):\n{res['cmd']}\n{tail}")
    return res


def _rel(s: str) -> str:
    return s.replace(str(ROOT) + "/", "")


def _json_tail(log: Path) -> dict[str, Any]:
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"no JSON line in {log}")


# -- the contenders ---------------------------------------------------------------------


def inputs(res: float) -> Path:
    folder = WORK / f"in{_res_name(res)}"
    if not (folder / "grid.tif").exists():
        subprocess.run(
            [TILEINDEX, "prepare", "--out", str(folder), "--resolution", str(res)],
            check=True,
            cwd=ROOT,
        )
    return folder


def _res_name(res: float) -> str:
    return f"{res:g}"


def _in_args(inp: Path) -> list[str]:
    return [
        "--iso",
        str(inp / "iso.parquet"),
        "--countries",
        str(inp / "countries.parquet"),
        "--raster",
        str(inp / "grid.tif"),
    ]


def ours_cmd(
    inp: Path, out: Path, predicate: str, workers: int, cache: Path | None = None
) -> list[str]:
    """A build; cold (``--no-cache``) unless a warm mask cache folder is given."""
    return [
        TILEINDEX,
        "build",
        *_in_args(inp),
        "--out",
        str(out),
        "-q",
        "--predicate",
        predicate,
        "--workers",
        str(workers),
        *(["--cache-dir", str(cache)] if cache else ["--no-cache"]),
        "--metrics-out",
        str(out / "metrics.prom"),
    ]


def floor_cmd(inp: Path, out: Path, mask_only: bool = False) -> list[str]:
    cmd = [PY, str(BENCH / "floor.py"), *_in_args(inp), "--out", str(out)]
    return [*cmd, "--mask-only"] if mask_only else cmd


def _report_file(out: Path, name: str) -> Path:
    (path,) = out.glob(f"reports/layer1/1B/state=S1/parameter_hash=*/{name}")
    return path


def ours_evidence(out: Path) -> dict[str, Any]:
    report = json.loads(_report_file(out, "s1_run_report.json").read_text())
    pat = report["pat"]
    return {
        "rows": report["rows_emitted"],
        "cells_scanned_total": pat["cells_scanned_total"],
        "report_wall_s": pat["wall_clock_seconds_total"],
        "report_cpu_s": pat["cpu_seconds_total"],
        "max_worker_rss_bytes": pat["max_worker_rss_bytes"],
        "main_rss_peak_bytes": pat.get("main_rss_peak_bytes"),
        "workers_used": pat["workers_used"],
        "data_bytes": sum(f.stat().st_size for f in (out / "data").rglob("*.parquet")),
        "cache_hits": json.loads((out / "metrics.prom.json").read_text()).get("cache_hits"),
        **phases(out),
    }


def phases(out: Path) -> dict[str, float]:
    """Worker seconds masking (S1_UNIT) and encoding (S1_SHARD_FLUSH), and the wall of
    the encoding phase (S1_MERGE), from the event log."""
    (log,) = out.glob("logs/layer1/1B/state=S1/parameter_hash=*/events.jsonl")
    res = {"mask_worker_s": 0.0, "encode_worker_s": 0.0, "encode_phase_s": 0.0, "units": 0}
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        kind = ev.get("event")
        if kind == "S1_UNIT":
            res["mask_worker_s"] += ev["seconds"]
            res["units"] += 1
        elif kind == "S1_SHARD_FLUSH":
            res["encode_worker_s"] += ev["seconds"]
        elif kind == "S1_MERGE":
            res["encode_phase_s"] += ev["seconds"]
    return res


def per_country_seconds(out: Path) -> dict[str, float]:
    """Worker seconds per country from the S1_UNIT events."""
    (log,) = out.glob("logs/layer1/1B/state=S1/parameter_hash=*/events.jsonl")
    secs: dict[str, float] = {}
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "S1_UNIT":
            secs[ev["country_iso"]] = secs.get(ev["country_iso"], 0.0) + ev["seconds"]
    return secs


def per_country_included(out: Path) -> dict[str, int]:
    path = _report_file(out, "country_summaries.jsonl")
    return {
        s["country_iso"]: s["cells_included"]
        for s in map(json.loads, path.read_text().splitlines())
    }


def _tile_index_dir(out: Path) -> Path:
    (path,) = out.glob("data/layer1/1B/tile_index/parameter_hash=*")
    return path


# -- sections ---------------------------------------------------------------------------


def wait_for_quiet(max_load: float, max_wait: float) -> dict[str, Any]:
    t0 = time.monotonic()
    load = os.getloadavg()
    while load[0] > max_load and time.monotonic() - t0 < max_wait:
        print(f"load {load[0]:.2f} > {max_load}: waiting 60 s", flush=True)
        time.sleep(60)
        load = os.getloadavg()
    return {
        "load_at_start": list(load),
        "waited_s": round(time.monotonic() - t0),
        "quiet": load[0] <= max_load,
    }


def main_runs(res: float, repeats: int) -> dict[str, Any]:
    """Sections A, B, C, E, alternating within each repeat."""
    inp = inputs(res)
    base = WORK / "runs" / _res_name(res)
    shutil.rmtree(base, ignore_errors=True)
    # the warm-cache row: fill a mask cache of our own once, untimed
    cache = WORK / "cache" / _res_name(res)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"[{_res_name(res)}″] filling the mask cache (untimed)", flush=True)
    subprocess.run(
        ours_cmd(inp, base / "warmup", "center", 2, cache),
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    shutil.rmtree(base / "warmup", ignore_errors=True)
    plan = [
        ("ours_center_w2", lambda o: ours_cmd(inp, o, "center", 2)),
        ("ours_center_w2_warm", lambda o: ours_cmd(inp, o, "center", 2, cache)),
        ("floor", lambda o: floor_cmd(inp, o)),
        ("ours_center_w1", lambda o: ours_cmd(inp, o, "center", 1)),
        ("floor_mask_only", lambda o: floor_cmd(inp, o, mask_only=True)),
        ("ours_any_overlap_w2", lambda o: ours_cmd(inp, o, "any_overlap", 2)),
    ]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in plan}
    for rep in range(repeats):
        order = plan if rep % 2 == 0 else plan[::-1]
        for label, make in order:
            out = base / label / f"r{rep}"
            print(f"[{_res_name(res)}″ rep {rep}] {label}", flush=True)
            m = measure(make(out), label, base / "logs" / f"{label}-r{rep}.log")
            if label.startswith("ours"):
                m.update(ours_evidence(out))
            else:
                m.update(_json_tail(base / "logs" / f"{label}-r{rep}.log"))
                if not label.endswith("mask_only"):
                    m["data_bytes"] = sum(f.stat().st_size for f in out.rglob("*.parquet"))
            runs[label].append(m)
            keep = rep == repeats - 1 and label in KEEP
            if not keep:  # keep reports and logs, drop the data
                shutil.rmtree(out / "data", ignore_errors=True)
                for name in ("tile_index", "tile_bounds"):
                    shutil.rmtree(out / name, ignore_errors=True)
    return {"resolution": res, "repeats": repeats, "runs": runs, "dir": str(base)}


def diff_floor(base: Path, repeats: int) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    import diff

    ours = _tile_index_dir(base / "ours_center_w2" / f"r{repeats - 1}")
    floor = base / "floor" / f"r{repeats - 1}" / "tile_index"
    t0 = time.perf_counter()
    res = diff.compare(ours, floor)
    files = diff.identical_files(ours, floor)
    bounds_files = diff.identical_files(
        ours.parent.parent / "tile_bounds" / ours.name, floor.parent / "tile_bounds"
    )
    total = {k: sum(r[k] for r in res.values()) for k in ("rows_a", "rows_b", "only_a", "only_b")}
    differing = sorted(
        ((k, v) for k, v in res.items() if v["sym_diff"]), key=lambda kv: -kv[1]["sym_diff"]
    )
    return {
        "seconds": time.perf_counter() - t0,
        "total": total,
        "countries_compared": len(res),
        "countries_differing": len(differing),
        "top": dict(differing[:15]),
        "named": {k: res[k] for k in DIFF_NAMED if k in res},
        "tile_index_files": files,
        "tile_bounds_files": bounds_files,
    }


def engines_runs(res: float, skip_slow: bool) -> dict[str, Any]:
    """Sections D, F, G."""
    inp = inputs(res)
    base = WORK / "runs" / _res_name(res) / "engines"
    lon, lat = SAMPLE_NW
    window = [PY, str(BENCH / "engines.py"), "window", "--inputs", str(inp)]
    jobs = [
        (
            "window_center_1024",
            [*window, "--lon", str(lon), "--lat", str(lat), "--size", "1024",
             "--engines", "kernel,shapely"],
        ),
        (
            "exactextract",
            [PY, str(BENCH / "engines.py"), "exactextract", "--inputs", str(inp),
             "--countries", EE_COUNTRIES],
        ),
        ("aligned", [PY, str(BENCH / "engines.py"), "aligned"]),
    ]  # fmt: skip
    if not skip_slow:
        jobs += [
            (
                "window_center_256",
                [*window, "--lon", str(lon), "--lat", str(lat), "--size", "256",
                 "--engines", "legacy,kernel,shapely"],
            ),
            (
                "window_any_overlap_256",
                [*window, "--lon", str(lon), "--lat", str(lat), "--size", "256",
                 "--engines", "legacy,kernel", "--predicate", "any_overlap"],
            ),
        ]  # fmt: skip
    out = {}
    for label, cmd in jobs:
        print(f"[{_res_name(res)}″] engines {label}", flush=True)
        log = base / f"{label}.log"
        m = measure(cmd, label, log)
        m["result"] = _json_tail(log)
        out[label] = m
    return out


def scaling_runs(resolutions: list[float], repeats: int) -> dict[str, Any]:
    out = {}
    for res in resolutions:
        inp = inputs(res)
        base = WORK / "runs" / f"scaling-{_res_name(res)}"
        shutil.rmtree(base, ignore_errors=True)
        runs = []
        for rep in range(repeats):
            o = base / f"r{rep}"
            print(f"[scaling {_res_name(res)}″ rep {rep}] ours_center_w2", flush=True)
            m = measure(ours_cmd(inp, o, "center", 2), "ours_center_w2", base / f"r{rep}.log")
            m.update(ours_evidence(o))
            runs.append(m)
            shutil.rmtree(o / "data", ignore_errors=True)
        out[_res_name(res)] = runs
    return out


def profile_run(res: float, which: str = "build") -> dict[str, Any]:
    """Section P: pyinstrument over one build (center, --workers 1) or the floor."""
    inp = inputs(res)
    base = WORK / "runs" / _res_name(res) / f"profile-{which}"
    shutil.rmtree(base, ignore_errors=True)
    session = base / f"{which}.pyisession"
    base.mkdir(parents=True)
    pyinstrument = str(Path(PY).parent / "pyinstrument")
    target = (
        ours_cmd(inp, base / "out", "center", 1)
        if which == "build"
        else floor_cmd(inp, base / "out")[1:]
    )  # pyinstrument runs the floor script itself
    cmd = [pyinstrument, "-r", "pyisession", "-o", str(session), *target]
    print(f"[{_res_name(res)}″] profile {which}", flush=True)
    m = measure(cmd, f"profile-{which}", base / "profile.log")
    html = base / f"{which}.html"
    subprocess.run(
        [pyinstrument, "--load", str(session), "-r", "html", "-o", str(html)], check=True
    )
    shutil.rmtree(base / "out", ignore_errors=True)
    m["hotspots"] = hotspots(session)
    m["session"] = _rel(str(session))
    m["html"] = _rel(str(html))
    return m


def hotspots(session_path: Path, top: int = 15) -> dict[str, Any]:
    from pyinstrument.session import Session

    session = Session.load(str(session_path))
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    self_t: dict[str, float] = {}
    incl_t: dict[str, float] = {}

    def name(f: Any) -> str:
        return f"{f.function} ({f.file_path_short}:{f.line_no})"

    def walk(f: Any, seen: frozenset[str]) -> None:
        if f.is_synthetic:
            return
        n = name(f)
        self_t[n] = self_t.get(n, 0.0) + f.total_self_time
        if n not in seen:  # recursion counts once
            incl_t[n] = incl_t.get(n, 0.0) + f.time
        for c in f.children:
            walk(c, seen | {n})

    if root is not None:
        walk(root, frozenset())

    def pct(d: dict[str, float], filt: Any = None, n: int = top) -> list[list[Any]]:
        items = [(k, v) for k, v in d.items() if filt is None or filt(k)]
        items.sort(key=lambda kv: -kv[1])
        return [[k, round(v, 3), round(100 * v / total, 1)] for k, v in items[:n]]

    return {
        "duration_s": session.duration,
        "samples": session.sample_count,
        "self": pct(self_t),
        "inclusive_tileindex": pct(incl_t, lambda k: "tileindex" in k, 25),
    }


# -- environment ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) * 1024
    import rasterio
    import shapely

    versions = {"python": platform.python_version()}
    pkgs = ("numpy", "pyarrow", "shapely", "rasterio", "pyproj", "exactextract", "pyinstrument")
    for pkg in pkgs:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["GEOS"] = shapely.geos_version_string
    versions["GDAL"] = rasterio.__gdal_version__
    try:
        rev = git_commit()
    except OSError:
        rev = "?"
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_bytes": mem,
        "kernel": platform.release(),
        "versions": versions,
        "git_head": rev,
    }


# -- report -----------------------------------------------------------------------------


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _mib(v: float) -> str:
    return f"{v / 2**20:.0f}"


def _table(w: Any, header: list[str], rows: list[list[Any]]) -> None:
    w("| " + " | ".join(header) + " |")
    w("|" + "---|" * len(header))
    for r in rows:
        w("| " + " | ".join(str(x) for x in r) + " |")
    w("")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    res = results["main"]["resolution"]
    runs = results["main"]["runs"]
    lines: list[str] = []
    w = lines.append
    w("# Benchmarks: tileindex build vs floor and other engines\n")
    w(
        "Generated by `python benchmarks/run.py "
        + " ".join(results["argv"])
        + "`; re-render with `--report-only`. The hand-written reading of the numbers is "
        "`benchmarks/observations.md`, appended at the end.\n"
    )
    w("## Machine and session\n")
    v = m["versions"]
    q = results["quiet"]
    loads = [r["load1_before"] for rs in runs.values() for r in rs]
    _table(
        w,
        ["", ""],
        [
            ["date (UTC)", f"{results['started']} .. {results['finished']}"],
            ["CPU", f"{m['cpu_model']}, nproc {m['nproc']} (affinity {m['affinity']})"],
            ["RAM", f"{m['ram_bytes'] / 2**30:.1f} GiB"],
            ["kernel / python", f"{m['kernel']} / {v['python']}"],
            [
                "libraries",
                f"numpy {v['numpy']}, pyarrow {v['pyarrow']}, shapely {v['shapely']} "
                f"(GEOS {v['GEOS']}), rasterio {v['rasterio']} (GDAL {v['GDAL']}), "
                f"pyproj {v['pyproj']}, exactextract {v['exactextract']}, "
                f"pyinstrument {v['pyinstrument']}",
            ],
            ["git HEAD", f"{m['git_head']} (plus the uncommitted work in the tree)"],
            [
                "load average at start",
                f"{', '.join(f'{x:.2f}' for x in q['load_at_start'])} (waited {q['waited_s']} s "
                f"for ≤ {results['max_load']}; "
                f"{'quiet' if q['quiet'] else 'NOT quiet: numbers are noisy'})",
            ],
            [
                "1-min load before each run (A–E)",
                f"min {min(loads):.2f}, median {statistics.median(loads):.2f}, "
                f"max {max(loads):.2f}",
            ],
        ],
    )
    w(
        "Measured from outside each process: wall = `perf_counter` around the child; CPU = "
        "user+sys of the child and all its descendants (`getrusage(RUSAGE_CHILDREN)` delta); "
        "max RSS = largest single process (GNU `time -v`); tree RSS = peak of the summed RSS "
        "of the process tree, sampled every 0.1 s (shared pages counted per process). "
        "Medians over the repeats; the runs of one repeat alternate (order reversed on odd "
        "repeats). Our builds run with `--no-cache` (every mask computed), except the row "
        "marked warm, which reads masks from a cache filled beforehand.\n"
    )

    o1, o2, oa = runs["ours_center_w1"], runs["ours_center_w2"], runs["ours_any_overlap_w2"]
    fl, fm = runs["floor"], runs["floor_mask_only"]

    def row(label: str, rs: list[dict[str, Any]], extra: str) -> list[Any]:
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        return [
            label,
            f"{med(rs, 'wall_s'):.1f} ({walls})",
            f"{med(rs, 'cpu_s'):.1f}",
            _mib(med(rs, "max_rss_bytes")),
            _mib(med(rs, "tree_rss_peak_bytes")),
            f"{rs[0].get('rows', 0):,}",
            extra,
        ]

    def ph(rs: list[dict[str, Any]]) -> str:
        return (
            (
                ""
                if rs[0].get("cache_hits") in (None, 0) or "warm" in rs[0]["label"]
                else f"{rs[0]['cache_hits']} cache hits! "
            )
            + f"masking {med(rs, 'mask_worker_s'):.1f} worker-s ({rs[0]['units']} units), "
            f"encoding {med(rs, 'encode_worker_s'):.1f} worker-s in a "
            f"{med(rs, 'encode_phase_s'):.1f} s phase; in-process wall "
            f"{med(rs, 'report_wall_s'):.1f} s"
        )

    w(
        f"## A–C, E: the world at {res:g}″ (Natural Earth 1:10m, "
        f"{results['main']['repeats']} repeats)\n"
    )
    _table(
        w,
        ["run", "wall s, median (each)", "CPU s", "max RSS MiB", "tree RSS MiB", "rows", "notes"],
        [
            row(
                "A tileindex center, --workers 1",
                o1,
                f"{o1[0]['cells_scanned_total']:,} cells scanned; {ph(o1)}",
            ),
            row(
                "A tileindex center, --workers 2",
                o2,
                f"{ph(o2)}; report: max worker RSS {_mib(med(o2, 'max_worker_rss_bytes'))} MiB",
            ),
            *(
                [
                    row(
                        "A' tileindex center, --workers 2, warm mask cache",
                        runs["ours_center_w2_warm"],
                        f"{runs['ours_center_w2_warm'][0].get('cache_hits')} cache hits; "
                        + ph(runs["ours_center_w2_warm"]),
                    )
                ]
                if "ours_center_w2_warm" in runs
                else []
            ),
            row("B tileindex any_overlap, --workers 2", oa, ph(oa)),
            row(
                "C floor (GDAL centre rule + same writer)",
                fl,
                f"{fl[0]['cells_scanned']:,} cells rasterised",
            ),
            row("E rasterize centre rule, mask only", fm, "no output"),
        ],
    )
    ratio = med(o2, "wall_s") / med(fl, "wall_s")
    pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(o2, fl, strict=True)]
    w(
        f"**ours(center, 2 workers) / floor = {ratio:.2f}** (target ≤ 0.80; per-repeat pairs "
        f"{', '.join(f'{p:.2f}' for p in pairs)}); ours(1 worker) / floor = "
        f"{med(o1, 'wall_s') / med(fl, 'wall_s'):.2f}; CPU ours(2 workers) / floor = "
        f"{med(o2, 'cpu_s') / med(fl, 'cpu_s'):.2f}; speed-up 1→2 workers "
        f"{med(o1, 'wall_s') / med(o2, 'wall_s'):.2f}x; any_overlap / center (2 workers) "
        f"{med(oa, 'wall_s') / med(o2, 'wall_s'):.2f}; writing share of the floor "
        f"{1 - med(fm, 'wall_s') / med(fl, 'wall_s'):.0%}.\n"
    )
    w(
        f"Output bytes (both datasets): ours {_mib(o2[0]['data_bytes'])} MiB, "
        f"floor {_mib(fl[0]['data_bytes'])} MiB.\n"
    )
    w("Commands:\n\n```sh")
    for label in runs:
        w(runs[label][0]["cmd"])
    w("```\n")

    d = results.get("diff")
    if d:
        t = d["total"]
        ti, tb = d["tile_index_files"], d["tile_bounds_files"]
        w("### Floor vs ours (center): which cells differ\n")
        w(
            f"Rows: ours {t['rows_a']:,}, floor {t['rows_b']:,}. Cells only in ours "
            f"{t['only_a']:,}, only in the floor {t['only_b']:,} (symmetric difference "
            f"{t['only_a'] + t['only_b']:,}, {d['countries_differing']} of "
            f"{d['countries_compared']} countries). Byte-identical part files: tile_index "
            f"{ti['byte_identical']}/{ti['files']}, tile_bounds "
            f"{tb['byte_identical']}/{tb['files']}. All differing countries with the most "
            "different cells, and a fixed list:\n"
        )
        shown = dict(d["top"])
        shown.update(d["named"])
        _table(
            w,
            ["country", "ours", "floor", "only ours", "only floor"],
            [
                [k, f"{r['rows_a']:,}", f"{r['rows_b']:,}", f"{r['only_a']:,}", f"{r['only_b']:,}"]
                for k, r in sorted(shown.items(), key=lambda kv: (-kv[1]["sym_diff"], kv[0]))
            ],
        )

    eng = results.get("engines", {})
    if "aligned" in eng:
        w(
            "Where GDAL's centre rule and the exact `center` rule can differ — borders "
            "through centroids — on an 8 x 8 unit grid (`benchmarks/engines.py aligned`):\n"
        )
        _table(
            w,
            ["polygon", "GDAL cells", "exact cells", "only GDAL", "only exact"],
            [
                [k, c["gdal"], c["exact"], c["only_gdal"], c["only_exact"]]
                for k, c in eng["aligned"]["result"]["cases"].items()
            ],
        )
    cells_c = o1[0]["cells_scanned_total"]
    cells_a = oa[0]["cells_scanned_total"]
    if eng:
        w(f"## D, G: per-cell engines on sample windows at {res:g}″, extrapolated\n")
        w(
            "Each engine masks the whole window once per country that meets it; rate = "
            "window cells x countries / engine seconds (in-process timing, inputs loaded "
            f"beforehand). World = the build's `cells_scanned_total` ({cells_c:,} for center, "
            f"{cells_a:,} for any_overlap) / rate, one core.\n"
        )
        rows = []
        for label in ("window_center_256", "window_any_overlap_256", "window_center_1024"):
            if label not in eng:
                continue
            r = eng[label]["result"]
            size = r["window"]["row_stop"] - r["window"]["row_start"]
            cells = cells_c if r["predicate"] == "center" else cells_a
            kr = r["engines"]["kernel"]["cells_per_second"]
            for name, e in r["engines"].items():
                rate = e["cells_per_second"]
                rows.append(
                    [
                        f"{size}x{size}",
                        r["predicate"],
                        ",".join(r["countries"]),
                        name,
                        f"{rate:,.0f}",
                        _dur(cells / rate),
                        "1" if name == "kernel" else f"{kr / rate:,.1f}x slower",
                    ]
                )
        _table(
            w,
            ["window", "predicate", "countries", "engine", "cells/s", "world (extrapolated)",
             "vs kernel, same window"],
            rows,
        )  # fmt: skip
        if "window_center_256" in eng:
            r = eng["window_center_256"]["result"]["engines"]
            inc = {k: {c: x["included"] for c, x in e["per_country"].items()} for k, e in r.items()}
            same = inc["legacy"] == inc["kernel"]
            sh = {c: inc["shapely"][c] - inc["kernel"][c] for c in inc["kernel"]}
            sh = {c: n for c, n in sh.items() if n}
            w(
                f"Legacy and kernel include the same cells counts per country: {same}. "
                f"shapely.contains_xy minus kernel, where they differ: {sh or 'nowhere'} "
                "(contains_xy excludes centroids on the outer boundary, which `center` "
                "includes).\n"
            )
        w("Commands:\n\n```sh")
        for e in eng.values():
            w(e["cmd"])
        w("```\n")

        if "exactextract" in eng:
            r = eng["exactextract"]["result"]
            secs = results.get("ours_any_seconds", {})
            inc_a = results.get("ours_any_included", {})
            w(f"## F: exactextract coverage > 0 vs our any_overlap, {res:g}″\n")
            w(
                "exactextract `count(default_value=1, coverage_weight=none)` (cells with coverage "
                "fraction > 0; mask only, no output), one feature per country (the union of its "
                "rows). Ours: the any_overlap build's worker seconds for that country (S1_UNIT "
                "events, masking only, no encoding) and its cell count.\n"
            )
            _table(
                w,
                ["country", "bbox cells", "exactextract s", "exactextract cells",
                 "ours any_overlap worker s", "ours cells", "exactextract − ours"],
                [
                    [c, f"{x['bbox_cells']:,}", f"{x['seconds']:.2f}",
                     f"{x['cells_coverage_gt0']:,}", f"{secs.get(c, float('nan')):.2f}",
                     f"{inc_a.get(c, 0):,}", f"{x['cells_coverage_gt0'] - inc_a.get(c, 0):+,}"]
                    for c, x in r["per_country"].items()
                ],
            )  # fmt: skip
            ours_s = sum(secs.get(c, 0.0) for c in r["per_country"])
            w(
                f"Total: exactextract {r['seconds']:.1f} s ({r['cells_per_second']:,.0f} bbox "
                f"cells/s), ours {ours_s:.1f} worker-s for the same countries. Extrapolated "
                f"world, one core: {_dur(cells_a / r['cells_per_second'])} (mask only, "
                "from the rate per bounding-box cell and the any_overlap build's "
                "`cells_scanned_total`).\n"
            )
            w(f"```sh\n{eng['exactextract']['cmd']}\n```\n")

    sc = results.get("scaling")
    if sc:
        w("## H: scaling with resolution (tileindex build, center, --workers 2)\n")
        allsc = dict(sc)
        allsc[f"{res:g}"] = o2
        rows = []
        for k in sorted(allsc, key=lambda s: -float(s)):
            rs = allsc[k]
            wall = med(rs, "wall_s")
            rows.append(
                [
                    f"{k}″",
                    len(rs),
                    f"{rs[0]['rows']:,}",
                    f"{rs[0]['cells_scanned_total']:,}",
                    f"{wall:.1f}",
                    f"{med(rs, 'cpu_s'):.1f}",
                    f"{wall / rs[0]['rows'] * 1e6:.3f}",
                    f"{wall / rs[0]['cells_scanned_total'] * 1e9:.1f}",
                    f"{med(rs, 'mask_worker_s'):.1f}" if "mask_worker_s" in rs[0] else "",
                    f"{med(rs, 'encode_worker_s'):.1f}" if "encode_worker_s" in rs[0] else "",
                    _mib(med(rs, "max_rss_bytes")),
                    _mib(med(rs, "tree_rss_peak_bytes")),
                ]
            )
        _table(
            w,
            ["resolution", "runs", "rows", "cells scanned", "wall s, median", "CPU s",
             "s per M rows", "s per G cells scanned", "masking worker-s", "encoding worker-s",
             "max RSS MiB", "tree RSS MiB"],
            rows,
        )  # fmt: skip

    p = results.get("profile")
    if p:
        h = p["hotspots"]
        w(f"## P: profile of one build ({res:g}″, center, --workers 1, pyinstrument)\n")
        w(
            f"`{p['cmd']}` — {h['duration_s']:.1f} s profiled ({h['samples']:,} samples; "
            f"{p['wall_s']:.1f} s wall with the profiler). Session: `{p['session']}`, "
            f"HTML: `{p['html']}`.\n"
        )
        w("Self time (time in the function itself, including the C code it calls):\n")
        _table(
            w, ["function", "self s", "% of wall"], [[f"`{k}`", s, pc] for k, s, pc in h["self"]]
        )
        w("Inclusive time of tileindex functions:\n")
        _table(
            w,
            ["function", "total s", "% of wall"],
            [[f"`{k}`", s, pc] for k, s, pc in h["inclusive_tileindex"]],
        )
    pf = results.get("profile_floor")
    if pf and p:
        hf = pf["hotspots"]
        w("### The floor, profiled the same way\n")
        w(
            f"`{pf['cmd']}` — {hf['duration_s']:.1f} s profiled. Self time, side by side with "
            "the build's for the same functions where both have them:\n"
        )
        ours_self = {k: v for k, v, _ in h["self"]}
        _table(
            w,
            ["function (floor)", "floor self s", "% of floor wall", "build self s"],
            [[f"`{k}`", s_, pc, ours_self.get(k, "")] for k, s_, pc in hf["self"]],
        )
    notes = BENCH / "observations.md"
    if notes.exists():  # the hand-written reading of the numbers, kept across re-renders
        w(notes.read_text().rstrip() + "\n")
    return "\n".join(lines) + "\n"


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- main -------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3, help="repeats of the fast runs")
    p.add_argument("--skip-slow", action="store_true", help="no 15″ scaling, no legacy engine")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument(
        "--scaling",
        default="150,60,15",
        help="other resolutions for section H (finer than 30″ run once, not with --skip-slow)",
    )
    p.add_argument("--max-load", type=float, default=1.5, help="wait for a quieter machine")
    p.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait at most")
    p.add_argument("--results", type=Path, default=WORK / "results.json")
    p.add_argument("--markdown", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--report-only", action="store_true", help="re-render the markdown only")
    p.add_argument("--only-profile", action="store_true", help="redo section P only")
    args = p.parse_args()
    if args.only_profile:  # re-profile into existing results
        results = json.loads(args.results.read_text())
        results["profile"] = profile_run(args.resolution)
        results["profile_floor"] = profile_run(args.resolution, "floor")
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        args.markdown.write_text(render(results))
        print(f"wrote {args.results} and {args.markdown}")
        return
    if args.report_only:
        results = json.loads(args.results.read_text())
        args.markdown.write_text(render(results))
        print(f"wrote {args.markdown}")
        return

    WORK.mkdir(parents=True, exist_ok=True)
    for r in {args.resolution, *(float(x) for x in args.scaling.split(",") if x.strip())}:
        inputs(r)
    results: dict[str, Any] = {
        "argv": sys.argv[1:],
        "machine": machine(),
        "max_load": args.max_load,
        "quiet": wait_for_quiet(args.max_load, args.max_wait),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }

    def save() -> None:
        results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        args.markdown.write_text(render(results))

    results["main"] = main_runs(args.resolution, args.repeats)
    save()
    base = Path(results["main"]["dir"])
    results["diff"] = diff_floor(base, args.repeats)
    any_out = base / "ours_any_overlap_w2" / f"r{args.repeats - 1}"
    results["ours_any_seconds"] = per_country_seconds(any_out)
    results["ours_any_included"] = per_country_included(any_out)
    save()
    results["engines"] = engines_runs(args.resolution, args.skip_slow)
    save()
    scaling = [float(x) for x in args.scaling.split(",") if x.strip()]
    fast = [r for r in scaling if r != args.resolution and r >= 30.0]
    slow = [r for r in scaling if r != args.resolution and r < 30.0]
    sc = scaling_runs(fast, args.repeats)
    if not args.skip_slow:
        sc.update(scaling_runs(slow, 1))
    results["scaling"] = sc
    save()
    if not args.no_profile:
        results["profile"] = profile_run(args.resolution)
        results["profile_floor"] = profile_run(args.resolution, "floor")
    save()
    # the kept outputs are big; the numbers are in results.json
    for label in KEEP:
        out = base / label / f"r{args.repeats - 1}"
        shutil.rmtree(out / "data", ignore_errors=True)
        for name in ("tile_index", "tile_bounds"):
            shutil.rmtree(out / name, ignore_errors=True)
    print(f"wrote {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
