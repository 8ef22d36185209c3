"""Arrow arrays by their buffers (tileindex.arrays) against pyarrow's own conversions, and
the reason they exist: a process that uses them never imports pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tileindex import arrays

FIXED = [np.uint64, np.int64, np.int32, np.float64, np.float32, np.uint8]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FIXED).flatmap(lambda t: hnp.arrays(t, st.integers(0, 300))), st.data())
def test_to_numpy_is_pyarrows_view_of_any_slice(values: np.ndarray, data: st.DataObject) -> None:
    array = pa.array(values)
    start = data.draw(st.integers(0, len(values)))
    stop = data.draw(st.integers(start, len(values)))
    for part in (array.slice(start, stop - start), pa.chunked_array([array, array])):
        got = arrays.to_numpy(part)
        expected = part.to_numpy()
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f")


def test_to_numpy_refuses_nulls() -> None:
    with pytest.raises(ValueError, match="1 null"):
        arrays.to_numpy(pa.array([1.0, None]))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FIXED).flatmap(lambda t: hnp.arrays(t, st.integers(0, 300))), st.data())
def test_from_numpy_is_pa_array_with_a_mask(values: np.ndarray, data: st.DataObject) -> None:
    valid = data.draw(hnp.arrays(np.bool_, values.shape))
    got = arrays.from_numpy(values, valid)
    expected = pa.array(values, mask=~valid)
    got.validate(full=True)
    assert got.type == expected.type
    assert got.is_valid().equals(expected.is_valid())
    assert got.null_count == int((~valid).sum())
    same = np.frombuffer(got.buffers()[1], values.dtype) == values  # the values, unmoved
    assert (same | (values != values)).all()  # NaN is the NaN it was


def test_from_numpy_refuses_shapes_that_differ() -> None:
    with pytest.raises(ValueError, match="one 1-D shape"):
        arrays.from_numpy(np.zeros(3), np.ones(2, dtype=bool))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=8),
            st.integers(-(2**63), 2**63 - 1),
            st.none() | st.floats(allow_nan=False),
        ),
        max_size=40,
    )
)
def test_a_table_of_rows_is_pyarrows_from_pylist(rows: list[tuple[str, int, float | None]]) -> None:
    schema = pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("count", pa.int64(), nullable=False),
            pa.field("mean", pa.float64(), nullable=True),
        ]
    )
    mappings = [{"key": k, "count": c, "mean": m} for k, c, m in rows]
    got = arrays.table(mappings, schema)
    got.validate(full=True)
    assert got.equals(pa.Table.from_pylist(mappings, schema=schema))


def test_a_table_refuses_none_in_a_column_that_is_not_nullable() -> None:
    schema = pa.schema([pa.field("count", pa.int64(), nullable=False)])
    with pytest.raises(ValueError, match="'count' is not nullable"):
        arrays.table([{"count": None}], schema)


@given(value=st.text(max_size=5), n=st.integers(0, 3000))
def test_a_repeated_string_is_the_value_n_times(value: str, n: int) -> None:
    made = arrays.repeat(value, n)
    made.validate(full=True)
    assert made.type == pa.string() and made.to_pylist() == [value] * n


def test_a_repeat_beyond_32_bit_offsets_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        arrays.repeat("ab", 1 << 30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["CH", "LU", "VA"]), min_size=1, max_size=4),
    st.lists(st.integers(0, 4), max_size=60),
)
def test_key_runs_are_the_runs_of_equal_keys(dictionary: list[str], picks: list[int]) -> None:
    # a dictionary may hold a value twice (two codes, one run) and a row may be null
    codes = [p if p < len(dictionary) else None for p in picks]
    column = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(dictionary))
    for part in (column, column.slice(len(codes) // 3)):  # slices keep their offset
        expected: list[tuple[str | None, int, int]] = []
        for i, key in enumerate(part.to_pylist()):  # one row at a time
            if expected and expected[-1][0] == key:
                expected[-1] = (key, expected[-1][1], i + 1)
            else:
                expected.append((key, i, i + 1))
        assert arrays.key_runs(part) == expected


def test_none_of_them_imports_pandas() -> None:
    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from tileindex import arrays\n"
        "a = arrays.from_numpy(np.arange(4.0), np.array([1, 0, 1, 1], bool))\n"
        "arrays.to_numpy(pa.chunked_array([a.slice(2)]))\n"
        "s = pa.schema([pa.field('k', pa.string(), False), pa.field('v', pa.float64())])\n"
        "arrays.table([{'k': 'CH', 'v': None}, {'k': 'LU', 'v': 1.5}], s)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
