"""The ``tile_coverage`` partition against ``tile_index`` and the geometry, by methods of
the validator's own (docs/CONTRACT.md §10.3).

* layout and schema: numbered part files named and cut into row groups as tile_index's;
* keys: the same (key, tile_id) rows in the same order, streamed in lockstep;
* ranges: ``0 < coverage_fraction <= 1`` on every row;
* receipt: the recomputed SHA-256 of the partition against the report's
  ``coverage_receipt``;
* summaries: each country's ``coverage_area_fraction_sum`` against the exact sum of its
  rows, accumulated here with Shewchuk's error-free partials (not the build's integer
  method), rounded once: the two are equal to the last bit;
* sampled cells: per country, a seeded draw of cells below 1.0 and of cells reading 1.0
  next to a run's end or a boundary cell. Each is re-derived with GEOS: the fraction as
  ``sum(area(piece ∩ G)) / area(cell)`` (shapely ``intersection``, within 1e-9) and
  ``within`` as ``covers(G, piece)`` for every piece; ``== 1.0`` must hold iff within.

Memory: O(batch) for the stream plus the samples and a few partials per country.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import shapely

from tileindex.contract import determinism_receipt, tile_coverage_schema
from tileindex.layout import COVERAGE_DATASET
from tileindex.validate import files
from tileindex.validate.evidence import Report
from tileindex.validate.findings import E003, E008, E010, Checks, describe_cell
from tileindex.validate.shape import Shape
from tileindex.validate.target import Target

# a re-derived fraction may differ from the published one by the contract's 1e-9 plus
# GEOS's own rounding of the clipped vertices (~1e-12 of a cell at 30")
TOLERANCE = 1e-9
_KEY_COLUMNS = ("country_iso", "tile_id")
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a seeded, stable draw


@dataclass
class _Country:
    """What the stream keeps per country: the exact-sum partials, the count of 1.0s and
    the drawn samples (tile ids and values, per class)."""

    ones: int = 0
    below: int = 0
    partials: list[float] = field(default_factory=list)
    samples: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, values: np.ndarray) -> None:
        """Shewchuk's msum: ``partials`` stays an exact, non-overlapping expansion."""
        partials = self.partials
        for x in values.tolist():
            i = 0
            for y in partials:
                if abs(x) < abs(y):
                    x, y = y, x
                hi = x + y
                lo = y - (hi - x)
                if lo:
                    partials[i] = lo
                    i += 1
                x = hi
            partials[i:] = [x]

    def total(self) -> float:
        return math.fsum([*self.partials, float(self.ones)])

    def draw(self, kind: str, tid: np.ndarray, val: np.ndarray, seed: int, k: int) -> None:
        h = (tid ^ np.uint64(seed & 0xFFFFFFFF)) * _HASH
        old = self.samples.get(kind)
        if old is not None:
            tid, val, h = (np.concatenate([o, n]) for o, n in zip(old, (tid, val, h), strict=True))
        keep = np.argsort(h, kind="stable")[:k]
        self.samples[kind] = (tid[keep], val[keep], h[keep])


def wanted(target: Target, report: Report) -> bool:
    """Whether the build published tile_coverage: its receipt is in the report or its
    partition exists."""
    if report.doc is not None and "coverage_receipt" in report.doc:
        return True
    return COVERAGE_DATASET in target.paths.templates and target.path(COVERAGE_DATASET).is_dir()


def check(
    c: Checks,
    target: Target,
    report: Report,
    index_files: list[Path],
    shapes: Mapping[str, Shape],
    samples: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Every tile_coverage check (module doc); returns stats for the validation result."""
    stats: dict[str, Any] = {}
    c.ran("tile_coverage evidence", E010)
    if COVERAGE_DATASET not in target.paths.templates:
        c.fail(
            "tile_coverage evidence",
            E010,
            "the report records a coverage_receipt but the dataset dictionary has no "
            "tile_coverage path; pass the --dictionary the build used",
        )
        return stats
    folder = target.path(COVERAGE_DATASET)
    cov_files = files.check_layout(c, folder, COVERAGE_DATASET)
    schema = tile_coverage_schema(target.key_column)
    readable = bool(cov_files) and files.check_schemas(c, cov_files, schema, COVERAGE_DATASET)
    _check_receipt(c, target, report, folder)
    _check_same_layout(c, index_files, cov_files)
    if not readable or not index_files:
        c.warn(
            "tile_coverage row checks skipped: the partition cannot be read as the contract says"
        )
        return stats
    countries = _stream(c, target, index_files, cov_files, samples, seed)
    _check_summaries(c, target, countries)
    checked, worst = _check_samples(c, target, shapes, countries)
    stats.update(
        {
            "tile_coverage": str(folder),
            "coverage_rows_below_one": sum(x.below for x in countries.values()),
            "coverage_cells_rederived": checked,
            "coverage_largest_difference": worst,
        }
    )
    return stats


def _check_receipt(c: Checks, target: Target, report: Report, folder: Path) -> None:
    c.ran("coverage receipt", E010)
    if not folder.is_dir():
        return
    relative = target.paths.relative(COVERAGE_DATASET, target.phash)
    receipt = determinism_receipt(folder, relative)
    recorded = report.doc.get("coverage_receipt") if report.doc is not None else None
    if not isinstance(recorded, dict):
        c.fail(
            "coverage receipt",
            E010,
            "a tile_coverage partition is published but the run report has no coverage_receipt",
        )
        return
    if recorded.get("sha256_hex") != receipt["sha256_hex"]:
        c.fail(
            "coverage receipt",
            E010,
            f"tile_coverage bytes hash to {receipt['sha256_hex']}, the report recorded "
            f"{recorded.get('sha256_hex')!r}: the partition is not what the run published",
        )
    if recorded.get("partition_path") != relative:
        c.fail(
            "coverage receipt",
            E010,
            f"coverage_receipt partition_path {recorded.get('partition_path')!r} is not "
            f"{relative!r}",
        )


def _check_same_layout(c: Checks, index_files: list[Path], cov_files: list[Path]) -> None:
    """The same part files, each with the same row groups, as tile_index (§10.3)."""
    c.ran("tile_coverage layout as tile_index", E003)
    if [p.name for p in index_files] != [p.name for p in cov_files]:
        c.fail(
            "tile_coverage layout as tile_index",
            E003,
            f"tile_coverage has part files {[p.name for p in cov_files][:5]}, tile_index "
            f"{[p.name for p in index_files][:5]}",
        )
        return
    for a, b in zip(index_files, cov_files, strict=True):
        try:
            ma, mb = pq.ParquetFile(a).metadata, pq.ParquetFile(b).metadata
        except Exception:  # an unreadable file is check_schemas' finding
            continue
        ga = [ma.row_group(i).num_rows for i in range(ma.num_row_groups)]
        gb = [mb.row_group(i).num_rows for i in range(mb.num_row_groups)]
        if ga != gb:
            c.fail(
                "tile_coverage layout as tile_index",
                E003,
                f"{b.name}: row groups of {gb[:4]} rows, tile_index's {a.name} has {ga[:4]}",
            )


def _stream(
    c: Checks,
    target: Target,
    index_files: list[Path],
    cov_files: list[Path],
    samples: int,
    seed: int,
) -> dict[str, _Country]:
    """Keys in lockstep with tile_index, ranges, sums and the draw, batch by batch."""
    for name, code in (
        ("tile_coverage keys as tile_index", E003),
        ("coverage_fraction in (0, 1]", E008),
    ):
        c.ran(name, code)
    schema = tile_coverage_schema(target.key_column)
    key_schema = schema.remove(2)
    ia = files.Cursor(files.batches(index_files, key_schema))
    ca = files.Cursor(files.batches(cov_files, schema))
    countries: dict[str, _Country] = {}
    ncols = target.grid.ncols
    rows_index = rows_cov = 0
    while True:
        na, nb = ia.available(), ca.available()
        if na == 0 or nb == 0:
            rows_index += na
            rows_cov += nb
            while ia.available():
                rows_index += ia.take(ia.available()).num_rows
            while ca.available():
                rows_cov += ca.take(ca.available()).num_rows
            break
        n = min(na, nb)
        keys, cov = ia.take(n), ca.take(n)
        files.check_nulls(c, cov, COVERAGE_DATASET)
        code_i = keys.column(0).cast("string").to_numpy(zero_copy_only=False)
        code_c = cov.column(0).cast("string").to_numpy(zero_copy_only=False)
        tid = files.to_numpy(keys.column(1), 0).astype(np.uint64, copy=False)
        tid_c = files.to_numpy(cov.column(1), 0).astype(np.uint64, copy=False)
        f = files.to_numpy(cov.column(2), np.nan).astype(np.float64, copy=False)
        bad = np.flatnonzero((code_i != code_c) | (tid != tid_c))
        if bad.size:
            i = int(bad[0])
            c.fail(
                "tile_coverage keys as tile_index",
                E003,
                f"tile_coverage row ({code_c[i]}, {tid_c[i]}) where tile_index has "
                f"({code_i[i]}, {tid[i]})",
                str(code_i[i]),
                int(tid[i]),
                count=int(bad.size),
            )
        out = np.flatnonzero(~((f > 0.0) & (f <= 1.0)))
        if out.size:
            i = int(out[0])
            c.fail(
                "coverage_fraction in (0, 1]",
                E008,
                f"{code_c[i]} {describe_cell(ncols, int(tid_c[i]))}: coverage_fraction "
                f"{f[i]!r} is not in (0, 1]",
                str(code_c[i]),
                int(tid_c[i]),
                count=int(out.size),
            )
        ok = (f > 0.0) & (f <= 1.0)
        starts = np.flatnonzero(np.r_[True, code_c[1:] != code_c[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], n], strict=True):
            country = countries.setdefault(str(code_c[lo]), _Country())
            _collect(country, tid_c[lo:hi], f[lo:hi], ok[lo:hi], samples, seed)
    if rows_index != rows_cov:
        c.fail(
            "tile_coverage keys as tile_index",
            E003,
            f"tile_coverage has {rows_cov} more row(s) than tile_index"
            if rows_cov
            else f"tile_index has {rows_index} row(s) that tile_coverage lacks",
        )
    return countries


def _collect(
    country: _Country, tid: np.ndarray, f: np.ndarray, ok: np.ndarray, k: int, seed: int
) -> None:
    tid, f = tid[ok], f[ok]
    one = f == 1.0
    country.ones += int(one.sum())
    country.below += int((~one).sum())
    country.add(f[~one])
    if k <= 0 or tid.size == 0:
        return
    country.draw("below_one", tid[~one], f[~one], seed, k)
    # cells reading 1.0 beside a run's end or a cell below 1: where a wrong 1.0 would be
    step = np.diff(tid.astype(np.int64))
    prev_edge = np.r_[True, (step != 1) | ~one[:-1]]
    next_edge = np.r_[(step != 1) | ~one[1:], True]
    edge = one & (prev_edge | next_edge)
    country.draw("one", tid[edge], f[edge], seed, k)


def _check_summaries(c: Checks, target: Target, countries: Mapping[str, _Country]) -> None:
    c.ran("summary coverage_area_fraction_sum", E008)
    path = target.path("country_summaries")
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return  # evidence.check_summaries reports an unreadable file
    for doc in lines:
        if not isinstance(doc, dict) or "country_iso" not in doc:
            continue
        code = doc["country_iso"]
        recorded = doc.get("coverage_area_fraction_sum")
        expected = countries[code].total() if code in countries else 0.0
        if not isinstance(recorded, (int, float)) or isinstance(recorded, bool):
            c.fail(
                "summary coverage_area_fraction_sum",
                E008,
                f"summary of {code}: coverage_area_fraction_sum {recorded!r} is not a number",
                code,
            )
        elif float(recorded) != expected:
            c.fail(
                "summary coverage_area_fraction_sum",
                E008,
                f"summary of {code}: coverage_area_fraction_sum {recorded!r} but the exact "
                f"sum of its rows' fractions is {expected!r}",
                code,
            )


def _pieces(target: Target, col: int) -> list[tuple[float, float]]:
    """(west, east) of the cell's pieces at their wrapped positions (§3), from the raw
    edges ``c + a*col`` and ``c + a*(col+1)``."""
    g = target.grid
    x0, x1 = g.c + g.a * col, g.c + g.a * (col + 1.0)
    out = []
    for lo, hi, shift in ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0)):
        p0, p1 = max(x0, lo), min(x1, hi)
        if p0 < p1:
            out.append((p0 + shift, p1 + shift))
    return out


def _check_samples(
    c: Checks, target: Target, shapes: Mapping[str, Shape], countries: Mapping[str, _Country]
) -> tuple[int, float]:
    """Re-derive the drawn cells' fractions and ``within`` with GEOS (module doc)."""
    for name in ("coverage_fraction re-derived", "coverage 1.0 iff within"):
        c.ran(name, E008)
    g = target.grid
    checked, worst = 0, 0.0
    for code in sorted(countries):
        shape = shapes.get(code)
        if shape is None or shape.empty:
            continue
        for tids, vals, _ in countries[code].samples.values():
            for tid, value in zip(tids.tolist(), vals.tolist(), strict=True):
                row, col = divmod(int(tid), g.ncols)
                south, north = g.f + g.e * (row + 1.0), g.f + g.e * row
                x0, x1 = g.c + g.a * col, g.c + g.a * (col + 1.0)
                boxes = [shapely.box(w, south, e, north) for w, e in _pieces(target, col)]
                area = sum(shapely.intersection(shape.geom, b).area for b in boxes)
                exact = area / ((x1 - x0) * (north - south))
                within = bool(boxes) and all(shape.geom.covers(b) for b in boxes)
                checked += 1
                worst = max(worst, abs(exact - value))
                if abs(exact - value) > TOLERANCE:
                    c.fail(
                        "coverage_fraction re-derived",
                        E008,
                        f"{code} {describe_cell(g.ncols, tid)}: coverage_fraction {value!r}, "
                        f"GEOS intersection gives {exact!r}",
                        code,
                        tid,
                    )
                if (value == 1.0) != within:
                    c.fail(
                        "coverage 1.0 iff within",
                        E008,
                        f"{code} {describe_cell(g.ncols, tid)}: coverage_fraction {value!r} "
                        f"but the cell is {'' if within else 'not '}within the country",
                        code,
                        tid,
                    )
    return checked, worst
