"""The validator's run: locate the partition, read the inputs, and call each concern's
checks in a fixed order, streaming the rows once while the recount runs in a thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from tileindex.contract import (
    DEFAULT_KEY_COLUMN,
    DatasetDictionary,
    check_key_column,
    check_parameter_hash,
    is_region_mode,
    tile_bounds_schema,
    tile_index_schema,
)
from tileindex.errors import ConfigError, InputFileError
from tileindex.inputs import layer_key_list, read_country_layer, read_grid, read_iso_list
from tileindex.layout import find_parameter_hashes
from tileindex.validate import coverage, evidence, files, inclusion
from tileindex.validate.axes import Axes
from tileindex.validate.cells import CellChecks
from tileindex.validate.findings import (
    E002,
    E003,
    E004,
    E005,
    E006,
    E008,
    Checks,
    ValidationResult,
)
from tileindex.validate.keys import KeyChecks
from tileindex.validate.samples import WindowRows, check_windows, legacy_ids, pick_windows
from tileindex.validate.shape import EMPTY_SHAPE
from tileindex.validate.target import Target

Progress = Callable[[str], None]


def validate_partition(
    out: str | Path,
    *,
    iso: str | Path | None,
    countries: str | Path,
    raster: str | Path,
    key_column: str = DEFAULT_KEY_COLUMN,
    parameter_hash: str | None = None,
    dictionary: str | Path | None = None,
    samples: int = 8,
    seed: int = 0,
    window: int = 32,
    full: bool = False,
    coverage_samples: int = 8,
    progress: Progress | None = None,
) -> ValidationResult:
    """Validate the tile index published under ``out`` against the three sealed inputs.

    ``parameter_hash`` picks the partition (default: the only one under ``out``).
    ``samples`` windows of ``window`` x ``window`` cells, chosen with ``seed`` on country
    boundaries, are re-decided cell by cell by the legacy engine; ``full`` re-decides
    every cell of every country with it (slow). When the build published
    ``tile_coverage``, it is checked too, with ``coverage_samples`` cells per country
    and kind re-derived by GEOS (:mod:`.coverage`). Raises a TileIndexError only when there
    is nothing to validate or an input cannot be read; everything else is a Finding.

    A region-mode build (docs/CONTRACT.md §10.1) is validated with its ``key_column``,
    its region layer as ``countries`` and its key list as ``iso`` (None when the build
    had none: the layer's keys are the list, as in the build).
    """
    if samples < 0 or window < 1:
        raise ConfigError(f"samples ({samples}) must be >= 0 and window ({window}) >= 1")
    check_key_column(key_column)
    if iso is None and not is_region_mode(key_column):
        raise ConfigError(
            "no ISO list given; pass the build's ISO list (--iso), or its --key-column for "
            "a region-mode build"
        )
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    root, paths = Path(out), DatasetDictionary.load(dictionary)
    phash = _locate(root, paths, parameter_hash)
    say(f"reading inputs for partition {phash}")
    countries_path, raster_path = Path(countries), Path(raster)
    if iso is None:
        layer = read_country_layer(countries_path, None, key_column)
        iso_list = layer_key_list(layer)
        iso_size = 0
    else:
        iso_list = read_iso_list(Path(iso), key_column)
        layer = read_country_layer(countries_path, iso_list, key_column)
        iso_size = Path(iso).stat().st_size
    grid_in = read_grid(raster_path)
    target = Target(
        out=root,
        paths=paths,
        phash=phash,
        grid=grid_in.grid,
        iso_codes=iso_list.codes,
        digests={"iso": iso_list.digest, "countries": layer.digest, "raster": grid_in.digest},
        sizes={
            "raster": raster_path.stat().st_size,
            "vectors": iso_size + countries_path.stat().st_size,
        },
        key_column=key_column,
    )
    options = _Options(samples, seed, window, full, coverage_samples)
    return _Validator(target, layer.rows, options, say, t_start).run()


def _locate(out: Path, paths: DatasetDictionary, phash: str | None) -> str:
    """``phash`` if its partition exists, else the only partition under ``out``."""
    if phash is not None:
        check_parameter_hash(phash)
        if not paths.path("tile_index", out, phash).is_dir():
            raise InputFileError(
                f"no tile_index partition for parameter_hash {phash} under {out}; "
                "check --out and --parameter-hash"
            )
        return phash
    found = find_parameter_hashes(out, paths)
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputFileError(
            f"no published tile_index partition under {out}; pass the --out of a "
            "build (and --parameter-hash if it holds several)"
        )
    raise ConfigError(
        f"{out} holds {len(found)} partitions ({', '.join(h[:12] for h in found)}, "
        "...); pass --parameter-hash to pick one"
    )


@dataclass(frozen=True)
class _Options:
    """The sampled windows (count, seed, size) and whether to run the full legacy recount."""

    samples: int
    seed: int
    window: int
    full: bool
    coverage_samples: int = 8


class _Validator:
    """One validation: the checks recorder, the grid axes the row and recount checks
    share, the key and cell checks the row stream feeds, and the stats and timings."""

    def __init__(
        self,
        target: Target,
        polygons: Mapping[str, list[BaseGeometry]],
        options: _Options,
        say: Progress,
        t_start: float,
    ) -> None:
        self.target = target
        self.polygons = polygons
        self.options = options
        self.say = say
        self.t_start = t_start
        self.c = Checks()
        self.axes = Axes(target.grid)
        self.keys = KeyChecks(self.c, target.iso_codes, target.key_column, target.key_list)
        self.schemas = {
            "tile_index": tile_index_schema(target.key_column),
            "tile_bounds": tile_bounds_schema(target.key_column),
        }
        self.cells = CellChecks(self.c, self.axes)
        self.stats: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.t = t_start

    def _timed(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.t, 3)
        self.t = now

    def run(self) -> ValidationResult:
        c, target, opts = self.c, self.target, self.options
        self._timed("inputs")
        index_dir, bounds_dir = target.path("tile_index"), target.path("tile_bounds")
        report = evidence.check_report(c, target)
        if report.derived_hash_matches is not None:
            self.stats["parameter_hash_derived_from_inputs"] = report.derived_hash_matches
        predicate = evidence.report_predicate(c, report)
        index_files = files.check_layout(c, index_dir, "tile_index")
        bounds_files = files.check_layout(c, bounds_dir, "tile_bounds")
        readable = files.check_schemas(c, index_files, self.schemas["tile_index"], "tile_index")
        readable &= files.check_schemas(c, bounds_files, self.schemas["tile_bounds"], "tile_bounds")
        receipt = evidence.check_receipt(c, target, report)
        if receipt is not None:
            self.stats["determinism_receipt"] = receipt
        self._timed("report_and_layout")

        picked = pick_windows(target.grid, self.polygons, opts.samples, opts.seed, opts.window)
        window_rows = WindowRows(target.grid, picked)
        rows_ok = readable and predicate is not None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recount") as pool:
            job = pool.submit(
                inclusion.geometry_and_recount,
                self.axes,
                target.iso_codes,
                self.polygons,
                predicate if rows_ok else None,
            )
            if readable:
                self.say(f"streaming {index_dir} (and recounting in a thread)")
                self._stream(index_files, bounds_files, predicate, window_rows)
            else:
                c.warn("row checks skipped: the partitions cannot be read as the contract says")
            self._timed("stream")
            shapes, counted, recount_s = job.result()
        self.seconds["geometry_and_recount_thread"] = round(recount_s, 3)
        self._timed("recount_wait")
        evidence.check_summaries(c, target, self.keys.rows, report)
        if report.doc is not None and readable:
            evidence.check_counts(c, report, self.keys.row_count)

        checked = list(picked)
        if rows_ok:
            assert predicate is not None
            self.stats["recount"] = self._compare(
                index_files, shapes, predicate, "recount", counted
            )
            self._timed("recount_compare")
            self.say(f"checking {len(picked)} sampled windows with the legacy engine")
            checked = check_windows(c, self.axes, shapes, predicate, window_rows)
            self._timed("samples")
            if opts.full:
                self.say("--full: every cell of every country with the legacy engine")
                counted = {}
                for n, code in enumerate(target.iso_codes, 1):
                    shape = shapes.get(code, EMPTY_SHAPE)
                    counted[code] = inclusion.digest(legacy_ids(self.axes, shape, predicate))
                    self.say(f"  {n}/{len(target.iso_codes)} {code}: {counted[code][0]} cells")
                self.stats["legacy_full"] = self._compare(
                    index_files, shapes, predicate, "full", counted
                )
                self._timed("full")

        if coverage.wanted(target, report):
            self.say("checking tile_coverage")
            self.stats.update(
                coverage.check(
                    c, target, report, index_files, shapes, opts.coverage_samples, opts.seed
                )
            )
            self._timed("coverage")

        c.close()
        self.seconds["total"] = round(time.perf_counter() - self.t_start, 3)
        self.stats.update(
            {
                "out": str(target.out),
                "parameter_hash": target.phash,
                "predicate": predicate,
                "tile_index": str(index_dir),
                "tile_bounds": str(bounds_dir),
                "rows": self.keys.row_count,
                "key_column": target.key_column,
                "countries": len(target.iso_codes),
                "countries_with_rows": sum(1 for r in self.keys.rows.values() if r.count),
                "files": {"tile_index": len(index_files), "tile_bounds": len(bounds_files)},
                "sampled_windows": [w.to_json() for w in checked],
                "seed": opts.seed,
                "full": opts.full,
                "checks": c.stats(),
                "seconds": self.seconds,
            }
        )
        return ValidationResult(
            ok=not c.findings,
            findings=tuple(c.findings),
            warnings=tuple(c.warnings),
            stats=self.stats,
        )

    def _compare(
        self,
        index_files: list[Path],
        shapes: Mapping[str, Any],
        predicate: str,
        how: str,
        counted: Mapping[str, tuple[int, str]],
    ) -> dict[str, Any]:
        return inclusion.compare(
            self.c,
            self.axes,
            self.target.iso_codes,
            self.keys.rows,
            index_files,
            shapes,
            predicate,
            how,
            counted,
            self.target.key_column,
        )

    def _stream(
        self,
        index_files: list[Path],
        bounds_files: list[Path],
        predicate: str | None,
        window_rows: WindowRows,
    ) -> None:
        """Both datasets in lockstep, batch by batch: memory is O(batch)."""
        c, keys = self.c, self.keys
        for name, code in (
            ("key order", E003),
            ("key unique", E003),
            ("iso foreign key", E005),
            ("same keys in both datasets", E003),
            ("tile_id", E002),
            ("centroid", E004),
            ("bounds", E004),
            ("pixel area", E006),
            ("inclusion_rule", E008),
        ):
            c.ran(name, code)
        ia = files.Cursor(files.batches(index_files, self.schemas["tile_index"]))
        ba = files.Cursor(files.batches(bounds_files, self.schemas["tile_bounds"]))
        extra_bounds = extra_index = 0
        while True:
            na, nb = ia.available(), ba.available()
            if na == 0 and nb == 0:
                break
            if na and nb:
                n = min(na, nb)
                batch, bounds = ia.take(n), ba.take(n)
            elif na:
                extra_index += na
                batch, bounds = ia.take(na), None
            else:
                extra_bounds += nb
                ba.take(nb)
                continue
            files.check_nulls(c, batch, "tile_index")
            ids = keys.ids_of(batch.column(0))
            tid = files.to_numpy(batch.column(1), 0).astype(np.uint64, copy=False)
            keys.index(ids, tid)
            cells = self.cells.index(batch, tid, predicate)
            window_rows.collect(keys.codes, ids, tid, cells.row, cells.col)
            if bounds is not None:
                files.check_nulls(c, bounds, "tile_bounds")
                bids = keys.ids_of(bounds.column(0))
                btid = files.to_numpy(bounds.column(1), 0).astype(np.uint64, copy=False)
                keys.same_keys(ids, tid, bids, btid)
                self.cells.bounds(cells, bounds)
        keys.finish(extra_index, extra_bounds)
