"""The partition's files: flat layout of numbered part files, exact schemas, not-null
columns, and reading the rows in batches of the contract's columns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tileindex.layout import is_part_name, part_name
from tileindex.validate.findings import E010, Checks, column_code

BATCH_ROWS = 1 << 18


def check_layout(c: Checks, folder: Path, name: str) -> list[Path]:
    """Part files in ASCII order; anything else in the partition is a finding."""
    c.ran(f"{name} layout", E010)
    if not folder.is_dir():
        c.fail(f"{name} layout", E010, f"{name} partition {folder} is missing")
        return []
    files = []
    for entry in sorted(os.listdir(folder), key=lambda s: s.encode()):
        path = folder / entry
        if path.is_dir():
            c.fail(f"{name} layout", E010, f"{name}: nested folder {entry}/ (files are flat)")
        elif not is_part_name(entry) or path.is_symlink() or not path.is_file():
            c.fail(f"{name} layout", E010, f"{name}: stray entry {entry!r} in the partition")
        else:
            files.append(path)
    if not files:
        c.fail(f"{name} layout", E010, f"{name}: no part files in {folder}")
    if [p.name for p in files] != [part_name(i) for i in range(len(files))]:
        c.fail(
            f"{name} layout",
            E010,
            f"{name}: part files are not numbered 0..{len(files) - 1}: "
            f"{[p.name for p in files][:5]}",
        )
    return files


def check_schemas(c: Checks, files: list[Path], schema: pa.Schema, name: str) -> bool:
    """Exact schema per file; returns whether every file can be read as the contract."""
    usable = True
    c.ran(f"{name} schema", E010)
    for path in files:
        try:
            got = pq.read_schema(path).remove_metadata()
        except (pa.ArrowException, OSError) as exc:
            c.fail(f"{name} schema", E010, f"{name}/{path.name}: not readable parquet ({exc})")
            usable = False
            continue
        if got.equals(schema):
            continue
        names = got.names
        if names != schema.names:
            first = next(
                (i for i, n in enumerate(schema.names) if i >= len(names) or names[i] != n),
                len(schema.names) - 1,
            )
            code = column_code(schema.names[first])
            c.fail(
                f"{name} schema",
                code,
                f"{name}/{path.name}: columns {names} are not, in order, {schema.names}",
            )
        for fld in schema:
            if fld.name not in names:
                usable = False
                continue
            other = got.field(fld.name)
            code = column_code(fld.name)
            if not other.type.equals(fld.type):
                c.fail(
                    f"{name} schema",
                    code,
                    f"{name}/{path.name}: column {fld.name} is {other.type}, not {fld.type}",
                )
                if not _castable(other.type, fld.type):
                    usable = False
            if other.nullable != fld.nullable:
                c.fail(
                    f"{name} schema",
                    code,
                    f"{name}/{path.name}: column {fld.name} is declared nullable; the "
                    "contract says not null",
                )
    return usable


def check_nulls(c: Checks, batch: pa.RecordBatch, dataset: str) -> None:
    for i, name in enumerate(batch.schema.names):
        nulls = batch.column(i).null_count
        if nulls:
            c.fail(
                f"{dataset}.{name} not null",
                column_code(name),
                f"{dataset}.{name}: {nulls} null value(s); the contract says not null",
                count=nulls,
            )


def batches(files: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Batches with the contract's columns in order; strings stay dictionary-encoded
    (decoding them dominates the read otherwise)."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    for path in files:
        with pq.ParquetFile(path, read_dictionary=strings) as pf:
            for batch in pf.iter_batches(
                batch_size=BATCH_ROWS, columns=schema.names, use_threads=True
            ):
                arrays = []
                for f in schema:
                    arr = batch.column(f.name)
                    if f.name in strings:
                        if not pa.types.is_dictionary(arr.type):
                            arr = pc.dictionary_encode(arr.cast(pa.string()))
                    elif not arr.type.equals(f.type):
                        arr = arr.cast(f.type)
                    arrays.append(arr)
                yield pa.RecordBatch.from_arrays(arrays, names=schema.names)


class Cursor:
    """Row slices of a stream of record batches, of any requested length."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._it = batches
        self._cur: pa.RecordBatch | None = None
        self._off = 0

    def available(self) -> int:
        while self._cur is None or self._off >= self._cur.num_rows:
            self._cur = next(self._it, None)
            self._off = 0
            if self._cur is None:
                return 0
        return self._cur.num_rows - self._off

    def take(self, n: int) -> pa.RecordBatch:
        assert self._cur is not None
        out = self._cur.slice(self._off, n)
        self._off += n
        return out


def to_numpy(arr: pa.Array, fill: Any) -> npt.NDArray[Any]:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    try:
        pa.array([], type=src).cast(dst)
    except (pa.ArrowException, NotImplementedError):
        return False
    return True
