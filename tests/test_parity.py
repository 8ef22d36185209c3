"""Parity of the fast kernel with the legacy engine on sampled windows of real-shaped
countries; a deliberately wrong engine is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tileindex import kernel, legacy
from tileindex.errors import ConfigError, InclusionRuleError, InputError
from tileindex.geometry import CountryGeometry
from tileindex.grid import ChunkMask, Grid, Window
from tileindex.parity import run_parity
from tileindex.predicates import PREDICATES

Inputs = tuple[Path, Path, Path]


@pytest.fixture(scope="module")
def inputs(small_world: Inputs) -> Inputs:
    return small_world


def test_engines_agree_on_every_window(inputs) -> None:
    result = run_parity(*inputs, ["AA", "BB", "CC", "FJ"], window=16, samples=3)
    assert result.ok
    assert len(result.windows) == 4 * 3 * len(PREDICATES)  # every predicate by default
    for w in result.windows:
        assert w.equal and w.fast_count == w.reference_count
        assert w.fast_sha256 == w.reference_sha256 and len(w.fast_sha256) == 64
        assert w.row_stop - w.row_start == 16 and w.col_stop - w.col_start == 16
    # boundary windows see both included and excluded cells
    assert any(0 < w.fast_count < 256 for w in result.windows)
    assert result.settings["fast"] == "tileindex.kernel.mask_chunk"
    assert result.settings["reference"] == "tileindex.legacy.mask_chunk"


def test_windows_depend_on_seed_and_code_only(inputs) -> None:
    def windows(codes: list[str], seed: int) -> list[tuple[str, int, int]]:
        result = run_parity(*inputs, codes, window=8, samples=3, seed=seed, predicates=["center"])
        return [(w.country_iso, w.row_start, w.col_start) for w in result.windows]

    alone = windows(["BB"], 1)
    assert alone == windows(["BB"], 1)
    assert alone == [w for w in windows(["AA", "BB"], 1) if w[0] == "BB"]
    assert alone != windows(["BB"], 2)


class _MaskingFailed(RuntimeError):
    """Raised by a test engine in the middle of a window (nothing else raises it)."""


def test_an_engine_failing_inside_a_window_stops_the_run_with_its_error(inputs) -> None:
    masked: list[Window] = []
    reported: list[str] = []

    def fails_on_the_second_window(
        grid: Grid, window: Window, country: CountryGeometry, predicate: str
    ) -> ChunkMask:
        masked.append(window)
        if len(masked) == 2:
            raise _MaskingFailed(f"{country.iso} rows {window.row_start}..{window.row_stop - 1}")
        return kernel.mask_chunk(grid, window, country, predicate)

    with pytest.raises(_MaskingFailed, match=r"^AA rows \d+\.\.\d+$"):
        run_parity(
            *inputs,
            ["AA"],
            window=16,
            samples=2,
            predicates=["center"],
            fast=fails_on_the_second_window,
            progress=reported.append,
        )
    # it failed inside a unit: the first window was masked, compared and reported
    assert len(masked) == 2
    assert len(reported) == 1 and reported[0].startswith("AA center rows ")


def _drops_a_cell(
    grid: Grid, window: Window, country: CountryGeometry, predicate: str
) -> ChunkMask:
    """The kernel, but the first included cell of every window is lost."""
    runs = kernel.mask_chunk(grid, window, country, predicate)
    mask = runs.to_mask()
    hit = np.argwhere(mask)
    if hit.size:
        mask[tuple(hit[0])] = False
    return ChunkMask.from_mask(window, mask, np.zeros_like(mask))


def test_a_wrong_engine_is_reported(inputs) -> None:
    result = run_parity(*inputs, ["AA"], window=16, samples=2, fast=_drops_a_cell)
    assert not result.ok
    bad = [w for w in result.windows if not w.equal]
    assert bad and all(len(w.only_reference) == 1 and not w.only_fast for w in bad)
    assert all(w.fast_count == w.reference_count - 1 for w in bad)
    assert result.settings["fast"].endswith("_drops_a_cell")


def test_the_reference_can_be_replaced_too(inputs) -> None:
    centre_only = lambda g, w, c, p: legacy.mask_chunk(g, w, c, "center")  # noqa: E731
    result = run_parity(
        *inputs, ["FJ"], window=16, samples=3, predicates=["any_overlap"], reference=centre_only
    )
    assert not result.ok  # FJ's east edge, -177.7, overlaps cells whose centres it misses
    assert any(w.only_fast for w in result.windows)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"codes": ["XX"]}, InputError, "'XX' have no polygons"),
        ({"codes": []}, ConfigError, "no country codes"),
        ({"codes": ["AA"], "window": 0}, ConfigError, r"window \(0\) and samples \(4\)"),
        ({"codes": ["AA"], "predicates": ["centre"]}, InclusionRuleError, "predicate 'centre'"),
    ],
)
def test_bad_arguments_are_refused(inputs, kwargs, error, words) -> None:
    codes = kwargs.pop("codes")
    with pytest.raises(error, match=words):
        run_parity(*inputs, codes, **kwargs)
