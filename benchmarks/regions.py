"""Region-mode benchmark (docs/CONTRACT.md §10.1): how much of a build with many
regions goes to planning, summaries and evidence (the contract: under 10 % of the wall
time, growing at most linearly in the regions).

Two layers, each built with ``predicate=center`` and ``--workers 2`` on the WorldPop
grid at ``--resolution`` (30″ by default):

(a) a synthetic tiling of ``--regions`` regions (default 10,000) over ``--window``
    (default 40° x 40°, 0..40 E, 10..50 N), from ``tileindex.regions_data.prepare_tiling``;
(b) the real layer: Algeria's 1,538 communes (``tileindex prepare --regions dz-communes``).

    python benchmarks/regions.py                            # the full benchmark, 30″
    python benchmarks/regions.py --resolution 300           # a quick check
    python benchmarks/regions.py --regions 2500,10000       # growth with the regions
    python benchmarks/regions.py --prepare-only             # inputs only (no region mode needed)
    python benchmarks/regions.py --countries-check --resolution 300  # the phase clock on a
                                                            # country build (works today)
    python benchmarks/regions.py --record LABEL             # append a table to RESULTS.md

How the phases are measured. The build runs in this process (its workers are a spawn
pool); planning, summaries and evidence run in this parent process, so each is timed
by wrapping the functions the pipeline calls for it (``PHASES`` below: e.g.
``tileindex.pipeline.plan_countries``, ``_summary``, ``determinism_receipt``,
``pat_counters``, the report and summary writers and the event log's
``JsonLinesTelemetry`` methods). Only the outermost wrapped call on a thread is
counted, so nested phases are not counted twice; a wrapped name that the pipeline no
longer has is listed as missing, and ``--wrap MODULE:NAME=PHASE`` adds one. As a
cross-check independent of names, a telemetry observer stamps the build's callbacks:
the time before ``on_start`` (inputs, geometry, planning) and from the ``S1_MERGE``
event to ``on_finish`` (receipt, report, publish). Wall time is ``perf_counter``
around ``tileindex.build``; rows and peak worker RSS come from the run report.

Region mode is needed for (a) and (b); without it on this branch the script prepares
the inputs, says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import tileindex
from tileindex.prepare import COUNTRIES_FILE, GRID_FILE, ISO_FILE, prepare_inputs
from tileindex.regions_data import (
    DZ_COMMUNES,
    TILING_KEY_COLUMN,
    PrepareRegionsResult,
    prepare_regions,
    prepare_tiling,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import git_commit

HERE = Path(__file__).resolve().parent
DEFAULT_WINDOW = (0.0, 10.0, 40.0, 50.0)
# the phases whose share docs/CONTRACT.md §10.1 bounds; the others are reported beside them
BOUNDED = ("planning", "summaries", "evidence")
PHASES: dict[str, tuple[str, ...]] = {
    "inputs": ("tileindex.pipeline:read_inputs",),
    "geometry": (
        "tileindex.pipeline:country_geometry",
        "tileindex.pipeline:geometry_digest",
    ),
    "planning": (
        "tileindex.pipeline:plan_countries",
        "tileindex.pipeline:execution_order",
        "tileindex.pipeline:plan_parts",
        "tileindex.telemetry:PlanEvent.of",
        "tileindex.pipeline:_run_table",
    ),
    "summaries": (
        "tileindex.pipeline:_summary",
        "tileindex.pipeline:country_summary",
    ),
    "checks": ("tileindex.pipeline:check_runs",),
    "evidence": (
        "tileindex.pipeline:determinism_receipt",
        "tileindex.pipeline:pat_counters",
        "tileindex.pipeline:RunReport",
        "tileindex.pipeline:write_json_atomic",
        "tileindex.pipeline:write_jsonl_atomic",
        "tileindex.pipeline:RunMetrics.of_run",
        "tileindex.telemetry:UnitEvent.of",
        "tileindex.telemetry:JsonLinesTelemetry.on_start",
        "tileindex.telemetry:JsonLinesTelemetry.on_unit_done",
        "tileindex.telemetry:JsonLinesTelemetry.on_country_done",
        "tileindex.telemetry:JsonLinesTelemetry.on_event",
        "tileindex.telemetry:JsonLinesTelemetry.on_finish",
    ),
}


# -- the phase clock ------------------------------------------------------------------


class PhaseClock:
    """Seconds spent in wrapped functions, per phase; the outermost call on a thread
    counts, calls nested in it do not."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.by_name: dict[str, float] = defaultdict(float)
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, phase: str, fn: Callable[..., Any], name: str = "") -> Callable[..., Any]:
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(clock._local, "depth", 0)
            clock._local.depth = depth + 1
            t0 = time.perf_counter() if depth == 0 else 0.0
            try:
                return fn(*args, **kwargs)
            finally:
                clock._local.depth = depth
                if depth == 0:
                    elapsed = time.perf_counter() - t0
                    with clock._lock:
                        clock.seconds[phase] += elapsed
                        clock.calls[phase] += 1
                        clock.by_name[name or phase] += elapsed

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


@contextlib.contextmanager
def phases_wrapped(clock: PhaseClock, phases: Mapping[str, tuple[str, ...]]) -> Iterator[list[str]]:
    """Install the wrappers for the duration; yields the names that were not found."""
    undo: list[tuple[Any, str, Any]] = []
    missing: list[str] = []
    try:
        for phase, names in phases.items():
            for spec in names:
                module_name, _, qual = spec.partition(":")
                owner: Any = importlib.import_module(module_name)
                *path, attr = qual.split(".")
                for part in path:
                    owner = getattr(owner, part, None)
                if owner is None or not hasattr(owner, attr):
                    missing.append(spec)
                    continue
                raw = inspect.getattr_static(owner, attr)
                if isinstance(raw, classmethod):
                    new: Any = classmethod(clock.wrap(phase, raw.__func__, spec))
                elif isinstance(raw, staticmethod):
                    new = staticmethod(clock.wrap(phase, raw.__func__, spec))
                elif callable(raw):
                    new = clock.wrap(phase, raw, spec)
                else:
                    missing.append(spec)
                    continue
                undo.append((owner, attr, raw))
                setattr(owner, attr, new)
        yield missing
    finally:
        for owner, attr, raw in reversed(undo):
            setattr(owner, attr, raw)


class Timeline:
    """A telemetry observer that stamps the build's callbacks (``perf_counter``)."""

    def __init__(self) -> None:
        self.stamps: dict[str, float] = {}
        self.units = 0

    def _stamp(self, name: str, last: bool = False) -> None:
        if last or name not in self.stamps:
            self.stamps[name] = time.perf_counter()

    def on_start(self, total_countries: int, total_units: int) -> None:
        self.units = total_units
        self._stamp("on_start")

    def on_unit_done(self, *args: Any) -> None:
        self._stamp("first_unit")
        self._stamp("last_unit", last=True)

    def on_country_done(self, summary: Any) -> None:
        self._stamp("last_summary", last=True)

    def on_event(self, event: Mapping[str, Any]) -> None:
        self._stamp(str(event.get("event")))

    def on_finish(self, report: Any) -> None:
        self._stamp("on_finish")


# -- runs -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    keys: Path | None
    layer: Path
    raster: Path
    key_column: str
    regions: int


@dataclasses.dataclass
class Measured:
    case: str
    regions: int
    rows: int
    with_rows: int
    wall: float
    phases: dict[str, float]
    calls: dict[str, int]
    by_name: dict[str, float]
    before_start: float
    after_merge: float
    units: int
    worker_rss_mib: float
    missing: list[str]


def region_mode_available() -> bool:
    return "key_column" in inspect.signature(tileindex.build).parameters


def run_case(
    case: Case, out: Path, args: argparse.Namespace, extra: Mapping[str, tuple[str, ...]]
) -> Measured:
    shutil.rmtree(out, ignore_errors=True)
    clock = PhaseClock()
    timeline = Timeline()
    phases = {k: PHASES.get(k, ()) + extra.get(k, ()) for k in PHASES.keys() | extra.keys()}
    kwargs: dict[str, Any] = {
        "predicate": args.predicate,
        "workers": args.workers,
        "cache_dir": None,
        "telemetry": timeline,
    }
    if case.key_column != "country_iso":
        kwargs["key_column"] = case.key_column
    with phases_wrapped(clock, phases) as missing:
        t0 = time.perf_counter()
        result = tileindex.build(case.keys, case.layer, case.raster, out, **kwargs)
        wall = time.perf_counter() - t0
    stamps = timeline.stamps
    pat = result.report.pat
    pat = pat if isinstance(pat, Mapping) else dataclasses.asdict(pat)
    return Measured(
        case=case.name,
        regions=case.regions,
        rows=result.rows_emitted,
        with_rows=int(
            getattr(result, "countries_with_rows", getattr(result, "regions_with_rows", 0))
        ),
        wall=wall,
        phases=dict(clock.seconds),
        calls=dict(clock.calls),
        by_name=dict(clock.by_name),
        before_start=stamps.get("on_start", t0) - t0,
        after_merge=stamps.get("on_finish", t0) - stamps.get("S1_MERGE", t0),
        units=timeline.units,
        worker_rss_mib=float(pat.get("max_worker_rss_bytes", 0)) / 2**20,
        missing=sorted(missing),
    )


def median_run(runs: list[Measured]) -> Measured:
    """The run of median wall time (an odd count picks a real run)."""
    ordered = sorted(runs, key=lambda m: m.wall)
    return ordered[(len(ordered) - 1) // 2]


def bounded_share(m: Measured) -> float:
    return sum(m.phases.get(p, 0.0) for p in BOUNDED) / m.wall


# -- inputs ---------------------------------------------------------------------------


def prepared_tiling(work: Path, n: int, window: tuple[float, ...], res: float) -> Case:
    folder = work / "inputs" / f"tiling-{n}-{res:g}"
    result: PrepareRegionsResult = prepare_tiling(
        folder,
        n,
        tuple(window),
        res,
        overwrite=True,  # type: ignore[arg-type]
    )
    return Case(
        f"tiling {n:,}",
        result.keys_path,
        result.regions_path,
        result.grid_path,
        TILING_KEY_COLUMN,
        n,
    )


def prepared_real(work: Path, res: float) -> Case:
    result = prepare_regions(
        work / "inputs" / f"dz-communes-{res:g}", DZ_COMMUNES.name, res, overwrite=True
    )
    n = result.report["counts"]["distinct_keys"]
    return Case(
        "dz-communes", result.keys_path, result.regions_path, result.grid_path, result.key_column, n
    )


def prepared_countries(work: Path, res: float) -> Case:
    folder = work / "inputs" / f"countries-{res:g}"
    if not (folder / "prepare_report.json").exists():
        prepare_inputs(folder, res, overwrite=True)
    import pyarrow.parquet as pq

    n = pq.read_metadata(folder / ISO_FILE).num_rows
    return Case(
        "countries",
        folder / ISO_FILE,
        folder / COUNTRIES_FILE,
        folder / GRID_FILE,
        "country_iso",
        n,
    )


# -- output ---------------------------------------------------------------------------


HEADER = (
    "| layer | regions | rows | regions with rows | units | wall s (each) | planning s | "
    "summaries s | evidence s | **share** | inputs s | geometry s | checks s | "
    "all timed, share | before on_start s | S1_MERGE→finish s | worker RSS MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_line(m: Measured, walls: list[float]) -> str:
    p = m.phases
    each = ", ".join(f"{w:.2f}" for w in walls)
    return (
        f"| {m.case} | {m.regions:,} | {m.rows:,} | {m.with_rows:,} | {m.units:,} | "
        f"{m.wall:.2f} ({each}) | {p.get('planning', 0):.3f} | {p.get('summaries', 0):.3f} | "
        f"{p.get('evidence', 0):.3f} | **{100 * bounded_share(m):.1f} %** | "
        f"{p.get('inputs', 0):.3f} | {p.get('geometry', 0):.3f} | {p.get('checks', 0):.3f} | "
        f"{100 * sum(p.values()) / m.wall:.1f} % | {m.before_start:.3f} | "
        f"{m.after_merge:.3f} | {m.worker_rss_mib:.0f} |"
    )


def parse_window(text: str) -> tuple[float, float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("--window takes W,S,E,N")
    return parts[0], parts[1], parts[2], parts[3]


def parse_wrap(items: list[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = defaultdict(tuple)
    for item in items:
        spec, _, phase = item.partition("=")
        if ":" not in spec or not phase:
            raise SystemExit(f"--wrap {item!r}: expected MODULE:NAME=PHASE")
        out[phase] += (spec,)
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=HERE / "_work" / "regions")
    p.add_argument("--resolution", type=float, default=30.0, help="arc-seconds (default 30)")
    p.add_argument("--regions", default="10000", help="tiling sizes, comma-separated")
    p.add_argument("--window", type=parse_window, default=DEFAULT_WINDOW, help="W,S,E,N")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--predicate", default="center")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--only", choices=("tiling", "real"), default=None)
    p.add_argument("--prepare-only", action="store_true", help="prepare the inputs and stop")
    p.add_argument(
        "--countries-check",
        action="store_true",
        help="measure a country build instead (checks the phase clock today)",
    )
    p.add_argument("--wrap", action="append", default=[], metavar="MODULE:NAME=PHASE")
    p.add_argument("--record", metavar="LABEL", help="append the table to RESULTS.md")
    args = p.parse_args(argv)
    cli_args = sys.argv[1:] if argv is None else argv
    extra = parse_wrap(args.wrap)
    work: Path = args.out
    res = float(args.resolution)

    t0 = time.perf_counter()
    cases: list[Case] = []
    if args.countries_check:
        cases.append(prepared_countries(work, res))
    else:
        if args.only in (None, "tiling"):
            cases += [
                prepared_tiling(work, int(n), args.window, res) for n in args.regions.split(",")
            ]
        if args.only in (None, "real"):
            cases.append(prepared_real(work, res))
    print(
        f"prepared {len(cases)} input sets under {work / 'inputs'} "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    for case in cases:
        print(f"  {case.name}: {case.layer} ({case.regions:,} keys, column {case.key_column})")
    if args.prepare_only:
        return 0
    if not args.countries_check and not region_mode_available():
        print(
            "region mode (tileindex.build(..., key_column=...)) is not on this branch yet: "
            "inputs are prepared; run this script again once it lands",
            file=sys.stderr,
        )
        return 2

    lines = []
    results = []
    for case in cases:
        runs = []
        for r in range(args.repeats):
            m = run_case(
                case,
                work / "runs" / case.name.replace(" ", "-").replace(",", "") / f"r{r}",
                args,
                extra,
            )
            runs.append(m)
            print(
                f"{case.name} run {r}: wall {m.wall:.2f} s, rows {m.rows:,}, "
                f"bounded share {100 * bounded_share(m):.1f} %",
                flush=True,
            )
        med = median_run(runs)
        top = sorted(med.by_name.items(), key=lambda kv: -kv[1])[:6]
        print("  slowest timed functions: " + ", ".join(f"{k} {v:.3f} s" for k, v in top))
        if med.missing:
            print(f"  not found (not timed): {', '.join(med.missing)}", flush=True)
        lines.append(table_line(med, [m.wall for m in runs]))
        results.append({**dataclasses.asdict(med), "walls": [m.wall for m in runs]})

    window = (
        ""
        if args.countries_check
        else (f"tiling window {','.join(f'{v:g}' for v in args.window)}, ")
    )
    title = (
        f"{args.predicate}, --workers {args.workers}, {res:g}″ WorldPop grid, {window}"
        f"median of {args.repeats}"
    )
    print(f"\n{title}\n\n{HEADER}\n" + "\n".join(lines))
    (work / "regions.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.record:
        head = (
            f"\n### Regions: {args.record} (commit {git_commit()}, "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)\n\n"
            f"Generated by `python benchmarks/regions.py {' '.join(cli_args)}`: "
            f"{title}; {platform.processor() or platform.machine()}, nproc {os.cpu_count()}. "
            "share = (planning + summaries + evidence) / wall (docs/CONTRACT.md §10.1: "
            "< 10 %); phases timed by wrapping the pipeline's functions in the parent "
            "process (see the script's docstring).\n\n"
        )
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as fh:
            fh.write(head + HEADER + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
