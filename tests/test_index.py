"""tileindex.open: a published index, read back (docs/CONTRACT.md §10.4-§10.5), and the
region geometry a build keeps beside its report."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tileindex
from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.geometry import country_geometry
from tileindex.index import _read_keys
from tileindex.pipeline import build

from factories import SMALL_WORLD_COUNTRIES, make_tiling


@pytest.fixture(scope="module")
def root(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "out"
    # small row groups and files, so a key's rows sit in a few of many row groups
    build(*small_world, out, rows_per_row_group=64, row_groups_per_file=4, coverage=True)
    return out


def _read_all(folder: Path) -> pa.Table:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_open_reads_the_report_keys_and_every_dataset(root: Path) -> None:
    index = tileindex.open(root)
    assert isinstance(index, tileindex.Index)
    assert index.key_column == "country_iso"
    assert index.keys == ("AA", "BB", "CC", "FJ", "ZZ")  # the ISO list, ZZ without rows
    assert index.datasets == ("tile_index", "tile_bounds", "tile_coverage")
    assert index.report["rows_emitted"] == index.dataset().count_rows()
    assert (index.grid.ncols, index.grid.nrows) == (720, 200)
    for name in index.datasets:
        folder = root / f"data/layer1/1B/{name}/parameter_hash={index.parameter_hash}"
        assert index.dataset(name).to_table().equals(_read_all(folder))


def test_to_table_of_some_keys_is_their_rows_in_order(root: Path) -> None:
    index = tileindex.open(root)
    everything = _read_all(index.path("tile_index"))
    for keys in ("FJ", ["AA", "CC"], ["BB"]):
        wanted = [keys] if isinstance(keys, str) else keys
        expect = everything.filter(pc.is_in(everything["country_iso"], pa.array(wanted)))
        got = index.to_table(keys)
        assert got.num_rows > 0 and got.equals(expect)
    assert index.to_table("ZZ").num_rows == 0  # visited, nothing included
    cov = index.to_table("BB", dataset="tile_coverage", columns=["tile_id", "coverage_fraction"])
    assert cov.column_names == ["tile_id", "coverage_fraction"]
    # BB, box(10, 5, 15, 10), on the grid's half-degree cells with edges at ...9.75, 10.25...
    # and 5, 5.5, ...: its west and east edges run through 10 rows of centroids (center:
    # included, each half covered), the 9 columns between are whole
    fractions = sorted(cov["coverage_fraction"].to_pylist())
    assert fractions == [0.5] * 20 + [1.0] * 90


def test_every_key_and_pairs_across_part_boundaries_read_like_a_dataset_filter(
    root: Path,
) -> None:
    # to_table(keys) bisects the parts by their key statistics and keeps rows by their
    # dictionary codes; a pyarrow dataset filter is the reference
    index = tileindex.open(root)
    data = index.dataset("tile_coverage")
    assert len(data.files) > 3
    keys = list(index.keys)
    for wanted in [[k] for k in keys] + [keys[::3], [keys[0], keys[-1]]]:
        expect = data.to_table(filter=pc.field("country_iso").isin(wanted))
        got = index.to_table(wanted, dataset="tile_coverage")
        assert got.schema.equals(expect.schema) and got.equals(expect), wanted
    only_ids = index.to_table(keys[1], columns=["tile_id"])
    assert only_ids.column_names == ["tile_id"]
    assert only_ids.num_rows == index.to_table(keys[1]).num_rows


def test_reading_a_key_in_a_fresh_process_does_not_import_pandas(root: Path) -> None:
    # pyarrow imports pandas (half a second) on its first NumPy conversion and with
    # pyarrow.dataset: a script that reads one country pays neither
    code = (
        "import sys, tileindex; index = tileindex.open(sys.argv[1]); "
        "print(index.to_table(['BB', 'FJ']).num_rows, index.to_table('ZZ').num_rows, "
        "'pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    rows = tileindex.open(root).to_table(["BB", "FJ"]).num_rows
    assert out.stdout.split() == [str(rows), "0", "False"]  # ZZ: a key without rows


def test_a_key_read_touches_only_the_row_groups_that_can_hold_it(root: Path) -> None:
    index = tileindex.open(root)
    data = index.dataset()
    groups = [rg for frag in data.get_fragments() for rg in frag.split_by_row_group()]
    kept = [
        rg
        for frag in data.get_fragments(filter=index._keys_filter("BB"))
        for rg in frag.split_by_row_group(filter=index._keys_filter("BB"))
    ]
    assert len(groups) > 20
    assert 1 <= len(kept) <= 3  # BB's 100 rows span at most 3 row groups of 64


@st.composite
def _partitions(draw):
    """Rows sorted by key over parts and row groups of drawn sizes, with a second string
    column that is sometimes one value and sometimes several (with nulls), and files
    written with or without statistics; a drawn set of keys to read."""
    runs = draw(st.lists(st.integers(1, 40), min_size=1, max_size=8))
    keys = [f"K{i:02d}" for i in range(len(runs))]
    key = [k for k, n in zip(keys, runs, strict=True) for _ in range(n)]
    mixed = draw(st.booleans())
    note = [
        None if mixed and i % 7 == 3 else ("ab" if mixed and i % 3 else "c")
        for i in range(len(key))
    ]
    table = pa.table(
        {
            "key": pa.array(key, pa.string()),
            "tile_id": pa.array(range(len(key)), pa.uint64()),
            "note": pa.array(note, pa.string()),
        }
    )
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(key) - 1)), max_size=3)))
    bounds = [0, *[c for c in cuts if c < len(key)], len(key)]
    files = [
        (table.slice(a, b - a), draw(st.integers(1, 30)), draw(st.booleans()))
        for a, b in itertools.pairwise(bounds)
    ]
    wanted = draw(st.lists(st.sampled_from([*keys, "K99"]), min_size=1, max_size=4, unique=True))
    batch = draw(st.integers(1, 50))
    return table, files, sorted(wanted), batch


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_partitions(), only=st.sampled_from([None, ["tile_id"], ["note", "key"]]))
def test_key_reads_are_a_filter_of_the_rows(tmp_path: Path, monkeypatch, case, only) -> None:
    # runs found by dictionary codes, columns decoded only to a row group's last wanted row
    # (in batches of a drawn size), strings made for one-valued runs, row groups read on
    # two threads: against pyarrow's own filter of the whole table
    table, parts, wanted, batch = case
    monkeypatch.setattr("tileindex.index._BATCH_ROWS", batch)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example
    files = []
    for i, (rows, group_rows, stats) in enumerate(parts):
        files.append(folder / f"part-{i:05d}.parquet")
        pq.write_table(rows, files[-1], row_group_size=group_rows, write_statistics=stats)
    expect = table.filter(pc.is_in(table["key"], pa.array(wanted))).select(
        only or table.column_names
    )
    got = _read_keys(files, "key", wanted, only)
    assert got.schema.equals(expect.schema) and got.equals(expect)
    got.validate(full=True)
    # a few rows kept from a row group do not hold the whole decoded group alive
    assert got.get_total_buffer_size() <= 2 * expect.get_total_buffer_size() + 64 * len(files)


def test_pandas_and_polars(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tileindex.open(root)
    frame = index.to_pandas("CC")
    assert list(frame.columns)[:2] == ["country_iso", "tile_id"]
    assert len(frame) == index.to_table("CC").num_rows
    monkeypatch.setitem(sys.modules, "polars", None)  # as if polars were not installed
    with pytest.raises(ConfigError, match="to_polars needs polars"):
        index.to_polars("CC")


def test_unknown_keys_and_datasets_are_clear_errors(root: Path, small_world, tmp_path) -> None:
    index = tileindex.open(root)
    with pytest.raises(InputError, match=r"country_iso 'XX' not in this index \(5 keys"):
        index.to_table("XX")
    plain = tmp_path / "plain"
    build(*small_world, plain)
    with pytest.raises(InputFileError, match=r"no tile_coverage .*rebuild with --coverage"):
        tileindex.open(plain).dataset("tile_coverage")


@pytest.mark.parametrize(
    "damage", ['{"country_iso": "AA"}\n{"country_iso": "BB"', '{"cells_included": 3}\n']
)
def test_damaged_summaries_are_a_clear_error(root: Path, tmp_path: Path, damage: str) -> None:
    # cut short, or without the key column: one line naming the file and the fix
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    index = tileindex.open(copy)
    index.path("country_summaries").write_text(damage, encoding="utf-8")
    with pytest.raises(
        InputError, match=r"summaries .* not JSON lines with a 'country_iso'.*rebuild"
    ):
        _ = tileindex.open(copy).keys


def test_a_root_with_no_or_several_partitions(small_world, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        tileindex.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no tile_index partition under"):
        tileindex.open(tmp_path / "empty")
    out = tmp_path / "two"
    a = build(*small_world, out, predicate="center")
    b = build(*small_world, out, predicate="any_overlap")
    with pytest.raises(ConfigError, match="holds 2 tile_index partitions") as err:
        tileindex.open(out)
    assert a.parameter_hash in str(err.value) and b.parameter_hash in str(err.value)
    assert tileindex.open(out, parameter_hash=b.parameter_hash).predicate == "any_overlap"


# -- the kept region geometry ------------------------------------------------------------------


def test_the_build_keeps_the_geometry_it_used(root: Path) -> None:
    index = tileindex.open(root)
    kept = index.report["region_geometry"]
    path = root / kept["path"]
    assert kept["sha256_hex"] == hashlib.sha256(path.read_bytes()).hexdigest()
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["primary_column"] == "geom" and geo["columns"]["geom"]["encoding"] == "WKB"
    geoms = index.geometry()
    assert sorted(geoms) == ["AA", "BB", "CC", "FJ"]  # ZZ has no polygon
    for code, rows in SMALL_WORLD_COUNTRIES.items():
        assert shapely.equals(geoms[code], country_geometry(code, rows).geom)
    # FJ was given as 177..182.3: kept cut at the antimeridian and shifted into range
    lo, _, hi, _ = geoms["FJ"].bounds
    assert (lo, hi) == (-180.0, 180.0) and geoms["FJ"].geom_type == "MultiPolygon"


def test_kept_geometry_is_byte_identical_wherever_the_root_lives(small_world, tmp_path) -> None:
    a = build(*small_world, tmp_path / "a" / "out")
    b = build(*small_world, tmp_path / "b")
    rel = a.report.region_geometry["path"]
    assert rel == b.report.region_geometry["path"] and not rel.startswith("/")
    assert (tmp_path / "a" / "out" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_a_changed_geometry_file_is_refused(small_world, tmp_path: Path) -> None:
    result = build(*small_world, tmp_path / "out")
    path = tmp_path / "out" / result.report.region_geometry["path"]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # one region dropped
    with pytest.raises(InputFileError, match="does not match the digest in the run report"):
        tileindex.open(tmp_path / "out").geometry()


def test_region_mode_index_reads_under_its_key_column(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    tiling = make_tiling(tmp_path / "in", 6)
    build(None, tiling.regions, tiling.raster, tmp_path / "out", key_column="region_id")
    index = tileindex.open(tmp_path / "out")
    assert index.key_column == "region_id"
    assert index.keys == tuple(f"R{i:05d}" for i in range(1, 7))
    table = index.to_table("R00003")
    assert table.column_names[0] == "region_id"
    assert set(table["region_id"].to_pylist()) == {"R00003"}
    assert sorted(index.geometry()) == list(index.keys)
