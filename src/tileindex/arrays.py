"""NumPy arrays to and from Arrow arrays by their buffers.

pyarrow imports pandas (half a second) on its first conversion between NumPy and Arrow
(``pa.array(ndarray)``, ``Array.to_numpy``), to check whether the object is a pandas
one. A worker process of ``tileindex values`` does nothing with pandas, so it reads and
makes the fixed-width columns it needs here: views of the buffers, no copy either way;
small tables of Python values (``region_values``) are built here too, for the same
reason (``pa.array`` of a list checks for pandas first), and so are the runs of keys
of a dictionary column and a string repeated, which the read side and the encoder need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["from_numpy", "key_runs", "repeat", "strings", "table", "to_numpy"]


def to_numpy(array: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """The values of a fixed-width ``array`` with no nulls, as a read-only view of its
    buffer (a chunked array is combined first: a copy when it has several chunks)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError(f"{array.type} array has {array.null_count} null(s): no NumPy view")
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None:  # no rows
        return np.empty(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def from_numpy(values: npt.NDArray[np.generic], valid: npt.NDArray[np.bool_]) -> pa.Array:
    """``values`` (1-D, fixed width) as an Arrow array, null where ``valid`` is False;
    the array holds a view of ``values``."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or valid.shape != values.shape:
        raise ValueError(f"values {values.shape} and validity {valid.shape}: one 1-D shape")
    nulls = int(values.size - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    type_ = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(type_, values.size, [bitmap, pa.py_buffer(values)], nulls)


def strings(values: Sequence[str]) -> pa.Array:
    """``values`` as a string array with no nulls, from its offsets and characters."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    chars = b"".join(data)
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(chars)]
    )


def table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """``rows`` (a mapping per row, None for null) as a table of ``schema``, whose
    columns are strings or fixed-width numbers; a column that is not nullable refuses a
    None."""
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        valid = np.array([v is not None for v in values], dtype=np.bool_)
        if not field.nullable and not valid.all():
            raise ValueError(f"column {field.name!r} is not nullable but holds None")
        if pa.types.is_string(field.type):
            if not valid.all():
                raise ValueError(f"string column {field.name!r}: nulls are not supported")
            columns.append(strings(values))
            continue
        dtype = np.dtype(field.type.to_pandas_dtype())
        filled = np.array([v if v is not None else 0 for v in values], dtype=dtype)
        columns.append(from_numpy(filled, valid))
    return pa.Table.from_arrays(columns, schema=schema)


def repeat(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times, as a string array built from its buffers.

    Several times faster than ``pa.repeat`` or a one-valued dictionary's cast
    (``benchmarks/open.py`` times the three), and no Python scalar is made (``pa.scalar``
    imports pandas). The buffers come from Arrow's memory pool, which reuses its pages.
    """
    data = value.encode()
    if len(data) * n >= 1 << 31:  # 32-bit offsets, as a row group's own column has
        raise ValueError(f"{n} copies of {len(data)} bytes do not fit a string array")
    offsets = pa.allocate_buffer(4 * (n + 1))
    np.multiply(_counting(n + 1), len(data), out=np.frombuffer(offsets, dtype=np.int32))
    chars = pa.allocate_buffer(len(data) * n)
    out, done = np.frombuffer(chars, dtype=np.uint8), min(len(data), len(data) * n)
    out[:done] = np.frombuffer(data, dtype=np.uint8)[:done]
    while 0 < done < len(out):  # the value, then doubled: a memcpy each
        step = min(done, len(out) - done)
        out[done : done + step] = out[:step]
        done += step
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, chars])


_COUNTING: list[npt.NDArray[np.int32]] = []


def _counting(n: int) -> npt.NDArray[np.int32]:
    """0, 1, ..., n - 1 as int32, from one array kept (and grown) for the process: a row
    group's worth of offsets, four bytes a row."""
    if not _COUNTING or len(_COUNTING[0]) < n:
        _COUNTING[:] = [np.arange(max(n, 1 << 20), dtype=np.int32)]
    return _COUNTING[0][:n]


def key_runs(column: pa.DictionaryArray) -> list[tuple[str | None, int, int]]:
    """(key, start, stop) of each run of equal keys of a dictionary-encoded column, in
    row order (two codes of one value are one run; a null key is None). Rows sorted by
    key (docs/CONTRACT.md §6.4) make a key one run per row group, found from the codes
    alone, never by comparing strings per row."""
    if len(column) == 0:
        return []
    names = column.dictionary.to_pylist()
    encoded = pc.run_end_encode(column.indices)
    runs: list[tuple[str | None, int, int]] = []
    start = 0
    for stop, code in zip(encoded.run_ends.to_pylist(), encoded.values.to_pylist(), strict=True):
        key = None if code is None else names[code]
        if runs and runs[-1][0] == key and runs[-1][2] == start:
            runs[-1] = (key, runs[-1][1], stop)
        else:
            runs.append((key, start, stop))
        start = stop
    return runs
