"""Inclusion, country by country: the recount (or, with ``--full``, the legacy engine)
against the partition's rows by count and SHA-256 of the tile ids, and on a difference
the first cells that differ."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from tileindex.geometry import country_geometry
from tileindex.validate.axes import Axes, U64Array
from tileindex.validate.files import BATCH_ROWS
from tileindex.validate.findings import E008, EXAMPLES, Checks, describe_cell
from tileindex.validate.keys import CountryRows
from tileindex.validate.recount import center_ids, overlap_ids, within_ids
from tileindex.validate.samples import legacy_ids
from tileindex.validate.shape import EMPTY_SHAPE, Shape

METHODS = {
    "center": "row runs + shapely intersects_xy per centroid near the boundary (per-part "
    "shells closed, holes open)",
    "any_overlap": "row runs + vertex-in-cell proof, shapely contains_xy, float64 "
    "segment/open-cell test near the boundary (GEOS relate for contacts below float "
    "resolution)",
    "within": "row runs + vertex-in-cell refutation, shapely contains_xy of the midpoint, "
    "float64 segment/open-cell test near the boundary (GEOS covers for contacts below "
    "float resolution), every piece of a cell split at ±180",
    "full": "legacy engine, every cell of every country's window",
}


def geometry_and_recount(
    axes: Axes,
    iso_codes: Sequence[str],
    rows: Mapping[str, list[BaseGeometry]],
    predicate: str | None,
) -> tuple[dict[str, Shape], dict[str, tuple[int, str]], float]:
    """Every country's shape and, given a predicate, its recount as (count, sha256 of
    the tile ids); and the seconds taken. Reads only its arguments, so it can run in a
    thread beside the row stream (GEOS releases the GIL)."""
    t0 = time.perf_counter()
    shapes = {code: Shape(country_geometry(code, geoms)) for code, geoms in rows.items()}
    counted: dict[str, tuple[int, str]] = {}
    if predicate is not None:
        for code in iso_codes:
            shape = shapes.get(code, EMPTY_SHAPE)
            counted[code] = digest(expected_ids(axes, shape, predicate, "recount"))
    return shapes, counted, time.perf_counter() - t0


def expected_ids(axes: Axes, shape: Shape, predicate: str, how: str) -> Iterator[U64Array]:
    """The tile ids ``shape`` should have, ascending in blocks: by the recount, or by the
    legacy engine when ``how`` is "full"."""
    if how == "full":
        return legacy_ids(axes, shape, predicate)
    if predicate == "center":
        return center_ids(axes, shape)
    if predicate == "within":
        return within_ids(axes, shape)
    return overlap_ids(axes, shape)


def compare(
    c: Checks,
    axes: Axes,
    iso_codes: Sequence[str],
    rows: Mapping[str, CountryRows],
    index_files: Sequence[Path],
    shapes: Mapping[str, Shape],
    predicate: str,
    how: str,
    counted: Mapping[str, tuple[int, str]],
    key_column: str = "country_iso",
) -> dict[str, Any]:
    """Every country's (count, sha256 of tile ids) against the partition's rows; on a
    difference, the first differing cells of the first ``EXAMPLES`` countries that
    differ (each needs a scan of the partition, so not one for each of 10,000 regions).
    Returns the stats of the comparison."""
    ncols = axes.grid.ncols
    name = "recount" if how == "recount" else "full legacy recount"
    c.ran(name, E008)
    mismatched = []
    for code in iso_codes:
        count, sha = counted[code]
        got = rows.get(code, CountryRows())
        if (count, sha) == (got.count, got.sha.hexdigest()):
            continue
        mismatched.append(code)
        c.fail(
            name,
            E008,
            f"country {code}: the {how} finds {count} cells under {predicate}, the partition "
            f"has {got.count} (sha256 of tile ids {sha[:12]} vs {got.sha.hexdigest()[:12]})",
            code,
        )
        if len(mismatched) > EXAMPLES:
            continue
        shape = shapes.get(code, EMPTY_SHAPE)
        missing, extra = _first_differences(
            expected_ids(axes, shape, predicate, how),
            _partition_ids(index_files, code, key_column),
            EXAMPLES,
        )
        for tid in missing:
            c.fail(
                f"{name} cells",
                E008,
                f"country {code}: {describe_cell(ncols, tid)} should be included ({how})",
                code,
                tid,
            )
        for tid in extra:
            c.fail(
                f"{name} cells",
                E008,
                f"country {code}: {describe_cell(ncols, tid)} should be excluded ({how})",
                code,
                tid,
            )
    return {
        "method": METHODS["full" if how == "full" else predicate],
        "countries": len(iso_codes),
        "mismatched": mismatched,
    }


def _partition_ids(files: Sequence[Path], code: str, key_column: str) -> Iterator[U64Array]:
    """The partition's tile ids of ``code``, ascending in blocks."""
    import pyarrow.dataset as ds  # only a failed comparison needs it

    dataset = ds.dataset([str(p) for p in files], format="parquet")
    scanner = dataset.scanner(
        columns=["tile_id"], filter=ds.field(key_column) == code, batch_size=BATCH_ROWS
    )
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield np.sort(batch.column(0).to_numpy(zero_copy_only=False).astype(np.uint64))


def digest(blocks: Iterator[U64Array]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for ids in blocks:
        n += int(ids.size)
        h.update(np.ascontiguousarray(ids, dtype="<u8").data)
    return n, h.hexdigest()


def _first_differences(
    expected: Iterator[U64Array], actual: Iterator[U64Array], limit: int
) -> tuple[list[int], list[int]]:
    """Up to ``limit`` ids only in ``expected`` (missing) and only in ``actual`` (extra)
    of two ascending streams of blocks, holding one block of each at a time."""
    missing: list[int] = []
    extra: list[int] = []
    streams = [expected, actual]
    bufs = [np.empty(0, np.uint64), np.empty(0, np.uint64)]
    done = [False, False]
    while len(missing) < limit or len(extra) < limit:
        for i in (0, 1):
            while not done[i] and bufs[i].size == 0:
                block = next(streams[i], None)
                done[i] = block is None
                if block is not None:
                    bufs[i] = block
        if bufs[0].size == 0 and bufs[1].size == 0:
            break
        # ids up to the smaller last id of the unfinished streams are complete in both
        lasts = [int(bufs[i][-1]) for i in (0, 1) if not done[i]]
        n = [bufs[i].size for i in (0, 1)]
        if lasts:
            n = [int(np.searchsorted(bufs[i], np.uint64(min(lasts)), "right")) for i in (0, 1)]
        a, b = bufs[0][: n[0]], bufs[1][: n[1]]
        missing.extend(np.setdiff1d(a, b, assume_unique=True)[: limit - len(missing)].tolist())
        extra.extend(np.setdiff1d(b, a, assume_unique=True)[: limit - len(extra)].tolist())
        bufs = [bufs[0][n[0] :], bufs[1][n[1] :]]
    return missing, extra
