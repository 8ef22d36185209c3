"""The exact sums of ``tileindex values`` (tileindex.exactsum) against Python's exact
references, and the strip plan of the raster gather (tileindex.gather) against divmod."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tileindex import gather
from tileindex.exactsum import SCALE, Accumulator, scaled_sum, unscale

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
VALUES = hnp.arrays(np.float64, st.integers(0, 300), elements=FINITE)
# the edges of the format: subnormals, the largest finite, both zeros, powers of two
EDGES = np.array(
    [5e-324, -5e-324, 2.2250738585072014e-308, -2.225073858507201e-308,
     1.7976931348623157e308, -1.7976931348623157e308, -0.0, 0.0, 1.0, -1.0,
     2.0**-1022, 2.0**1023, 0.1, 1e-300, 1e300],
)  # fmt: skip


def _fraction(values: np.ndarray) -> Fraction:
    return sum((Fraction(float(x)) for x in values), Fraction(0))


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_scaled_sum_is_the_exact_rational_sum(values: np.ndarray) -> None:
    total = scaled_sum(values)
    assert Fraction(total, 2**SCALE) == _fraction(values)
    # rounded once: the correctly rounded sum, which is what math.fsum returns too
    try:
        reference = math.fsum(values)
    except OverflowError:  # fsum's intermediate overflow: Fraction rounds correctly too
        try:
            reference = float(_fraction(values))
        except OverflowError:  # the exact sum is beyond float64; so is its rounding
            with pytest.raises(OverflowError):
                unscale(total)
            return
    assert unscale(total) == reference


@settings(max_examples=100, deadline=None)
@given(VALUES, st.randoms(use_true_random=False))
def test_scaled_sum_does_not_depend_on_order_or_grouping(values: np.ndarray, rnd) -> None:  # type: ignore[no-untyped-def]
    order = list(range(values.size))
    rnd.shuffle(order)
    shuffled = values[order]
    cut = rnd.randint(0, values.size)
    assert scaled_sum(shuffled) == scaled_sum(values)
    assert scaled_sum(shuffled[:cut]) + scaled_sum(shuffled[cut:]) == scaled_sum(values)


def test_scaled_sum_at_the_edges_of_the_format() -> None:
    values = np.concatenate([EDGES, -np.ldexp(1.0, np.arange(-1074, 1024, 37)), EDGES[::-1]])
    assert Fraction(scaled_sum(values), 2**SCALE) == _fraction(values)
    assert scaled_sum(np.array([], dtype=np.float64)) == 0
    assert scaled_sum(np.array([1.7976931348623157e308] * 2)) == 2 * scaled_sum(
        [1.7976931348623157e308]
    )


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(0, 200), elements=FINITE).flatmap(
        lambda v: st.tuples(
            st.just(v),
            hnp.arrays(np.bool_, v.size),
            hnp.arrays(np.float64, v.size, elements=st.floats(0.0, 1.0)),
        )
    )
)
def test_the_accumulator_gives_count_min_max_and_three_exact_sums(
    case: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    values, valid, fractions = case
    acc = Accumulator()
    acc.add(np.array([3.5, -1e300]), np.array([True, True]), np.array([0.25, 1.0]))  # reused bins
    count, low, high, (total, weight, weighted) = acc.add(values, valid, fractions)
    v, f = values[valid], fractions[valid]
    assert count == v.size
    if v.size:
        assert (low, high) == (v.min(), v.max())
    assert Fraction(total, 2**SCALE) == _fraction(v)
    assert Fraction(weight, 2**SCALE) == _fraction(f)
    # each product rounded to float64 first (docs/CONTRACT.md §10.4)
    assert Fraction(weighted, 2**SCALE) == _fraction(v * f)
    # without fractions the weighted sums are 0 and the plain ones unchanged
    count2, _, _, (total2, weight2, weighted2) = acc.add(values, valid)
    assert (count2, total2, weight2, weighted2) == (count, total, 0, 0)


def test_the_accumulator_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        Accumulator().add(np.ones(3), np.ones(2, dtype=bool))


# -- the strip plan of the gather --------------------------------------------------------------


def _cells(data: st.DataObject, cells: int) -> npt.NDArray[np.uint64]:
    """Tile ids as a row group holds them (runs of ascending ids, one per key, starting
    anywhere), or in any order at all."""
    if data.draw(st.booleans()):
        ids = data.draw(st.lists(st.integers(0, cells - 1), max_size=400))
    else:
        runs = data.draw(st.lists(st.lists(st.integers(0, cells - 1), max_size=120), max_size=5))
        ids = [i for run in runs for i in sorted(set(run))]
    return np.array(ids, dtype=np.uint64)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 50_000),
    st.integers(1, 2_000),
    st.integers(1, 300),
    st.integers(1, 700),
    st.data(),
)
def test_the_plan_puts_every_cell_in_its_strip_and_marks_its_chunk(
    ncols: int, nrows: int, step: int, chunk: int, data: st.DataObject
) -> None:
    ids = _cells(data, ncols * nrows)
    plan = gather.plan(ids, nrows, ncols, step, chunk)
    rows, cols = np.divmod(ids.astype(np.int64), ncols)
    assert (np.diff(plan.strips) > 0).all()  # each strip once, in ascending order
    seen: list[int] = []
    need = np.zeros_like(plan.need)
    for k, s in enumerate(plan.strips.tolist()):
        j0, j1 = plan.bounds[k], plan.bounds[k + 1]
        members = np.concatenate(
            [np.arange(a, b) for a, b in zip(plan.lo[j0:j1], plan.hi[j0:j1], strict=True)]
        ).astype(np.int64)
        assert (rows[members] // step == plan.first + s).all()
        assert (np.diff(members) > 0).all()  # a strip's cells keep their order
        need[s, cols[members] // chunk] = True
        seen.extend(members.tolist())
    assert sorted(seen) == list(range(ids.size))  # every cell exactly once
    assert (plan.need == need).all()  # the chunks of its cells, and no other


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 12), st.data())
def test_take_copies_each_strips_values_to_its_cells(
    ncols: int, nrows: int, step: int, data: st.DataObject
) -> None:
    raster = np.arange(ncols * nrows, dtype=np.float32).reshape(nrows, ncols) * 0.5 + 1
    ids = _cells(data, ncols * nrows)
    plan = gather.plan(ids, nrows, ncols, step, 2)
    out = np.zeros(ids.size)
    for k, s in enumerate(plan.strips.tolist()):
        r0 = (plan.first + s) * step
        gather.take(plan, k, r0, raster[r0 : r0 + step], out)
    expected = [raster[int(i) // ncols, int(i) % ncols] for i in ids]  # one cell at a time
    assert out.tolist() == expected


def test_the_plan_divides_exactly_up_to_two_to_the_53() -> None:
    # tile ids up to 2^53 - 1: the float product that stands in for the division is off
    # by one there, and corrected
    for ncols in (43199, 2**26 - 3, 2**31 - 1):
        nrows = (2**53 - 1) // ncols
        top = nrows * ncols
        step = max(1, nrows // 7)
        ids = np.concatenate(
            [
                np.arange(top - 3000, top, dtype=np.uint64),
                np.arange(0, top, top // 997 + 1, dtype=np.uint64),
                (np.arange(1, 2000, dtype=np.uint64) * np.uint64(ncols)),
                (np.arange(1, 2000, dtype=np.uint64) * np.uint64(ncols) - np.uint64(1)),
            ]
        )
        plan = gather.plan(ids, nrows, ncols, step, max(256, ncols // 1000))
        rows, cols = np.divmod(ids.astype(np.int64), ncols)
        strip = np.empty(ids.size, dtype=np.int64)
        for k, s in enumerate(plan.strips.tolist()):
            for j in range(plan.bounds[k], plan.bounds[k + 1]):
                strip[plan.lo[j] : plan.hi[j]] = plan.first + s
        assert (strip == rows // step).all()
        need = np.zeros_like(plan.need)
        need[rows // step - plan.first, cols // max(256, ncols // 1000)] = True
        assert (plan.need == need).all()


def test_importing_tileindex_does_not_import_numba() -> None:
    # numba costs half a second to import: only `tileindex values` pays for it
    code = "import sys, tileindex, tileindex.values; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
