"""Parity of the fast kernel with the legacy oracle on sampled windows of real countries.

Windows are drawn per country with a seeded generator, mostly centred on the country's
boundary (where the engines can disagree); each is masked by both engines and the
included tile ids are compared by count, SHA-256 digest and first differences.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tileindex import kernel, legacy
from tileindex.errors import ConfigError, InputError
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.predicates import PREDICATES, check_predicate
from tileindex.validate import boundary_windows

MaskFn = Callable[[Grid, Window, CountryGeometry, str], ChunkMask]
Progress = Callable[[str], None]

_SHOWN = 5  # differing tile ids kept per window and side


@dataclass(frozen=True)
class ParityWindow:
    """One window of one country under one predicate, as both engines saw it."""

    country_iso: str
    predicate: str
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    fast_count: int
    reference_count: int
    fast_sha256: str
    reference_sha256: str
    fast_seconds: float
    reference_seconds: float
    only_fast: tuple[int, ...] = ()  # first tile ids only the fast engine includes
    only_reference: tuple[int, ...] = ()

    @property
    def equal(self) -> bool:
        return (self.fast_count, self.fast_sha256) == (
            self.reference_count,
            self.reference_sha256,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "country_iso": self.country_iso,
            "predicate": self.predicate,
            "window": {
                "row_start": self.row_start,
                "row_stop": self.row_stop,
                "col_start": self.col_start,
                "col_stop": self.col_stop,
            },
            "fast": {
                "count": self.fast_count,
                "sha256": self.fast_sha256,
                "seconds": self.fast_seconds,
            },
            "reference": {
                "count": self.reference_count,
                "sha256": self.reference_sha256,
                "seconds": self.reference_seconds,
            },
            "equal": self.equal,
            "only_fast": list(self.only_fast),
            "only_reference": list(self.only_reference),
        }


@dataclass(frozen=True)
class ParityResult:
    """``ok`` iff every window has the same cells under both engines."""

    ok: bool
    windows: tuple[ParityWindow, ...]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settings": self.settings,
            "seconds": self.seconds,
            "windows": [w.to_json() for w in self.windows],
        }


def run_parity(
    iso: str | Path,
    countries: str | Path,
    raster: str | Path,
    codes: Sequence[str],
    *,
    window: int = 64,
    samples: int = 4,
    seed: int = 0,
    predicates: Sequence[str] = PREDICATES,
    fast: MaskFn = kernel.mask_chunk,
    reference: MaskFn = legacy.mask_chunk,
    progress: Progress | None = None,
) -> ParityResult:
    """Mask ``samples`` windows of ``window`` x ``window`` cells of each country in
    ``codes`` with ``fast`` and ``reference`` under each predicate and compare.

    Windows depend only on (``seed``, code, ``window``, ``samples``) and the inputs, not on
    the other codes requested; three in four are centred on a boundary vertex.
    """
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    if window < 1 or samples < 1:
        raise ConfigError(f"window ({window}) and samples ({samples}) must be >= 1")
    for p in predicates:
        check_predicate(p)
    if not codes:
        raise ConfigError("no country codes given; pass e.g. --codes US,BR,IN,IS")
    iso_list = read_iso_list(iso)
    layer = read_country_layer(countries, iso_list)
    grid = read_grid(raster).grid
    unknown = [c for c in codes if c not in layer.rows]
    if unknown:
        raise InputError(
            f"code(s) {', '.join(map(repr, unknown))} have no polygons in the country layer "
            f"{layer.path}; pass uppercase alpha-2 codes of the layer, e.g. "
            f"{', '.join(list(layer.rows)[:5])}"
        )
    out = []
    for code in codes:
        geom = country_geometry(code, layer.rows[code])
        rng = np.random.default_rng([seed, *code.encode("ascii")])
        wins = boundary_windows(grid, geom.parts, samples, window, rng)
        for w in wins:
            for predicate in predicates:
                pw = _compare(grid, w, geom, predicate, fast, reference)
                say(
                    f"{code} {predicate} rows {w.row_start}..{w.row_stop - 1} cols "
                    f"{w.col_start}..{w.col_stop - 1}: {pw.fast_count} / {pw.reference_count}"
                    f"{'' if pw.equal else '  DIFFERENT'}"
                )
                out.append(pw)
    return ParityResult(
        ok=all(w.equal for w in out),
        windows=tuple(out),
        seconds=round(time.perf_counter() - t0, 3),
        settings={
            "codes": list(codes),
            "window": window,
            "samples": samples,
            "seed": seed,
            "predicates": list(predicates),
            "fast": _name(fast),
            "reference": _name(reference),
        },
    )


def _compare(
    grid: Grid,
    win: Window,
    geom: CountryGeometry,
    predicate: str,
    fast: MaskFn,
    reference: MaskFn,
) -> ParityWindow:
    t = time.perf_counter()
    a = _ids(grid, fast(grid, win, geom, predicate))
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    b = _ids(grid, reference(grid, win, geom, predicate))
    t_ref = time.perf_counter() - t
    return ParityWindow(
        country_iso=geom.iso,
        predicate=predicate,
        row_start=win.row_start,
        row_stop=win.row_stop,
        col_start=win.col_start,
        col_stop=win.col_stop,
        fast_count=int(a.size),
        reference_count=int(b.size),
        fast_sha256=_sha256(a),
        reference_sha256=_sha256(b),
        fast_seconds=round(t_fast, 4),
        reference_seconds=round(t_ref, 4),
        only_fast=tuple(np.setdiff1d(a, b)[:_SHOWN].tolist()),
        only_reference=tuple(np.setdiff1d(b, a)[:_SHOWN].tolist()),
    )


def _ids(grid: Grid, runs: ChunkMask) -> npt.NDArray[np.uint64]:
    """Included tile ids of a chunk result, ascending."""
    rows, cols = np.nonzero(runs.to_mask())
    rows = rows + runs.window.row_start
    cols = cols + runs.window.col_start
    return np.sort(grid.tile_id(rows, cols))


def _sha256(ids: npt.NDArray[np.uint64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<u8").data).hexdigest()


def _name(fn: MaskFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


__all__ = ["MaskFn", "ParityResult", "ParityWindow", "run_parity"]
