"""shards: the deterministic DatasetWriter and the atomic write-once publish."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tileindex import shards
from tileindex.contract import TILE_BOUNDS_SCHEMA, TILE_INDEX_SCHEMA, determinism_receipt
from tileindex.errors import ImmutablePartitionError
from tileindex.grid import Grid, Runs
from tileindex.layout import DATASETS
from tileindex.rows import iter_batches
from tileindex.shards import (
    STAGING_DIRNAME,
    DatasetWriter,
    PublishOutcome,
    cleanup_stale_staging,
    publish_partition,
    publish_partitions,
    staging_dir,
)

GRID = Grid.from_transform(80, 30, (4.5, 0, -180.0, 0, -6.0, 90.0))
HASH = "ab" * 32


def _stream(countries=("AD", "FJ", "RU")) -> tuple[pa.Table, pa.Table]:
    """A few countries' worth of rows, in global (country_iso, tile_id) order."""
    index, bounds = [], []
    for k, iso in enumerate(countries):
        # two runs per row
        r = np.arange(k, 30, dtype=np.int64)
        a0 = (r * 7 + k) % 17
        a1 = a0 + 10 + (r % 29)
        b0 = a1 + 2
        b1 = b0 + 1 + (r % 5)
        rows = np.repeat(r, 2)
        col0 = np.stack([a0, b0], axis=1).ravel()
        col1 = np.stack([a1, b1], axis=1).ravel()
        for i, b in iter_batches(GRID, iso, "center", Runs.of(rows, col0, col1)):
            index.append(i)
            bounds.append(b)
    return (
        pa.Table.from_batches(index, schema=TILE_INDEX_SCHEMA),
        pa.Table.from_batches(bounds, schema=TILE_BOUNDS_SCHEMA),
    )


INDEX, BOUNDS = _stream()
N = INDEX.num_rows


def _pieces(table: pa.Table, sizes: list[int]) -> list[pa.RecordBatch]:
    out, offset, k = [], 0, 0
    while offset < table.num_rows:
        size = sizes[k % len(sizes)]
        out.extend(table.slice(offset, size).to_batches())
        offset += size
        k += 1
    return out


def _write(staging: Path, sizes: list[int] | None, rpg: int = 100, per_file: int = 3):
    if sizes is None:
        pairs = [(INDEX.combine_chunks().to_batches()[0], BOUNDS.combine_chunks().to_batches()[0])]
    else:
        pairs = list(zip(_pieces(INDEX, sizes), _pieces(BOUNDS, sizes), strict=True))
    with DatasetWriter(staging, rows_per_row_group=rpg, row_groups_per_file=per_file) as w:
        for i, b in pairs:
            w.write(i, b)
    return w


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _read_in_ascii_order(folder: Path) -> pa.Table:
    names = sorted(os.listdir(folder), key=lambda s: s.encode("ascii"))
    return pa.concat_tables(pq.read_table(folder / n) for n in names)


# -- writer ---------------------------------------------------------------------------


def test_stream_fixture_is_big_enough():
    assert N > 1000  # several files at 100 rows x 3 groups


@pytest.mark.parametrize("sizes", [[1, 7, 1000, 13, 2, 99, 101], [300], [1], [N]])
def test_bytes_do_not_depend_on_batch_sizes(tmp_path, sizes):
    one = _write(tmp_path / "one", None)
    many = _write(tmp_path / "many", sizes)
    for name in DATASETS:
        assert _snapshot(one.folder(name)) == _snapshot(many.folder(name))
    assert one.bytes_written == many.bytes_written > 0
    assert one.rows_written == many.rows_written == N


def test_layout_is_fixed_row_groups_and_files(tmp_path):
    w = _write(tmp_path / "s", [7, 1, 1000])
    for name in DATASETS:
        files = w.files[name]
        assert [p.name for p in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
        assert len(files) == -(-N // 300)
        groups = []
        for p in files:
            md = pq.ParquetFile(p).metadata
            groups.append([md.row_group(g).num_rows for g in range(md.num_row_groups)])
            assert md.num_rows == sum(groups[-1])
        flat = [n for g in groups for n in g]
        assert all(n == 100 for n in flat[:-1]) and 0 < flat[-1] <= 100
        assert all(len(g) == 3 for g in groups[:-1])
        assert sorted(os.listdir(w.folder(name))) == [p.name for p in files]


def test_files_in_ascii_order_give_the_rows_in_order(tmp_path):
    w = _write(tmp_path / "s", [13], rpg=7, per_file=2)  # > 10 files: part-00010 sorts last
    assert len(w.files["tile_index"]) > 10
    assert _read_in_ascii_order(w.folder("tile_index")).equals(INDEX)
    assert _read_in_ascii_order(w.folder("tile_bounds")).equals(BOUNDS)
    read = pq.read_table(w.folder("tile_index"))
    assert read.schema.equals(TILE_INDEX_SCHEMA)
    assert read.equals(INDEX)


def test_exact_multiple_leaves_no_empty_trailing_file(tmp_path):
    table_i, table_b = INDEX.slice(0, 600), BOUNDS.slice(0, 600)
    with DatasetWriter(tmp_path / "s", rows_per_row_group=100, row_groups_per_file=3) as w:
        for i, b in zip(table_i.to_batches(), table_b.to_batches(), strict=True):
            w.write(i, b)
    assert [p.name for p in w.files["tile_index"]] == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.ParquetFile(w.files["tile_index"][1]).metadata.num_rows == 300


def test_empty_result_is_a_readable_dataset(tmp_path):
    empty = [
        pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
        for schema in (TILE_INDEX_SCHEMA, TILE_BOUNDS_SCHEMA)
    ]
    with DatasetWriter(tmp_path / "s") as w:
        w.write(*empty)
    assert w.rows_written == 0
    for name, schema in (("tile_index", TILE_INDEX_SCHEMA), ("tile_bounds", TILE_BOUNDS_SCHEMA)):
        assert [p.name for p in w.files[name]] == ["part-00000.parquet"]
        table = pq.read_table(w.folder(name))
        assert table.num_rows == 0
        assert table.schema.equals(schema)
        assert pq.read_schema(w.files[name][0]).equals(schema)
    with DatasetWriter(tmp_path / "t") as never_written:
        pass
    assert _snapshot(never_written.folder("tile_index")) == _snapshot(w.folder("tile_index"))


def test_parquet_settings_are_applied(tmp_path):
    w = _write(tmp_path / "s", None)
    md = pq.ParquetFile(w.files["tile_index"][0]).metadata
    rg = md.row_group(0)
    enc = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert all(c.compression == "ZSTD" for c in enc.values())
    assert "DELTA_BINARY_PACKED" in enc["tile_id"].encodings
    assert "DELTA_BINARY_PACKED" in enc["raster_col"].encodings
    assert "BYTE_STREAM_SPLIT" in enc["centroid_lon"].encodings
    assert enc["country_iso"].has_dictionary_page
    assert enc["centroid_lat"].has_dictionary_page
    assert not enc["tile_id"].has_dictionary_page
    assert enc["tile_id"].statistics.has_min_max
    assert [(s.column_index, s.descending) for s in rg.sorting_columns] == [(0, False), (1, False)]
    bmd = pq.ParquetFile(w.files["tile_bounds"][0]).metadata.row_group(0)
    benc = {bmd.column(i).path_in_schema: bmd.column(i) for i in range(bmd.num_columns)}
    assert "BYTE_STREAM_SPLIT" in benc["min_lon_deg"].encodings
    assert benc["max_lat_deg"].has_dictionary_page


def test_mismatched_or_wrong_batches_are_refused(tmp_path):
    i, b = INDEX.slice(0, 10).to_batches()[0], BOUNDS.slice(0, 10).to_batches()[0]
    with DatasetWriter(tmp_path / "s") as w:
        with pytest.raises(ValueError, match="same keys"):
            w.write(i, b.slice(1))
        with pytest.raises(ValueError, match="TILE_BOUNDS_SCHEMA"):
            w.write(i, i)
        with pytest.raises(ValueError, match="TILE_INDEX_SCHEMA"):
            w.write(b, b)
    with pytest.raises(ValueError, match="closed"):
        w.write(i, b)
    with pytest.raises(ValueError, match="rows_per_row_group"):
        DatasetWriter(tmp_path / "u", rows_per_row_group=0)
    with pytest.raises(ValueError, match="rows_per_row_group"):
        DatasetWriter(tmp_path / "v", rows_per_row_group=(64 << 20) + 1)
    with pytest.raises(ValueError, match="row_groups_per_file"):
        DatasetWriter(tmp_path / "w", row_groups_per_file=0)


def test_error_inside_the_writer_closes_files(tmp_path):
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "s", rows_per_row_group=3) as w:
        w.write(INDEX.slice(0, 10).to_batches()[0], BOUNDS.slice(0, 10).to_batches()[0])
        raise RuntimeError("boom")
    assert all(part.writer is None for part in w._parts.values())


# -- staging and publishing -----------------------------------------------------------


def _staged(root: Path, sizes=None) -> tuple[Path, DatasetWriter]:
    staging = staging_dir(root, HASH)
    w = _write(staging, sizes)
    return staging, w


def test_staging_dir_is_unique_and_under_the_root(tmp_path):
    a, b = staging_dir(tmp_path, HASH), staging_dir(tmp_path, HASH)
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == tmp_path / STAGING_DIRNAME
    h, pid, rand = a.name.split(".")
    assert h == HASH and pid == str(os.getpid()) and len(rand) == 12


def test_publish_fresh_then_identical(tmp_path):
    final = tmp_path / "data" / "tile_index" / f"parameter_hash={HASH}"
    staging, _ = _staged(tmp_path)
    assert publish_partition(staging / "tile_index", final) == PublishOutcome.PUBLISHED
    assert not (staging / "tile_index").exists()
    before = _snapshot(final)
    mtimes = {p: p.stat().st_mtime_ns for p in final.iterdir()}
    receipt = determinism_receipt(final, "p/")

    staging2, _ = _staged(tmp_path, sizes=[1, 7, 1000])
    assert publish_partition(staging2 / "tile_index", final) == "identical"
    assert not (staging2 / "tile_index").exists()
    assert _snapshot(final) == before
    assert {p: p.stat().st_mtime_ns for p in final.iterdir()} == mtimes
    assert determinism_receipt(final, "p/") == receipt


def test_publish_different_is_e010_and_leaves_the_partition(tmp_path):
    final = tmp_path / "out" / f"parameter_hash={HASH}"
    staging, _ = _staged(tmp_path)
    publish_partition(staging / "tile_index", final)
    before = _snapshot(final)

    other = staging_dir(tmp_path, HASH)
    with DatasetWriter(other, rows_per_row_group=100, row_groups_per_file=3) as w:
        w.write(INDEX.slice(0, 50).to_batches()[0], BOUNDS.slice(0, 50).to_batches()[0])
    with pytest.raises(ImmutablePartitionError) as info:
        publish_partition(other / "tile_index", final)
    assert info.value.code == "E010_IMMUTABLE_PARTITION"
    assert str(final) in str(info.value)
    assert isinstance(info.value, FileExistsError)
    assert _snapshot(final) == before
    assert not (other / "tile_index").exists()


def test_publish_same_names_one_byte_different_is_e010(tmp_path):
    final = tmp_path / "out" / f"parameter_hash={HASH}"
    staging, _ = _staged(tmp_path)
    publish_partition(staging / "tile_index", final)
    staging2, w = _staged(tmp_path)
    victim = w.files["tile_index"][-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ImmutablePartitionError, match="differs"):
        publish_partition(staging2 / "tile_index", final)
    assert not (staging2 / "tile_index").exists()


def test_receipt_changes_when_a_byte_changes(tmp_path):
    _, w = _staged(tmp_path)
    folder = w.folder("tile_index")
    before = determinism_receipt(folder, "p/")["sha256_hex"]
    victim = w.files["tile_index"][0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    assert determinism_receipt(folder, "p/")["sha256_hex"] != before


def test_receipt_is_independent_of_batch_sizes(tmp_path):
    a = _write(tmp_path / "a", None).folder("tile_index")
    b = _write(tmp_path / "b", [3, 1, 250]).folder("tile_index")
    assert determinism_receipt(a, "p/")["sha256_hex"] == determinism_receipt(b, "p/")["sha256_hex"]


@pytest.mark.parametrize("identical", [True, False])
def test_publish_race_lost_is_compared(tmp_path, monkeypatch, identical):
    final = tmp_path / "out" / f"parameter_hash={HASH}"
    winner, _ = _staged(tmp_path)
    if not identical:
        shutil.rmtree(winner)
        with DatasetWriter(winner, rows_per_row_group=100, row_groups_per_file=3) as w:
            w.write(INDEX.slice(0, 9).to_batches()[0], BOUNDS.slice(0, 9).to_batches()[0])
    ours, _ = _staged(tmp_path)
    real_rename = os.rename

    def rename_after_the_other_process(src, dst):
        real_rename(winner / "tile_index", dst)  # the other process wins the race
        return real_rename(src, dst)

    monkeypatch.setattr(shards.os, "rename", rename_after_the_other_process)
    if identical:
        assert publish_partition(ours / "tile_index", final) == PublishOutcome.IDENTICAL
    else:
        with pytest.raises(ImmutablePartitionError):
            publish_partition(ours / "tile_index", final)
    assert not (ours / "tile_index").exists()
    assert final.is_dir()


def test_publish_other_rename_errors_propagate(tmp_path, monkeypatch):
    staging, _ = _staged(tmp_path)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(shards.os, "rename", cross_device)
    final = tmp_path / "out" / "p"
    with pytest.raises(OSError) as info:
        publish_partition(staging / "tile_index", final)
    assert info.value.errno == errno.EXDEV
    assert not final.exists()
    assert not (staging / "tile_index").exists()


def test_publish_onto_a_file_or_empty_folder_is_e010(tmp_path):
    staging, _ = _staged(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImmutablePartitionError, match="not a folder"):
        publish_partition(staging / "tile_index", tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImmutablePartitionError):
        publish_partition(staging / "tile_bounds", tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []


def test_publish_missing_staged_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        publish_partition(tmp_path / "nope", tmp_path / "final")


def test_publish_partitions_checks_all_before_renaming(tmp_path):
    final_i, final_b = tmp_path / "i", tmp_path / "b"
    s1, _ = _staged(tmp_path)
    publish_partition(s1 / "tile_bounds", final_b)
    other = staging_dir(tmp_path, HASH)
    with DatasetWriter(other) as w:
        w.write(INDEX.slice(0, 5).to_batches()[0], BOUNDS.slice(0, 5).to_batches()[0])
    with pytest.raises(ImmutablePartitionError):
        publish_partitions([(other / "tile_index", final_i), (other / "tile_bounds", final_b)])
    assert not final_i.exists()
    assert not (other / "tile_index").exists() and not (other / "tile_bounds").exists()

    s2, _ = _staged(tmp_path)
    outcomes = publish_partitions([(s2 / "tile_index", final_i), (s2 / "tile_bounds", final_b)])
    assert outcomes == [PublishOutcome.PUBLISHED, PublishOutcome.IDENTICAL]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_cleanup_stale_staging(tmp_path):
    base = tmp_path / STAGING_DIRNAME
    dead = _dead_pid()
    old = base / f"{HASH}.{dead}.aaaaaaaaaaaa"
    fresh = base / f"{HASH}.{dead}.bbbbbbbbbbbb"
    mine = base / f"{HASH}.{os.getpid()}.cccccccccccc"
    for d in (old, fresh, mine):
        (d / "tile_index").mkdir(parents=True)
        (d / "tile_index" / "part-00000.parquet").write_bytes(b"x")
    past = time.time() - 7200
    for d in (old, mine):
        for p in [*d.rglob("*"), d]:
            os.utime(p, (past, past))
    assert cleanup_stale_staging(tmp_path, older_than_s=3600) == [old]
    assert not old.exists() and fresh.exists() and mine.exists()
    assert cleanup_stale_staging(tmp_path / "nothing-here", 0) == []
