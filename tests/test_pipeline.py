"""End-to-end builds through the Python API: outputs, identity, determinism, publishing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from tileindex import kernel, tasks
from tileindex.contract import (
    PAT_COUNTERS,
    REPORT_FIELDS,
    TILE_BOUNDS_SCHEMA,
    TILE_INDEX_SCHEMA,
)
from tileindex.errors import (
    ConfigError,
    DuplicateTileError,
    GeometryInvalidError,
    ImmutablePartitionError,
    InclusionRuleError,
)
from tileindex.grid import ChunkMask, Runs
from tileindex.pipeline import build

from factories import SMALL_WORLD_GRID, make_inputs

NCOLS, NROWS = SMALL_WORLD_GRID.ncols, SMALL_WORLD_GRID.nrows


@pytest.fixture(scope="module")
def inputs(small_world: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    return small_world  # factories' small world: an enclave, a sliver, a country across 180


def _read(partition: Path):
    files = sorted(p.name for p in partition.iterdir())
    assert all(not (partition / f).is_dir() for f in files)
    return (
        pq.read_table([partition / f for f in files])
        if len(files) > 1
        else pq.read_table(partition / files[0])
    )


@pytest.mark.parametrize("predicate", ["center", "any_overlap"])
def test_outputs_follow_the_contract(inputs, tmp_path: Path, predicate: str) -> None:
    result = build(*inputs, tmp_path, predicate=predicate)
    index = _read(result.paths["tile_index"])
    bounds = _read(result.paths["tile_bounds"])
    assert index.schema.remove_metadata() == TILE_INDEX_SCHEMA
    assert bounds.schema.remove_metadata() == TILE_BOUNDS_SCHEMA
    keys = list(zip(index["country_iso"].to_pylist(), index["tile_id"].to_pylist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert keys == list(
        zip(bounds["country_iso"].to_pylist(), bounds["tile_id"].to_pylist(), strict=True)
    )
    tid = index["tile_id"].to_numpy()
    assert (
        tid
        == index["raster_row"].to_numpy().astype(np.uint64) * NCOLS + index["raster_col"].to_numpy()
    ).all()
    assert set(index["inclusion_rule"].to_pylist()) == {predicate}
    assert (index["pixel_area_m2"].to_numpy() > 0).all()
    lon = index["centroid_lon"].to_numpy()
    assert ((lon >= -180) & (lon <= 180)).all()
    assert result.rows_emitted == index.num_rows

    report = json.loads(result.paths["run_report"].read_text())
    assert set(report) >= set(REPORT_FIELDS)
    assert set(report["pat"]) >= set(PAT_COUNTERS)
    assert report["grid_dims"] == {"nrows": NROWS, "ncols": NCOLS}
    assert report["rows_emitted"] == index.num_rows
    assert report["pat"]["max_worker_rss_bytes"] > 0

    summaries = [json.loads(x) for x in result.paths["country_summaries"].read_text().splitlines()]
    assert [s["country_iso"] for s in summaries] == ["AA", "BB", "CC", "FJ", "ZZ"]
    codes = index["country_iso"].to_numpy(zero_copy_only=False)
    for s in summaries:
        mine = tid[codes == s["country_iso"]]
        assert s["cells_included"] == mine.size
        assert (
            s["cells_visited"]
            == s["cells_included"] + s["cells_excluded_outside"] + s["cells_excluded_hole"]
        )
        assert s["tile_id_min"] == (int(mine.min()) if mine.size else None)
        assert s["tile_id_max"] == (int(mine.max()) if mine.size else None)


def test_enclave_cells_go_to_the_enclave_only(inputs, tmp_path: Path) -> None:
    result = build(*inputs, tmp_path)
    index = _read(result.paths["tile_index"])
    codes = np.array(index["country_iso"].to_pylist())
    aa = set(index["tile_id"].to_numpy()[codes == "AA"].tolist())
    bb = set(index["tile_id"].to_numpy()[codes == "BB"].tolist())
    assert bb and not (aa & bb)
    # centres sit at x = -180 + 0.5*col and y = 59.75 - 0.5*row: in 10..15 x 5..10 that is
    # 11 columns (x = 10, 10.5, ..., 15; both edges are centres on the enclave outline,
    # inclusive for the enclave, exclusive for the host's hole) by 10 rows (5.25 .. 9.75)
    assert len(bb) == 110
    summary = {s.country_iso: s for s in result.summaries}
    assert summary["AA"].cells_excluded_hole == 110


def test_dateline_country_has_cells_on_both_sides(inputs, tmp_path: Path) -> None:
    result = build(*inputs, tmp_path, predicate="any_overlap")
    bounds = _read(result.paths["tile_bounds"])
    codes = np.array(bounds["country_iso"].to_pylist())
    lon = bounds["centroid_lon_deg"].to_numpy()[codes == "FJ"]
    assert (lon > 170).any() and (lon < -170).any()
    # column 0 spans -180.25..-179.75: its sliver west of -180 wraps next to +180
    mn = bounds["min_lon_deg"].to_numpy()[codes == "FJ"]
    mx = bounds["max_lon_deg"].to_numpy()[codes == "FJ"]
    straddling = mn > mx
    assert straddling.any()
    assert np.allclose(mn[straddling], 179.75) and np.allclose(mx[straddling], -179.75)


def test_bytes_do_not_depend_on_chunk_size_and_reruns_are_identical(inputs, tmp_path: Path) -> None:
    receipts = set()
    for size in (64, 257, 1024):
        result = build(*inputs, tmp_path / f"c{size}", chunk_size=size, predicate="any_overlap")
        receipts.add(result.report.determinism_receipt["sha256_hex"])
    assert len(receipts) == 1
    again = build(*inputs, tmp_path / "c64", chunk_size=64, predicate="any_overlap")
    assert again.outcome == "identical"
    assert again.report.determinism_receipt["sha256_hex"] in receipts


def test_legacy_engine_publishes_the_same_bytes(tmp_path: Path) -> None:
    small = {
        "AA": [
            shapely.Polygon([(-5, -5), (5, -4), (6, 6), (-4, 5)], [[(-1, -1), (1, -1), (0, 1)]])
        ],
        "FJ": [shapely.Polygon([(178, -3), (181.5, -3), (181.5, 2), (178, 2)])],
    }
    inputs = make_inputs(
        tmp_path, small, ncols=360, nrows=20, transform=(1.0, 0, -180.5, 0, -1.0, 10.0)
    )
    for predicate in ("center", "any_overlap"):
        fast = build(*inputs, tmp_path / f"fast-{predicate}", predicate=predicate)
        slow = build(*inputs, tmp_path / f"slow-{predicate}", predicate=predicate, engine="legacy")
        assert fast.rows_emitted > 0
        assert (
            fast.report.determinism_receipt["sha256_hex"]
            == slow.report.determinism_receipt["sha256_hex"]
        )
        assert fast.summaries == slow.summaries


def test_a_different_result_at_the_same_identity_is_refused(inputs, tmp_path: Path) -> None:
    phash = "ab" * 32
    first = build(*inputs, tmp_path, parameter_hash=phash)
    files = {p: p.read_bytes() for p in first.paths["tile_index"].iterdir()}
    with pytest.raises(ImmutablePartitionError) as info:
        build(*inputs, tmp_path, parameter_hash=phash, predicate="any_overlap")
    assert info.value.code == "E010_IMMUTABLE_PARTITION"
    assert {p: p.read_bytes() for p in first.paths["tile_index"].iterdir()} == files
    events = first.paths["event_log"].read_text().splitlines()
    assert json.loads(events[-1])["code"] == "E010_IMMUTABLE_PARTITION"
    assert not any((tmp_path / ".tileindex-staging").iterdir())


def test_invalid_geometry_fails_with_the_geos_reason_and_publishes_nothing(tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    inputs = make_inputs(tmp_path, {"AA": [bowtie]})
    with pytest.raises(GeometryInvalidError) as info:
        build(*inputs, tmp_path / "out")
    assert "AA" in str(info.value) and "Self-intersection" in str(info.value)
    assert not (tmp_path / "out" / "data").exists()


def test_an_engine_that_repeats_a_cell_fails_the_build_with_e003(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def repeats_its_first_run(grid, window, country, predicate) -> ChunkMask:
        mask = kernel.mask_chunk(grid, window, country, predicate)
        if not len(mask):
            return mask
        runs = Runs.concat([mask.take(slice(0, 1)), mask]).sorted()
        return ChunkMask.from_runs(window, runs, mask.cells_included, mask.cells_excluded_hole)

    monkeypatch.setitem(tasks.ENGINES, "fast", repeats_its_first_run)  # serial: in-process
    with pytest.raises(DuplicateTileError) as info:
        build(*inputs, tmp_path)
    assert info.value.code == "E003_DUP_TILE"
    assert info.value.context["country_iso"] == "AA"  # the first country with cells
    assert not (tmp_path / "data" / "layer1" / "1B" / "tile_index").exists()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"predicate": "centre"}, InclusionRuleError),
        ({"chunk_size": 0}, ConfigError),
        ({"parameter_hash": "ABC"}, ConfigError),
        ({"engine": "turbo"}, ConfigError),
        ({"rows_per_row_group": 0}, ConfigError),
        ({"row_groups_per_file": 0}, ConfigError),
    ],
)
def test_bad_options_are_refused_before_any_work(inputs, tmp_path: Path, kwargs, error) -> None:
    with pytest.raises(error):
        build(*inputs, tmp_path, **kwargs)
    assert not (tmp_path / "data").exists()


# timings and resource counters vary run to run; nothing else in the evidence may
_VARYING_PAT = {
    "wall_clock_seconds_total",
    "cpu_seconds_total",
    "max_worker_rss_bytes",
    "open_files_peak",
    "main_rss_peak_bytes",
    "temp_disk_worker_peak_bytes",
    "staging_bytes_total",
}


def test_evidence_does_not_depend_on_where_the_output_root_lives(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    a = build(*inputs, tmp_path / "absolute" / "out")  # an absolute root
    b = build(*inputs, Path("relative/deeper/out"))  # one relative to the working folder
    docs = []
    for result in (a, b):
        doc = json.loads(result.paths["run_report"].read_bytes())
        for key in ("started_at", "finished_at"):
            doc.pop(key)
        for key in _VARYING_PAT:
            doc["pat"].pop(key, None)
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["determinism_receipt"]["partition_path"] == (
        f"data/layer1/1B/tile_index/parameter_hash={a.parameter_hash}/"
    )
    assert "absolute" not in json.dumps(docs[0]) and "relative" not in json.dumps(docs[1])
    assert a.paths["country_summaries"].read_bytes() == b.paths["country_summaries"].read_bytes()


def test_a_partition_of_many_row_groups_gets_fewer_larger_files(inputs, tmp_path: Path) -> None:
    # 1-row row groups stand in for the billions of rows of a 3″ world: beyond 256 files
    # of 8 row groups, the files grow so there are about 256 of them (CONTRACT §6.5)
    result = build(*inputs, tmp_path / "out", rows_per_row_group=1, row_groups_per_file=None)
    rows = result.rows_emitted
    assert rows > 256 * 8, "the small world must be big enough to need larger files"
    per_file = -(-rows // 256)  # ceil: the contract's G for g = rows one-row groups
    files = sorted(result.paths["tile_index"].glob("part-*.parquet"))
    groups = [pq.ParquetFile(f).num_row_groups for f in files]
    assert groups[:-1] == [per_file] * (len(files) - 1)
    assert 1 <= groups[-1] <= per_file and sum(groups) == rows
    assert len(files) == -(-rows // per_file) <= 256
    # the units' runs went through the staging folder, not the coordinator's memory
    pat = result.report.pat
    assert 0 < pat.spill_bytes_total < pat.staging_bytes_total
    assert not any((tmp_path / "out").rglob("unit-*.npy"))
    # the default layout of the same rows: 8 row groups of 2^20 rows, i.e. one file
    default = build(*inputs, tmp_path / "default")
    assert len(list(default.paths["tile_index"].glob("part-*.parquet"))) == 1
