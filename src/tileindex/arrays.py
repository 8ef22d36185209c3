"""NumPy arrays to and from Arrow arrays by their buffers.

pyarrow imports pandas (about 0.6 s) on its first conversion between NumPy and Arrow
(``pa.array(ndarray)``, ``Array.to_numpy``), to check whether the object is a pandas
one. A worker process of ``tileindex values`` does nothing with pandas, so it reads and
makes the fixed-width columns it needs here: views of the buffers, no copy either way;
small tables of Python values (``region_values``) are built here too, for the same
reason (``pa.array`` of a list checks for pandas first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["from_numpy", "strings", "table", "to_numpy"]


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
