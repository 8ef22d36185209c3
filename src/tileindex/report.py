"""Run evidence: country summaries, PAT counters, the run report, resource metering.

The rules that turn what a run measured into the evidence live here, once: a
country's summary from its units' runs and counts, the PAT counters from the
coordinator's and the workers' measurements (docs/CONTRACT.md §8)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tileindex.contract import CONTRACT_VERSION, DEFAULT_KEY_COLUMN
from tileindex.fsio import write_atomic
from tileindex.grid import MaskCounts

# the sealed inputs' names in ``ingress_versions`` and in the parameter hash
INGRESS_KEYS = ("iso", "countries", "raster")


def ingress_versions(*, iso: str, countries: str, raster: str) -> dict[str, str]:
    """The sealed inputs' digests under their :data:`INGRESS_KEYS` names."""
    return dict(zip(INGRESS_KEYS, (iso, countries, raster), strict=True))


def rfc3339_utc(when: datetime | None = None) -> str:
    """``2026-01-31T12:34:56.789Z``: RFC 3339, UTC, millisecond precision."""
    when = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(obj: Any) -> Any:
    to_json = getattr(obj, "to_json", None)
    return to_json() if callable(to_json) else obj


# -- value types ----------------------------------------------------------------------


@dataclass(frozen=True)
class CountrySummary:
    """What one country's visit saw (docs/CONTRACT.md §8); tile ids are None when nothing is
    included. In region mode ``country_iso`` holds the region's key, and the summary line
    names that field ``key_column`` (docs/CONTRACT.md §10.1), like the datasets' first
    column."""

    country_iso: str
    cells_visited: int
    cells_included: int
    cells_excluded_outside: int
    cells_excluded_hole: int
    tile_id_min: int | None
    tile_id_max: int | None
    notes: tuple[str, ...] = ()
    key_column: str = DEFAULT_KEY_COLUMN
    # docs/CONTRACT.md §10.3: the sum of the country's coverage fractions, with coverage only
    coverage_area_fraction_sum: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["key_column"]
        out["notes"] = list(self.notes)
        if self.key_column != DEFAULT_KEY_COLUMN:  # the key field first, under its name
            out = {self.key_column: out.pop("country_iso"), **out}
        if self.coverage_area_fraction_sum is None:  # a build without coverage: as before
            del out["coverage_area_fraction_sum"]
        return out

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], key_column: str = DEFAULT_KEY_COLUMN
    ) -> CountrySummary:
        return cls(
            country_iso=doc[key_column],
            cells_visited=doc["cells_visited"],
            cells_included=doc["cells_included"],
            cells_excluded_outside=doc["cells_excluded_outside"],
            cells_excluded_hole=doc["cells_excluded_hole"],
            tile_id_min=doc["tile_id_min"],
            tile_id_max=doc["tile_id_max"],
            notes=tuple(doc.get("notes", ())),
            key_column=key_column,
            coverage_area_fraction_sum=doc.get("coverage_area_fraction_sum"),
        )


SUM_SCALE_BITS = 1200  # every finite float64 times 2^1200 is an integer


def scaled_total(values: npt.ArrayLike) -> int:
    """``sum(values) * 2^SUM_SCALE_BITS`` exactly, as a Python int (finite float64s).

    Every float64 is an integer multiple of 2^-1074, so the sum is computed exactly in
    integers (per binary exponent, the 53-bit mantissas split into halves so the NumPy
    sums cannot overflow). Totals of parts add up to the total of the whole: a sum can
    be split across units, workers and processes and still be exact.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    total = 0
    if v.size:
        if not np.isfinite(v).all():
            raise ValueError("exact_sum needs finite values")
        mant, exp = np.frexp(v)
        m = np.rint(np.ldexp(mant, 53)).astype(np.int64)  # exact: |m| < 2^53
        order = np.argsort(exp, kind="stable")
        exp, m = exp[order], m[order]
        starts = np.flatnonzero(np.r_[True, exp[1:] != exp[:-1]])
        hi = np.add.reduceat(m >> 26, starts)
        lo = np.add.reduceat(m & ((1 << 26) - 1), starts)
        for e, h, low in zip(exp[starts].tolist(), hi.tolist(), lo.tolist(), strict=True):
            # value = m * 2^(e - 53); scaled by 2^1200 so every term is an integer
            total += ((h << 26) + low) << (e - 53 + SUM_SCALE_BITS)
    return total


def rounded_total(total: int, ones: int = 0) -> float:
    """``ones + total / 2^SUM_SCALE_BITS`` (a :func:`scaled_total`), rounded once."""
    return ((int(ones) << SUM_SCALE_BITS) + total) / (1 << SUM_SCALE_BITS)


def exact_sum(values: npt.ArrayLike, ones: int = 0) -> float:
    """``ones + sum(values)`` (finite float64s), correctly rounded from the exact sum
    (:func:`scaled_total`). The result does not depend on the order or grouping of the
    values: a country's sum is bit-identical for any worker count, chunk size or unit
    split (docs/CONTRACT.md §10.3).
    """
    return rounded_total(scaled_total(values), ones)


def country_summary(
    code: str,
    tile_ids: Sequence[tuple[int, int]],
    counts: MaskCounts,
    *,
    has_geometry: bool,
    has_units: bool,
    key_column: str = DEFAULT_KEY_COLUMN,
    coverage_sum: float | None = None,
) -> CountrySummary:
    """The summary of ``code`` from the (lowest, highest) tile id of each of its units
    that holds cells, in unit order (so the first is the country's lowest tile id and
    the last its highest), and their summed counts."""
    notes: tuple[str, ...] = ()
    if not has_geometry:
        notes = ("no polygons for this code in the country layer",)
    elif not has_units:
        notes = ("the country's geometry lies outside the grid",)
    return CountrySummary(
        country_iso=code,
        cells_visited=counts.cells_visited,
        cells_included=counts.cells_included,
        cells_excluded_outside=counts.cells_excluded_outside,
        cells_excluded_hole=counts.cells_excluded_hole,
        tile_id_min=tile_ids[0][0] if tile_ids else None,
        tile_id_max=tile_ids[-1][1] if tile_ids else None,
        notes=notes,
        key_column=key_column,
        coverage_area_fraction_sum=coverage_sum,
    )


@dataclass(frozen=True)
class PatCounters:
    """The docs/CONTRACT.md §8 performance counters, plus ``main_rss_peak_bytes`` (the coordinating
    process's own peak, so a validator can bound the whole run's RSS as
    main + workers_used * max_worker_rss_bytes)."""

    wall_clock_seconds_total: float
    cpu_seconds_total: float
    countries_processed: int
    cells_scanned_total: int
    cells_included_total: int
    bytes_read_raster_total: int
    bytes_read_vectors_total: int
    max_worker_rss_bytes: int
    open_files_peak: int
    workers_used: int
    chunk_size: int
    main_rss_peak_bytes: int = 0
    # bytes a worker held on disk at once (the part files it was writing) and the
    # whole staging area (every part, before the rename) -- docs/CONTRACT.md §9's temp disk
    temp_disk_worker_peak_bytes: int = 0
    staging_bytes_total: int = 0
    # of which the units' runs, spilled by the workers and read back by the encode tasks
    spill_bytes_total: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PatCounters:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})


@dataclass(frozen=True)
class RunReport:
    """The run report (docs/CONTRACT.md §8). ``ingress_versions`` maps ``iso``/``countries``/
    ``raster`` to input digests; ``determinism_receipt`` is
    ``{"partition_path", "sha256_hex"}``; ``outputs`` maps dataset keys to paths."""

    parameter_hash: str
    predicate: str
    ingress_versions: Mapping[str, str]
    grid_dims: Mapping[str, int]
    countries_total: int
    rows_emitted: int
    determinism_receipt: Mapping[str, str]
    pat: PatCounters
    engine: str
    started_at: str
    finished_at: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    grid_transform: tuple[float, ...] = ()
    contract_version: str = CONTRACT_VERSION
    key_column: str = DEFAULT_KEY_COLUMN  # docs/CONTRACT.md §10.1
    # docs/CONTRACT.md §10.3: the receipt of tile_coverage, with coverage only
    coverage_receipt: Mapping[str, str] | None = None
    # docs/CONTRACT.md §10.4: {"path", "sha256_hex"} of the region geometry kept for lookups
    region_geometry: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if sorted(self.ingress_versions) != sorted(INGRESS_KEYS):
            raise ValueError(
                f"ingress_versions needs exactly the keys {', '.join(INGRESS_KEYS)}, "
                f"got {sorted(self.ingress_versions)}"
            )
        if sorted(self.grid_dims) != ["ncols", "nrows"]:
            raise ValueError(f"grid_dims needs nrows and ncols, got {sorted(self.grid_dims)}")
        if sorted(self.determinism_receipt) != ["partition_path", "sha256_hex"]:
            raise ValueError(
                "determinism_receipt needs partition_path and sha256_hex, got "
                f"{sorted(self.determinism_receipt)}"
            )

    def to_json(self) -> dict[str, Any]:
        out = self._core_json()
        if self.coverage_receipt is not None:  # a build without coverage: as before
            out["coverage_receipt"] = {
                "partition_path": self.coverage_receipt["partition_path"],
                "sha256_hex": self.coverage_receipt["sha256_hex"],
            }
        return out

    def _core_json(self) -> dict[str, Any]:
        return {
            "parameter_hash": self.parameter_hash,
            "predicate": self.predicate,
            "ingress_versions": {k: self.ingress_versions[k] for k in INGRESS_KEYS},
            "grid_dims": {"nrows": self.grid_dims["nrows"], "ncols": self.grid_dims["ncols"]},
            "countries_total": self.countries_total,
            "rows_emitted": self.rows_emitted,
            "determinism_receipt": {
                "partition_path": self.determinism_receipt["partition_path"],
                "sha256_hex": self.determinism_receipt["sha256_hex"],
            },
            "pat": self.pat.to_json(),
            "engine": self.engine,
            "contract_version": self.contract_version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outputs": dict(self.outputs),
            "grid_transform": list(self.grid_transform),
            "key_column": self.key_column,
            **(
                {"region_geometry": dict(self.region_geometry)}
                if self.region_geometry is not None
                else {}
            ),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunReport:
        return cls(
            parameter_hash=doc["parameter_hash"],
            predicate=doc["predicate"],
            ingress_versions=dict(doc["ingress_versions"]),
            grid_dims=dict(doc["grid_dims"]),
            countries_total=doc["countries_total"],
            rows_emitted=doc["rows_emitted"],
            determinism_receipt=dict(doc["determinism_receipt"]),
            pat=PatCounters.from_json(doc["pat"]),
            engine=doc["engine"],
            started_at=doc["started_at"],
            finished_at=doc["finished_at"],
            outputs=dict(doc.get("outputs", {})),
            grid_transform=tuple(doc.get("grid_transform", ())),
            contract_version=doc.get("contract_version", CONTRACT_VERSION),
            key_column=doc.get("key_column", DEFAULT_KEY_COLUMN),
            coverage_receipt=(
                dict(doc["coverage_receipt"]) if doc.get("coverage_receipt") is not None else None
            ),
            region_geometry=(
                dict(doc["region_geometry"]) if doc.get("region_geometry") is not None else None
            ),
        )


# -- atomic JSON files ----------------------------------------------------------------


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` (or ``obj.to_json()``) as pretty JSON; readers never see a partial file."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    write_atomic(Path(path), text.encode("utf-8"))


def write_jsonl_atomic(path: Path, objs: Iterable[Any]) -> None:
    """Write one compact JSON object per line, atomically."""
    lines = [json.dumps(_jsonable(o), separators=(",", ":"), allow_nan=False) for o in objs]
    write_atomic(Path(path), "".join(line + "\n" for line in lines).encode("utf-8"))


# -- measuring resources --------------------------------------------------------------

# ru_maxrss is in KiB on Linux and in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


def peak_rss_bytes() -> int:
    """Peak resident set of this process: since the last :func:`reset_peak_rss` where
    /proc has it (Linux: VmHWM), else the lifetime peak (getrusage)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * _MAXRSS_UNIT


def reset_peak_rss() -> None:
    """Restart the peak at the current resident set (Linux ``clear_refs`` 5), so that a
    build run inside a long-lived process (a notebook, a service, a test session)
    reports its own peak, not the process's history. A no-op where unsupported."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def rss_now_bytes() -> int | None:
    """Current resident set from /proc (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def open_files_now() -> int | None:
    """Open file descriptors of this process (None where neither /proc nor /dev/fd exists)."""
    for fd_dir in ("/proc/self/fd", "/dev/fd"):
        try:
            # listing opens one descriptor of its own, which appears in the list
            return len(os.listdir(fd_dir)) - 1
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class ResourceUsage:
    """One reading of a ResourceMeter (all measured, none estimated)."""

    wall_seconds: float
    cpu_seconds: float
    rss_peak_bytes: int
    rss_now_bytes: int | None
    open_files_now: int | None
    open_files_peak: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ResourceMeter:
    """Measures this process from the OS: wall clock and CPU seconds since creation,
    peak RSS (since creation where Linux can reset the peak, else the lifetime peak) and
    open descriptors (peak over the ``sample()`` calls). Workers measure themselves
    (:class:`WorkerStats`)."""

    def __init__(self) -> None:
        reset_peak_rss()
        self._t0 = time.perf_counter()
        self._cpu0 = os.times()
        self._open_peak: int | None = None
        self.sample()

    def sample(self) -> ResourceUsage:
        now = open_files_now()
        if now is not None:
            self._open_peak = now if self._open_peak is None else max(self._open_peak, now)
        t = os.times()
        return ResourceUsage(
            wall_seconds=time.perf_counter() - self._t0,
            cpu_seconds=(t.user - self._cpu0.user) + (t.system - self._cpu0.system),
            rss_peak_bytes=peak_rss_bytes(),
            rss_now_bytes=rss_now_bytes(),
            open_files_now=now,
            open_files_peak=self._open_peak,
        )

    @property
    def open_files_peak(self) -> int | None:
        return self._open_peak


@dataclass(frozen=True)
class WorkerStats:
    """What a worker task measured about itself and the process that ran it."""

    worker: str
    seconds: float
    cpu_seconds: float
    rss_peak_bytes: int
    open_files: int


def pat_counters(
    usage: ResourceUsage,
    tasks: Sequence[WorkerStats],
    part_bytes: Sequence[int],
    *,
    workers_used: int,
    chunk_size: int,
    summaries: Sequence[CountrySummary],
    rows_emitted: int,
    bytes_read_raster: int,
    bytes_read_vectors: int,
    spill_bytes: Sequence[tuple[str, int]] = (),
) -> PatCounters:
    """The PAT counters of a run from the coordinator's ``usage``, every worker task's
    stats (masking and encoding), the bytes of each part (both datasets) and the
    (worker, bytes) of every unit's spilled runs (kept until the parts are written)."""
    by_worker = Counter[str]()
    for worker, size in spill_bytes:
        by_worker[worker] += size
    # with one worker the tasks ran in this process, whose CPU time ``usage`` holds
    worker_cpu = sum(t.cpu_seconds for t in tasks) if workers_used > 1 else 0.0
    return PatCounters(
        wall_clock_seconds_total=usage.wall_seconds,
        cpu_seconds_total=usage.cpu_seconds + worker_cpu,
        countries_processed=len(summaries),
        cells_scanned_total=sum(s.cells_visited for s in summaries),
        cells_included_total=rows_emitted,
        bytes_read_raster_total=bytes_read_raster,
        bytes_read_vectors_total=bytes_read_vectors,
        max_worker_rss_bytes=max((t.rss_peak_bytes for t in tasks), default=0),
        open_files_peak=max([usage.open_files_peak or 0] + [t.open_files for t in tasks]),
        workers_used=workers_used,
        chunk_size=chunk_size,
        main_rss_peak_bytes=usage.rss_peak_bytes,
        # a worker holds its units' spilled runs and the part it is writing at once
        temp_disk_worker_peak_bytes=max(part_bytes, default=0) + max(by_worker.values(), default=0),
        staging_bytes_total=sum(part_bytes) + sum(by_worker.values()),
        spill_bytes_total=sum(by_worker.values()),
    )


__all__ = [
    "INGRESS_KEYS",
    "CountrySummary",
    "PatCounters",
    "ResourceMeter",
    "ResourceUsage",
    "RunReport",
    "WorkerStats",
    "country_summary",
    "exact_sum",
    "ingress_versions",
    "open_files_now",
    "pat_counters",
    "peak_rss_bytes",
    "rfc3339_utc",
    "rounded_total",
    "rss_now_bytes",
    "scaled_total",
    "write_json_atomic",
    "write_jsonl_atomic",
]
