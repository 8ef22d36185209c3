"""The on-disk mask cache: warm reruns under another parameter hash reuse the masks and
publish the same bytes; corrupt entries are recomputed; the size bound evicts LRU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import shapely

from tileindex.cache import MaskCache, unit_key
from tileindex.grid import Grid, MaskCounts, Runs, Window
from tileindex.pipeline import build

from factories import make_inputs

COUNTRIES = {
    "AA": [
        shapely.Polygon(
            [(0, 0), (30, 2), (28, 25), (1, 20)], [[(10, 5), (10, 10), (15, 10), (15, 5)]]
        )
    ],
    "FJ": [shapely.box(175, -20, 185, -12)],
}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_inputs(
        tmp_path, COUNTRIES, ncols=720, nrows=360, transform=(0.5, 0.0, -180.0, 0.0, -0.5, 90.0)
    )


def _receipt(result) -> str:
    return result.report.determinism_receipt["sha256_hex"]


def test_warm_rerun_under_another_parameter_hash_reuses_every_unit(inputs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = build(*inputs, tmp_path / "a", cache_dir=cache, parameter_hash="1" * 64)
    assert cold.metrics.cache_hits == 0
    warm = build(*inputs, tmp_path / "b", cache_dir=cache, parameter_hash="2" * 64, workers=2)
    assert warm.metrics.cache_hits == warm.metrics.units_total > 0
    assert _receipt(warm) == _receipt(cold)
    assert warm.summaries == cold.summaries
    # another predicate is another key: nothing to reuse
    other = build(*inputs, tmp_path / "c", cache_dir=cache, predicate="any_overlap")
    assert other.metrics.cache_hits == 0


def test_a_corrupt_entry_is_recomputed(inputs, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = build(*inputs, tmp_path / "a", cache_dir=cache)
    entries = sorted(cache.glob("*/*.npz"))
    assert entries
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    warm = build(*inputs, tmp_path / "b", cache_dir=cache, parameter_hash="3" * 64)
    assert warm.metrics.cache_hits == warm.metrics.units_total - 1
    assert _receipt(warm) == _receipt(cold)
    again = build(*inputs, tmp_path / "c", cache_dir=cache, parameter_hash="4" * 64)
    assert again.metrics.cache_hits == again.metrics.units_total  # rewritten whole


def test_eviction_removes_the_least_recently_used(tmp_path: Path) -> None:
    cache = MaskCache(tmp_path, max_bytes=0)
    runs = Runs.of(np.arange(100), np.zeros(100), np.ones(100))
    for i, key in enumerate(["aa" * 32, "bb" * 32, "cc" * 32]):
        cache.put(key, runs, MaskCounts(5, 3, 1))
        path = tmp_path / key[:2] / f"{key}.npz"
        os.utime(path, (1000 + i, 1000 + i))
    cache.max_bytes = cache.size_bytes() - 1  # one entry too many
    assert cache.evict() == 1
    assert cache.get("aa" * 32) is None  # the oldest went
    got = cache.get("cc" * 32)
    assert got is not None
    assert got[1] == MaskCounts(5, 3, 1) and (got[0].row == np.arange(100)).all()


def test_keys_follow_geometry_grid_predicate_and_windows() -> None:
    grid = Grid.from_transform(360, 180, (1.0, 0.0, -180.0, 0.0, -1.0, 90.0))
    other = Grid.from_transform(720, 360, (0.5, 0.0, -180.0, 0.0, -0.5, 90.0))
    w = (Window(0, 10, 0, 10),)
    base = unit_key("g", grid, "center", w)
    assert base == unit_key("g", grid, "center", w)
    assert (
        len(
            {
                base,
                unit_key("h", grid, "center", w),
                unit_key("g", other, "center", w),
                unit_key("g", grid, "any_overlap", w),
                unit_key("g", grid, "within", w),
                unit_key("g", grid, "center", (Window(0, 11, 0, 10),)),
            }
        )
        == 6
    )


def test_within_shares_no_entry_with_the_other_predicates(inputs, tmp_path: Path) -> None:
    # within's runs are a subset of center's: a shared entry would publish center's cells
    cache = tmp_path / "cache"
    for predicate in ("center", "any_overlap"):
        build(*inputs, tmp_path / predicate, cache_dir=cache, predicate=predicate)
    cold = build(*inputs, tmp_path / "w1", cache_dir=cache, predicate="within")
    assert cold.metrics.cache_hits == 0
    plain = build(*inputs, tmp_path / "w0", predicate="within")  # no cache
    assert _receipt(cold) == _receipt(plain)
    warm = build(
        *inputs, tmp_path / "w2", cache_dir=cache, predicate="within", parameter_hash="3" * 64
    )
    assert warm.metrics.cache_hits == warm.metrics.units_total > 0
    assert _receipt(warm) == _receipt(cold)


def test_an_unwritable_cache_costs_the_reuse_not_the_build(inputs, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    result = build(*inputs, tmp_path / "out", cache_dir=blocked)
    assert result.rows_emitted > 0 and result.metrics.cache_hits == 0
