"""Regenerate the golden files of tests/test_golden.py (see tests/data/README.md).

Prepares the real inputs (pycountry, Natural Earth 1:10m admin-0, the WorldPop grid
coarsened to 150″) in a temporary folder, builds the whole world with the fast engine
for both predicates, and records per golden country the row count, a digest of the
sorted tile ids and the country summary. Before anything is written every golden
country is checked cell by cell against the slow per-cell engine
(``tileindex.legacy``): all windows of the small countries, sampled 32 x 32 chunks
of the large ones. A disagreement is printed with its smallest reproduction and
nothing is written.

    .venv/bin/python tests/golden/regenerate.py           # check, then write
    .venv/bin/python tests/golden/regenerate.py --check   # exit 1 if the files would change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from tileindex import legacy
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Window
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.pipeline import BuildResult, build
from tileindex.prepare import COUNTRIES_FILE, GRID_FILE, ISO_FILE, PrepareResult, prepare_inputs

GOLDEN_DIR = Path(__file__).resolve().parent
FORMAT = "tileindex-golden/1"
RESOLUTION_ARCSEC = 150.0
PREDICATES = ("center", "any_overlap")
REGENERATE = ".venv/bin/python tests/golden/regenerate.py"

# The hard cases: dateline (RU FJ KI NZ), holes and enclaves (ZA/LS, IT/SM/VA, and
# FR/ES: Llívia, a Spanish exclave smaller than a cell, is a hole of France),
# neighbours (BE/NL), codes taken from ISO_A2_EH (FR NO TW), and plain large countries.
COUNTRIES = (
    "BE", "BR", "ES", "FJ", "FR", "IN", "IS", "IT", "KI", "LS",
    "NL", "NO", "NZ", "RU", "SM", "TW", "US", "VA", "ZA",
)  # fmt: skip
# Checked against the legacy engine on every cell of every window the build visits.
FULL_CHECK = frozenset({"SM", "VA", "LS", "IS", "FJ", "BE", "NL", "TW", "KI", "IT"})
SUMMARY_FIELDS = (
    "cells_visited",
    "cells_included",
    "cells_excluded_outside",
    "cells_excluded_hole",
    "tile_id_min",
    "tile_id_max",
)
VALUE_FIELDS = ("rows", "tile_ids_sha256", *SUMMARY_FIELDS)

SAMPLE_SIZE = 32  # cells per side of a sampled chunk
SAMPLE_MIXED = 24  # chunks per large country holding both included and excluded cells
FULL_CHUNK = 256  # chunk side for the full checks (any size gives the same cells)


def golden_path(predicate: str, directory: Path = GOLDEN_DIR) -> Path:
    return directory / f"world150_{predicate}.json"


def tile_ids_sha256(tile_ids: np.ndarray) -> str:
    """SHA-256 of the sorted tile ids as uint64 little-endian bytes."""
    ids = np.sort(np.asarray(tile_ids, dtype=np.uint64)).astype("<u8")
    return hashlib.sha256(ids.tobytes()).hexdigest()


def country_values(tile_ids: np.ndarray, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The golden values of one country: its rows in ``tile_index`` and its summary."""
    values: dict[str, Any] = {
        "rows": int(tile_ids.size),
        "tile_ids_sha256": tile_ids_sha256(tile_ids),
    }
    values.update({f: summary[f] for f in SUMMARY_FIELDS})
    return values


@dataclass(frozen=True)
class WorldOutputs:
    """What a golden build published, reduced to what the golden files compare."""

    predicate: str
    tile_ids: dict[str, np.ndarray]  # per requested code, as stored (sorted)
    summaries: dict[str, dict[str, Any]]  # every code of the ISO list
    report: dict[str, Any]  # the run report


def read_outputs(result: BuildResult, codes: Iterable[str]) -> WorldOutputs:
    """Read the published ``tile_index``, summaries and run report of a build."""
    partition = result.paths["tile_index"]
    files = sorted(p for p in partition.iterdir())
    table = pa.concat_tables(pq.read_table(f, columns=["country_iso", "tile_id"]) for f in files)
    iso = table["country_iso"]
    tid = table["tile_id"]
    tile_ids = {
        code: pc.filter(tid, pc.equal(iso, code)).to_numpy().astype(np.uint64) for code in codes
    }
    lines = result.paths["country_summaries"].read_text(encoding="utf-8").splitlines()
    summaries = {s["country_iso"]: s for s in map(json.loads, lines)}
    report = json.loads(result.paths["run_report"].read_text(encoding="utf-8"))
    return WorldOutputs(report["predicate"], tile_ids, summaries, report)


def input_facts(prepared: PrepareResult) -> dict[str, Any]:
    """Digests of the three prepared inputs and where they came from."""
    rep = prepared.report
    src = rep["countries_source"]
    return {
        "digests": {
            name: rep["files"][name]["sha256"] for name in (ISO_FILE, COUNTRIES_FILE, GRID_FILE)
        },
        "pycountry": rep["iso_source"]["package_version"],
        "natural_earth_package": f"{src['package']} {src['package_version']}",
        "natural_earth_version": src["natural_earth_version"],
        "natural_earth_zip_sha256": src["zip_sha256"],
        "natural_earth_layer": src["layer"],
    }


def golden_document(
    outputs: WorldOutputs, prepared: PrepareResult, legacy_check: Mapping[str, Any]
) -> dict[str, Any]:
    grid = prepared.report["grid"]
    summaries = outputs.summaries
    return {
        "format": FORMAT,
        "predicate": outputs.predicate,
        "engine": "fast",
        "regenerate": REGENERATE,
        "grid": {
            "resolution_arcsec": grid["resolution_arcsec"],
            "ncols": grid["width"],
            "nrows": grid["height"],
            "transform": grid["transform"],
        },
        "inputs": input_facts(prepared),
        "world": {
            "countries_total": outputs.report["countries_total"],
            "countries_with_rows": sum(1 for s in summaries.values() if s["cells_included"]),
            "rows_emitted": outputs.report["rows_emitted"],
        },
        "countries": {
            code: country_values(outputs.tile_ids[code], summaries[code]) for code in COUNTRIES
        },
        "legacy_cross_check": dict(legacy_check),
    }


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# -- the independent check ---------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    code: str
    predicate: str
    what: str

    def __str__(self) -> str:
        return f"{self.code} {self.predicate}: {self.what}"


def _windows(grid: Grid, geom: CountryGeometry) -> list[Window]:
    # the windows the build visits (pipeline._windows): one per column run of the parts
    return grid.windows_for_boxes(shapely.bounds(np.asarray(geom.parts, dtype=object)))


def _cell_of(grid: Grid, lon: float, lat: float) -> tuple[int, int]:
    col = int(np.floor((lon - grid.c) / grid.a))
    row = int(np.floor((lat - grid.f) / grid.e))
    return row, col


def _chunk_at(windows: list[Window], row: int, col: int, size: int) -> Window | None:
    for w in windows:
        if w.row_start <= row < w.row_stop and w.col_start <= col < w.col_stop:
            r = w.row_start + (row - w.row_start) // size * size
            c = w.col_start + (col - w.col_start) // size * size
            return Window(r, min(r + size, w.row_stop), c, min(c + size, w.col_stop))
    return None


def _chunk_counts(grid: Grid, window: Window, tile_ids: np.ndarray, size: int) -> dict:
    """Included cells per ``size`` chunk of the window, keyed by the chunk's corner."""
    rows = (tile_ids // np.uint64(grid.ncols)).astype(np.int64)
    cols = (tile_ids % np.uint64(grid.ncols)).astype(np.int64)
    inside = (
        (rows >= window.row_start)
        & (rows < window.row_stop)
        & (cols >= window.col_start)
        & (cols < window.col_stop)
    )
    r = window.row_start + (rows[inside] - window.row_start) // size * size
    c = window.col_start + (cols[inside] - window.col_start) // size * size
    keys, counts = np.unique(np.stack([r, c], 1), axis=0, return_counts=True)
    return {(int(k[0]), int(k[1])): int(n) for k, n in zip(keys, counts, strict=True)}


def sample_chunks(
    grid: Grid, geom: CountryGeometry, tile_ids: np.ndarray, enclave_rings: Sequence[np.ndarray]
) -> list[Window]:
    """Deterministic 32 x 32 chunks of a large country worth checking.

    The build's output only chooses *where* to look; the verdict comes from the
    legacy engine. Taken: evenly spaced chunks that mix included and excluded cells
    (the boundary), one wholly included and one empty chunk, the chunks of the first
    and last tile id, chunks on the grid's first and last column (±180), and chunks
    along every enclave outline (a hole of any golden country: its host's and its
    owner's side) that lies in the country's windows.
    """
    size = SAMPLE_SIZE
    windows = _windows(grid, geom)
    chunks: list[Window] = []
    full: list[Window] = []
    mixed: list[Window] = []
    empty: list[Window] = []
    edge: list[Window] = []
    for w in windows:
        counts = _chunk_counts(grid, w, tile_ids, size)
        for ch in grid.chunks(w, size):
            n = counts.get((ch.row_start, ch.col_start), 0)
            (full if n == ch.size else mixed if n else empty).append(ch)
            if n and (ch.col_start == 0 or ch.col_stop == grid.ncols):
                edge.append(ch)
    if mixed:
        picks = np.linspace(0, len(mixed) - 1, min(SAMPLE_MIXED, len(mixed)))
        chunks += [mixed[i] for i in np.rint(picks).astype(int).tolist()]
    chunks += full[len(full) // 2 : len(full) // 2 + 1]
    chunks += empty[len(empty) // 2 : len(empty) // 2 + 1]
    for tid in (int(tile_ids.min()), int(tile_ids.max())) if tile_ids.size else ():
        ch = _chunk_at(windows, tid // grid.ncols, tid % grid.ncols, size)
        chunks += [ch] if ch else []
    chunks += edge[:: max(1, len(edge) // 4)][:4]
    for xy in enclave_rings:
        for lon, lat in xy[np.linspace(0, len(xy) - 1, 5).astype(int)[:-1]]:
            ch = _chunk_at(windows, *_cell_of(grid, float(lon), float(lat)), size)
            chunks += [ch] if ch else []
    return sorted(set(chunks), key=lambda w: (w.row_start, w.col_start))


def full_chunks(grid: Grid, geom: CountryGeometry) -> list[Window]:
    return [ch for w in _windows(grid, geom) for ch in grid.chunks(w, FULL_CHUNK)]


def _cells(grid: Grid, window: Window, tile_ids: np.ndarray) -> set[int]:
    rows = tile_ids // np.uint64(grid.ncols)
    cols = tile_ids % np.uint64(grid.ncols)
    keep = (
        (rows >= window.row_start)
        & (rows < window.row_stop)
        & (cols >= window.col_start)
        & (cols < window.col_stop)
    )
    return set(tile_ids[keep].tolist())


def _describe(grid: Grid, tids: Iterable[int]) -> str:
    out = []
    for tid in sorted(tids)[:5]:
        row, col = divmod(tid, grid.ncols)
        lon = float(grid.centroid_lon(col))
        lat = float(grid.centroid_lat(row))
        out.append(f"tile {tid} (row {row}, col {col}, centroid {lon:.6f} {lat:.6f})")
    return ", ".join(out)


def _single_cell(grid: Grid, tid: int) -> Window:
    """The 1 x 1 window of a disagreeing cell: the smallest reproduction."""
    row, col = divmod(tid, grid.ncols)
    return Window(row, row + 1, col, col + 1)


def cross_check(
    grid: Grid,
    code: str,
    geom: CountryGeometry,
    outputs: WorldOutputs,
    enclave_rings: Sequence[np.ndarray],
) -> tuple[dict[str, Any], list[Disagreement]]:
    """Compare the published cells of ``code`` with the legacy engine, chunk by chunk."""
    predicate = outputs.predicate
    tile_ids = outputs.tile_ids[code]
    full = code in FULL_CHECK
    chunks = full_chunks(grid, geom) if full else sample_chunks(grid, geom, tile_ids, enclave_rings)
    problems: list[Disagreement] = []
    visited = included = hole = 0
    for ch in chunks:
        runs = legacy.mask_chunk(grid, ch, geom, predicate)
        mask = runs.to_mask()
        r, c = np.nonzero(mask)
        want = set(grid.tile_id(r + ch.row_start, c + ch.col_start).tolist())
        got = _cells(grid, ch, tile_ids)
        if want != got:
            first = min(want ^ got)
            cell = _single_cell(grid, first)
            problems.append(
                Disagreement(
                    code,
                    predicate,
                    f"chunk {ch}: only in the build: {_describe(grid, got - want) or 'none'}; "
                    f"only in legacy: {_describe(grid, want - got) or 'none'}; reproduce with "
                    f"legacy.mask_chunk(grid, {cell}, country_geometry({code!r}, rows), "
                    f"{predicate!r}) vs kernel.mask_chunk(...)",
                )
            )
        visited += runs.cells_visited
        included += runs.cells_included
        hole += runs.cells_excluded_hole
    record: dict[str, Any] = {
        "scope": "all windows" if full else f"sampled {SAMPLE_SIZE}x{SAMPLE_SIZE} chunks",
        "chunks": len(chunks),
        "cells": visited,
        "cells_included": included,
    }
    if full:
        summary = outputs.summaries[code]
        legacy_summary = {
            "cells_visited": visited,
            "cells_included": included,
            "cells_excluded_hole": hole,
            "cells_excluded_outside": visited - included - hole,
        }
        for field, value in legacy_summary.items():
            if summary[field] != value:
                problems.append(
                    Disagreement(
                        code, predicate, f"{field}: build {summary[field]}, legacy {value}"
                    )
                )
    return record, problems


def consistency(outputs: WorldOutputs) -> Iterator[Disagreement]:
    """The published rows agree with the summaries (row count, first and last tile id)."""
    for code in COUNTRIES:
        ids, s = outputs.tile_ids[code], outputs.summaries[code]
        if ids.size != s["cells_included"]:
            yield Disagreement(
                code, outputs.predicate, f"{ids.size} rows but cells_included {s['cells_included']}"
            )
        first = int(ids.min()) if ids.size else None
        last = int(ids.max()) if ids.size else None
        if (first, last) != (s["tile_id_min"], s["tile_id_max"]):
            yield Disagreement(
                code,
                outputs.predicate,
                f"rows span tile ids {first}..{last}, "
                f"summary {s['tile_id_min']}..{s['tile_id_max']}",
            )


# -- the script --------------------------------------------------------------------------


def build_world(prepared: PrepareResult, out: Path, predicate: str) -> tuple[BuildResult, float]:
    started = time.perf_counter()
    result = build(
        prepared.iso_path,
        prepared.countries_path,
        prepared.grid_path,
        out,
        predicate=predicate,
        engine="fast",
    )
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a golden file would change"
    )
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="folder of the golden files")
    args = parser.parse_args(argv)

    docs: dict[str, str] = {}
    problems: list[Disagreement] = []
    with tempfile.TemporaryDirectory(prefix="tileindex-golden-") as tmp:
        t0 = time.perf_counter()
        prepared = prepare_inputs(Path(tmp) / "inputs", RESOLUTION_ARCSEC)
        print(f"prepared inputs at {RESOLUTION_ARCSEC:g}″ in {time.perf_counter() - t0:.1f} s")
        iso = read_iso_list(prepared.iso_path)
        layer = read_country_layer(prepared.countries_path, iso)
        grid = read_grid(prepared.grid_path).grid
        geoms = {code: country_geometry(code, layer.rows[code]) for code in COUNTRIES}
        rings = [np.asarray(h.coords) for g in geoms.values() for p in g.parts for h in p.interiors]
        for predicate in PREDICATES:
            result, seconds = build_world(prepared, Path(tmp) / predicate, predicate)
            print(
                f"{predicate}: built {result.countries_total} countries, "
                f"{result.rows_emitted} rows in {seconds:.1f} s"
            )
            outputs = read_outputs(result, COUNTRIES)
            if outputs.report["ingress_versions"] != {
                "iso": prepared.report["files"][ISO_FILE]["sha256"],
                "countries": prepared.report["files"][COUNTRIES_FILE]["sha256"],
                "raster": prepared.report["files"][GRID_FILE]["sha256"],
            }:
                problems.append(Disagreement("*", predicate, "run report digests != prepared"))
            problems += consistency(outputs)
            checks: dict[str, Any] = {}
            t1 = time.perf_counter()
            for code in COUNTRIES:
                record, found = cross_check(grid, code, geoms[code], outputs, rings)
                checks[code] = record
                problems += found
                print(
                    f"  legacy {code}: {record['scope']}, {record['chunks']} chunks, "
                    f"{record['cells']} cells, {'DISAGREES' if found else 'agrees'}"
                )
            print(f"  legacy cross-check in {time.perf_counter() - t1:.1f} s")
            docs[predicate] = dumps(golden_document(outputs, prepared, checks))

    if problems:
        print("the build disagrees with the legacy engine; golden files NOT written:")
        for p in problems:
            print(f"  {p}")
        return 1
    changed = [p for p in PREDICATES if not _same(golden_path(p, args.out), docs[p])]
    if args.check:
        for p in changed:
            print(f"{golden_path(p, args.out)} would change")
        return 1 if changed else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for predicate, text in docs.items():
        golden_path(predicate, args.out).write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(str(golden_path(p, args.out)) for p in PREDICATES)}")
    print(f"changed: {', '.join(changed) or 'nothing'}")
    return 0


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


if __name__ == "__main__":
    sys.exit(main())
