"""The region geometry a build used, kept beside its run report (docs/CONTRACT.md §10.4).

A published index is self-contained for point lookups and sampling: the build writes the
geometry G of every key after §4 (rows unioned, cut at ±180 and shifted into range) as a
GeoParquet file — columns ``<key column>`` (string) and ``geom`` (WKB), one row per key
that has geometry, in the keys' UTF-8 byte order — and records its path (relative to the
output root) and SHA-256 in the run report as ``region_geometry``. The bytes depend only
on the geometry, so identical builds write identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from tileindex.contract import sort_keys
from tileindex.errors import InputFileError
from tileindex.fsio import sha256_file, write_atomic
from tileindex.geometry import CountryGeometry

__all__ = ["read_region_geometry", "write_region_geometry"]

_WRITER = {"compression": "zstd", "compression_level": 3, "write_statistics": False}


def write_region_geometry(
    path: Path, key_column: str, geometries: Mapping[str, CountryGeometry | None]
) -> str:
    """Write the keys' geometry to ``path`` atomically; returns the file's SHA-256."""
    keys = [k for k in sort_keys(geometries) if geometries[k] is not None]
    wkb = shapely.to_wkb(
        [geometries[k].geom for k in keys],  # type: ignore[union-attr]
        output_dimension=2,
        byte_order=1,
        flavor="iso",
    )
    types = sorted({geometries[k].geom.geom_type for k in keys})  # type: ignore[union-attr]
    geo = {
        "version": "1.0.0",
        "primary_column": "geom",
        # no "crs": GeoParquet's default, OGC:CRS84 (lon/lat on WGS84), docs/CONTRACT.md §2
        "columns": {"geom": {"encoding": "WKB", "geometry_types": types}},
    }
    schema = pa.schema(
        [pa.field(key_column, pa.string(), nullable=False), pa.field("geom", pa.binary())],
        metadata={b"geo": json.dumps(geo, sort_keys=True).encode()},
    )
    table = pa.table([pa.array(keys, pa.string()), pa.array(list(wkb), pa.binary())], schema)

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp, row_group_size=max(table.num_rows, 1), **_WRITER)

    write_atomic(path, write)
    return sha256_file(path)


def read_region_geometry(
    path: Path, key_column: str, sha256_hex: str | None = None
) -> dict[str, BaseGeometry]:
    """The geometry per key, checked against the digest the run report recorded."""
    if not path.is_file():
        raise InputFileError(
            f"region geometry {path} is missing; the index was published without it "
            "(rebuild it with this version of tileindex to look points up or sample)"
        )
    if sha256_hex is not None and sha256_file(path) != sha256_hex:
        raise InputFileError(
            f"region geometry {path} does not match the digest in the run report; the file "
            "was changed after the build: rebuild the index"
        )
    table = pq.read_table(path)
    keys = table.column(key_column).to_pylist()
    geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
    return dict(zip(keys, geoms, strict=True))
