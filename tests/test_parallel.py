"""Parallel builds: the same bytes for any worker count, executor, chunk size and
part layout; plans in a deterministic order; telemetry per unit and per part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from tileindex.errors import ConfigError, GeometryInvalidError
from tileindex.executors import SerialExecutor, get_executor
from tileindex.grid import Window
from tileindex.pipeline import build
from tileindex.plan import (
    MAX_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    PAIR_BUDGET,
    ChunkShape,
    adaptive_chunk,
    execution_order,
    plan_parts,
    plan_units,
)
from tileindex.shards import DatasetWriter

from factories import make_inputs

GRID = (0.25, 0.0, -180.125, 0.0, -0.25, 60.0)
COUNTRIES = {
    "AA": [
        shapely.Polygon(
            [(0, 0), (30, 2), (28, 25), (1, 20)], [[(10, 5), (10, 10), (15, 10), (15, 5)]]
        )
    ],
    "BB": [shapely.box(10, 5, 15, 10)],
    "FJ": [shapely.Polygon([(175, -20), (184.5, -20), (184.5, -12.3), (175, -12.3)])],
    "RU": [
        shapely.Polygon([(30, 40), (180, 40), (180, 58), (30, 55)]),
        shapely.Polygon([(-180, 50), (-170, 50), (-170, 58), (-180, 58)]),
    ],
}
LAYOUT = {"rows_per_row_group": 500, "row_groups_per_file": 3}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("parallel")
    return make_inputs(folder, COUNTRIES, ncols=1440, nrows=400, transform=GRID)


@pytest.fixture(scope="module")
def serial(inputs, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serial")
    return build(*inputs, out, predicate="any_overlap", workers=1, chunk_size=97, **LAYOUT)


def _files(partition: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(partition.iterdir())}


@pytest.mark.parametrize(("workers", "chunk_size"), [(2, 64), (3, 1024), (2, "auto")])
def test_process_pool_publishes_the_serial_bytes(
    inputs, serial, tmp_path: Path, workers, chunk_size
) -> None:
    result = build(
        *inputs, tmp_path, predicate="any_overlap", workers=workers, chunk_size=chunk_size, **LAYOUT
    )
    assert result.report.pat.workers_used == workers
    assert len(_files(result.paths["tile_index"])) > 3  # several parts, several row groups
    for key in ("tile_index", "tile_bounds"):
        assert _files(result.paths[key]) == _files(serial.paths[key])
    assert (
        result.report.determinism_receipt["sha256_hex"]
        == serial.report.determinism_receipt["sha256_hex"]
    )
    assert result.summaries == serial.summaries


def test_parts_equal_one_streaming_writer(serial, tmp_path: Path) -> None:
    index = pq.read_table(serial.paths["tile_index"])
    bounds = pq.read_table(serial.paths["tile_bounds"])
    with DatasetWriter(tmp_path / "stream", **LAYOUT) as writer:
        for a, b in zip(
            index.to_batches(max_chunksize=777), bounds.to_batches(max_chunksize=777), strict=True
        ):
            writer.write(a, b)
    assert _files(tmp_path / "stream" / "tile_index") == _files(serial.paths["tile_index"])
    assert _files(tmp_path / "stream" / "tile_bounds") == _files(serial.paths["tile_bounds"])


def test_every_part_but_the_last_is_full(serial) -> None:
    files = sorted(serial.paths["tile_index"].iterdir())
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert all(n == 1500 for n in sizes[:-1]) and 0 < sizes[-1] <= 1500
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in files]
    assert all(g == 3 for g in groups[:-1])


def test_event_log_has_units_parts_and_merge(serial) -> None:
    events = [json.loads(line) for line in serial.paths["event_log"].read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"S1_UNIT", "S1_SHARD_FLUSH", "S1_MERGE"} <= kinds
    units = [e for e in events if e["event"] == "S1_UNIT"]
    assert sum(e["cells_included"] for e in units) == serial.rows_emitted
    assert all(e["worker"].startswith("pid") for e in units)
    parts = [e for e in events if e["event"] == "S1_SHARD_FLUSH"]
    assert sum(e["rows"] for e in parts) == serial.rows_emitted


def test_units_split_large_countries_in_row_order() -> None:
    windows = {"RU": [Window(0, 3000, 0, 40000)], "AA": [Window(10, 20, 5, 9)], "ZZ": []}
    units = plan_units(windows, 100, unit_cells=8_000_000)
    assert [u.country_iso for u in units][:1] == ["AA"]
    ru = [u for u in units if u.country_iso == "RU"]
    assert len(ru) == 15 and all(u.row_stop - u.row_start == 200 for u in ru)
    assert [u.unit_id for u in units] == list(range(len(units)))
    assert [u.row_start for u in ru] == sorted(u.row_start for u in ru)
    heavy = execution_order(units)
    assert heavy[0].country_iso == "RU" and heavy[-1].country_iso == "AA"


def test_adaptive_chunks_span_the_width_and_follow_the_boundary_density() -> None:
    windows = [Window(0, 2000, 0, 30000), Window(0, 2000, 40000, 43000)]
    few = adaptive_chunk(windows, np.zeros(10), np.full(10, 0.5), -0.01)
    assert few == ChunkShape(rows=MAX_CHUNK_ROWS, cols=30000)
    # a million segments, each spanning ~11 rows: the chunk shrinks to keep the budget
    many = adaptive_chunk(windows, np.zeros(1_000_000), np.full(1_000_000, 0.1), -0.01)
    per_row = 1_000_000 * 11 / 2000
    assert many.rows == max(MIN_CHUNK_ROWS, int(PAIR_BUDGET / per_row))
    assert MIN_CHUNK_ROWS <= many.rows < few.rows


def test_units_cover_windows_with_different_rows_and_skip_the_gaps() -> None:
    windows = {"FR": [Window(0, 100, 0, 50), Window(500, 520, 900, 960)]}
    units = plan_units(windows, 64, unit_cells=10_000)
    covered = sorted(
        (r, c)
        for u in units
        for w in u.windows
        for r in range(w.row_start, w.row_stop)
        for c in range(w.col_start, w.col_stop)
    )
    expected = sorted(
        (r, c)
        for w in windows["FR"]
        for r in range(w.row_start, w.row_stop)
        for c in range(w.col_start, w.col_stop)
    )
    assert covered == expected  # every cell once
    assert all(
        u.row_start <= w.row_start and w.row_stop <= u.row_stop for u in units for w in u.windows
    )
    # blocks of 64 rows from row 0: 0-64, 64-128, then 448-512, 512-520; the empty blocks
    # between the two windows (128-448) are skipped
    assert [u.row_start for u in units] == [0, 64, 448, 512] and all(u.windows for u in units)


def test_part_plan_covers_the_rows_exactly() -> None:
    assert [(t.row_start, t.row_stop) for t in plan_parts(10, 4)] == [(0, 4), (4, 8), (8, 10)]
    assert [(t.row_start, t.row_stop) for t in plan_parts(0, 4)] == [(0, 0)]


def test_executor_names_and_worker_counts() -> None:
    pool, n = get_executor(None, 1)
    assert isinstance(pool, SerialExecutor) and n == 1
    with pytest.raises(ConfigError, match="serial, process"):
        get_executor("threads", 2)
    with pytest.raises(ConfigError, match="positive"):
        get_executor(None, 0)


def test_a_failing_unit_fails_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    inputs = make_inputs(tmp_path, {"AA": [shapely.box(0, 0, 1, 1)], "BO": [bowtie]})
    with pytest.raises(GeometryInvalidError, match="E001_GEO_INVALID: country BO") as info:
        build(*inputs, tmp_path / "out", workers=2)
    assert "Self-intersection" in str(info.value) and info.value.context["country_iso"] == "BO"
    assert not (tmp_path / "out" / "data").exists()
