"""``build(coverage=True)`` / ``tileindex build --coverage`` end to end (docs/CONTRACT.md
§10.3): the ``tile_coverage`` dataset beside ``tile_index`` (same keys, order and part
layout), the untouched bytes of the other two, identity, evidence, refusals, and the
validator's own checks of it, including tampered fractions."""

from __future__ import annotations

import json
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner

from tileindex.cli import main
from tileindex.contract import parameter_hash, tile_coverage_schema
from tileindex.coverage import cell_fractions
from tileindex.errors import ConfigError
from tileindex.geometry import country_geometry
from tileindex.grid import Grid
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.layout import part_files
from tileindex.pipeline import BuildResult, build
from tileindex.validate import validate_partition

from factories import build_args, make_inputs, make_tiling

LAYOUT = {"rows_per_row_group": 300, "row_groups_per_file": 2}  # several parts, row groups

# a tiling of [0, 12] x [0, 6] on a 0.5-degree grid offset by a quarter cell, with a
# zigzag border, a diagonal border, an enclave (a hole of AA that is BB's outline) and
# a border through cell centres
_ZIG = [(0, 6), (3.1, 6), (4.7, 3.3), (3.3, 1.9), (5.05, 0), (0, 0)]
TILING = {
    "AA": [
        shapely.Polygon(_ZIG, [[(1, 1), (2.2, 1), (2.2, 2.6), (1, 2.6)]]),
    ],
    "BB": [shapely.box(1, 1, 2.2, 2.6)],
    "CC": [
        shapely.Polygon([(3.1, 6), (12, 6), (12, 0), (5.05, 0), (3.3, 1.9), (4.7, 3.3)]).difference(
            shapely.box(8.25, 0, 12, 3)
        )
    ],
    "DD": [shapely.box(8.25, 0, 12, 3)],
}
TILING_GRID = (0.5, 0.0, -1.125, 0.0, -0.5, 7.125)  # 30 x 18 cells around the tiling


@pytest.fixture(scope="module")
def tiling(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_inputs(
        tmp_path_factory.mktemp("tiling"), TILING, ncols=30, nrows=18, transform=TILING_GRID
    )


def _build(inputs: tuple[Path, Path, Path], out: Path, **kw) -> BuildResult:
    return build(*inputs, out, **{**LAYOUT, **kw})


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in part_files(folder)}


def _row_groups(folder: Path) -> list[list[int]]:
    out = []
    for p in part_files(folder):
        md = pq.ParquetFile(p).metadata
        out.append([md.row_group(i).num_rows for i in range(md.num_row_groups)])
    return out


@pytest.mark.parametrize("predicate", ["center", "any_overlap"])
def test_coverage_leaves_the_other_datasets_byte_identical(
    small_world, tmp_path: Path, predicate: str
) -> None:
    plain = _build(small_world, tmp_path / "plain", predicate=predicate)
    cov = _build(small_world, tmp_path / "cov", predicate=predicate, coverage=True)
    for name in ("tile_index", "tile_bounds"):
        assert _bytes(plain.paths[name]) == _bytes(cov.paths[name]), name
    assert (
        cov.report.determinism_receipt["sha256_hex"]
        == (plain.report.determinism_receipt["sha256_hex"])
    )
    assert "tile_coverage" not in plain.paths and plain.report.coverage_receipt is None
    assert "coverage_receipt" not in json.loads(plain.paths["run_report"].read_text())
    assert "coverage_area_fraction_sum" not in plain.paths["country_summaries"].read_text()


def test_coverage_has_the_keys_order_and_layout_of_tile_index(small_world, tmp_path) -> None:
    r = _build(small_world, tmp_path / "o", predicate="any_overlap", coverage=True)
    index, cov = r.paths["tile_index"], r.paths["tile_coverage"]
    assert [p.name for p in part_files(index)] == [p.name for p in part_files(cov)]
    assert len(part_files(cov)) > 1
    assert _row_groups(index) == _row_groups(cov)
    ti, tc = pq.read_table(index), pq.read_table(cov)
    assert tc.schema.equals(tile_coverage_schema())
    assert tc.column(0).equals(ti.column(0)) and tc.column(1).equals(ti.column(1))
    f = tc.column("coverage_fraction").to_numpy()
    assert (f > 0).all() and (f <= 1).all()
    assert (f < 1).any() and (f == 1).any()


def test_the_fractions_are_cell_fractions_of_every_row(small_world, tmp_path: Path) -> None:
    """Interior cells read exactly what the exact kernel gives (1.0), boundary cells
    bit-identical values: the shortcut never changes a value."""
    r = _build(small_world, tmp_path / "f", predicate="any_overlap", coverage=True)
    iso, countries, raster = small_world
    layer = read_country_layer(countries, read_iso_list(iso))
    grid = read_grid(raster).grid
    t = pq.read_table(r.paths["tile_coverage"])
    codes = t.column(0).to_numpy(zero_copy_only=False)
    tid = t.column(1).to_numpy().astype(np.int64)
    f = t.column(2).to_numpy()
    for code in np.unique(codes):
        sel = codes == code
        rows, cols = np.divmod(tid[sel], grid.ncols)
        g = country_geometry(str(code), layer.rows[str(code)])
        assert np.array_equal(f[sel], cell_fractions(grid, g, rows, cols)), code


def test_identity_with_and_without_coverage(small_world, tmp_path: Path) -> None:
    plain = _build(small_world, tmp_path / "p")
    cov = _build(small_world, tmp_path / "c", coverage=True)
    digests, grid_json = dict(plain.report.ingress_versions), read_grid(small_world[2]).grid
    assert plain.parameter_hash == parameter_hash("center", digests, grid_json.to_json())
    assert cov.parameter_hash == parameter_hash(
        "center", digests, grid_json.to_json(), coverage=True
    )
    assert cov.parameter_hash != plain.parameter_hash


def test_summaries_hold_the_exact_sum_of_the_fractions(small_world, tmp_path: Path) -> None:
    r = _build(small_world, tmp_path / "s", predicate="any_overlap", coverage=True)
    t = pq.read_table(r.paths["tile_coverage"]).to_pydict()
    exact: dict[str, Fraction] = defaultdict(Fraction)
    for code, f in zip(t["country_iso"], t["coverage_fraction"], strict=True):
        exact[code] += Fraction(f)
    lines = [json.loads(x) for x in r.paths["country_summaries"].read_text().splitlines()]
    for s in lines:
        assert s["coverage_area_fraction_sum"] == float(exact.get(s["country_iso"], Fraction(0)))
    assert {s["country_iso"]: s["coverage_area_fraction_sum"] for s in lines}["ZZ"] == 0.0


def test_the_same_bytes_and_sums_for_any_worker_count_and_chunking(
    small_world, tmp_path: Path
) -> None:
    one = _build(small_world, tmp_path / "1", predicate="any_overlap", coverage=True)
    two = _build(
        small_world,
        tmp_path / "2",
        predicate="any_overlap",
        coverage=True,
        workers=2,
        chunk_size=7,
    )
    assert one.report.coverage_receipt == two.report.coverage_receipt
    assert _bytes(one.paths["tile_coverage"]) == _bytes(two.paths["tile_coverage"])
    assert (
        one.paths["country_summaries"].read_bytes() == two.paths["country_summaries"].read_bytes()
    )


def test_the_receipt_is_relative_and_a_rerun_is_identical(small_world, tmp_path: Path) -> None:
    r = _build(small_world, tmp_path / "r", coverage=True)
    receipt = r.report.coverage_receipt
    assert receipt is not None
    assert receipt["partition_path"] == (
        f"data/layer1/1B/tile_coverage/parameter_hash={r.parameter_hash}/"
    )
    assert json.loads(r.paths["run_report"].read_text())["coverage_receipt"] == receipt
    assert r.report.outputs["tile_coverage"] == receipt["partition_path"]
    again = _build(small_world, tmp_path / "r", coverage=True)
    assert again.outcome == "identical"


def test_the_legacy_engine_is_refused_and_nothing_is_published(small_world, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--coverage needs the fast engine") as info:
        _build(small_world, tmp_path / "l", engine="legacy", coverage=True)
    assert info.value.event_code == "S1_BAD_INPUT"
    assert "\n" not in str(info.value)
    assert not (tmp_path / "l" / "data").exists()


def test_a_dictionary_without_tile_coverage(small_world, tmp_path: Path) -> None:
    dictionary = tmp_path / "paths.yaml"
    dictionary.write_text(
        "datasets:\n"
        "  tile_index: idx/{parameter_hash}/\n"
        "  tile_bounds: bnd/{parameter_hash}/\n"
        "  run_report: rep/{parameter_hash}/report.json\n"
        "  country_summaries: rep/{parameter_hash}/summaries.jsonl\n"
        "  event_log: log/{parameter_hash}/events.jsonl\n"
    )
    ok = _build(small_world, tmp_path / "d", dictionary=dictionary)
    assert ok.outcome == "published" and "tile_coverage" not in ok.paths
    with pytest.raises(ConfigError, match=r"paths\.yaml has no path template for tile_coverage"):
        _build(small_world, tmp_path / "e", dictionary=dictionary, coverage=True)
    assert not (tmp_path / "e").exists()


def test_cli_build_coverage_publishes_and_validates(small_world, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, build_args(*small_world, out, "--coverage"))
    assert result.exit_code == 0, result.output
    (folder,) = (out / "data/layer1/1B/tile_coverage").iterdir()
    assert part_files(folder)
    v = validate_partition(out, iso=small_world[0], countries=small_world[1], raster=small_world[2])
    assert v.ok, v.findings


# -- the partition of unity on a tiling -----------------------------------------------


def test_the_fractions_of_a_tiling_sum_to_one_where_it_covers_the_cell(tiling, tmp_path) -> None:
    r = _build(tiling, tmp_path / "t", predicate="any_overlap", coverage=True)
    t = pq.read_table(r.paths["tile_coverage"]).to_pydict()
    total: dict[int, float] = defaultdict(float)
    for tid, f in zip(t["tile_id"], t["coverage_fraction"], strict=True):
        total[tid] += f
    grid = Grid.from_transform(30, 18, TILING_GRID)
    union = shapely.box(0, 0, 12, 6)
    shared = 0
    for tid, s in total.items():
        row, col = divmod(tid, grid.ncols)
        x0, x1 = grid.c + grid.a * col, grid.c + grid.a * (col + 1)
        cell = shapely.box(x0, grid.f + grid.e * (row + 1), x1, grid.f + grid.e * row)
        assert s <= 1 + 1e-9, tid
        if union.covers(cell):
            assert s >= 1 - 1e-9, (tid, s)
            shared += s != 1.0 or t["tile_id"].count(tid) > 1
    assert shared > 20  # the borders really cut cells


# -- the validator --------------------------------------------------------------------


def _rewrite(path: Path, change) -> None:
    table = pq.read_table(path)
    f = table.column(2).to_numpy().copy()
    change(f)
    table = table.set_column(2, table.schema.field(2), pa.array(f, pa.float64()))
    pq.write_table(table, path, row_group_size=LAYOUT["rows_per_row_group"])


def _forge_receipt(r: BuildResult) -> None:
    """Make the report's coverage_receipt match the tampered bytes, so that only the
    validator's own re-derivations can find the tampering."""
    from tileindex.contract import determinism_receipt

    doc = json.loads(r.paths["run_report"].read_text())
    doc["coverage_receipt"] = determinism_receipt(
        r.paths["tile_coverage"], doc["coverage_receipt"]["partition_path"]
    )
    r.paths["run_report"].write_text(json.dumps(doc))


def _validate(r: BuildResult, inputs, **kw):
    return validate_partition(
        r.paths["tile_index"].parents[4],
        iso=inputs[0],
        countries=inputs[1],
        raster=inputs[2],
        samples=0,
        **kw,
    )


@pytest.fixture
def published(tiling, tmp_path: Path) -> BuildResult:
    return _build(tiling, tmp_path / "v", predicate="any_overlap", coverage=True)


def test_the_validator_passes_a_coverage_build(published, tiling) -> None:
    v = _validate(published, tiling, coverage_samples=400)
    assert v.ok, v.findings
    assert v.stats["coverage_cells_rederived"] > 50
    assert v.stats["coverage_largest_difference"] <= 1e-12


def test_the_validator_catches_a_tampered_boundary_fraction(published, tiling) -> None:
    part = part_files(published.paths["tile_coverage"])[0]

    def nudge(f: np.ndarray) -> None:
        i = int(np.flatnonzero(f < 1.0)[0])
        f[i] = f[i] - 1e-6

    _rewrite(part, nudge)
    v = _validate(published, tiling, coverage_samples=400)
    messages = [f.message for f in v.findings]
    assert any("tile_coverage bytes hash to" in m for m in messages)
    assert any("GEOS intersection gives" in m for m in messages)
    assert any("coverage_area_fraction_sum" in m for m in messages)
    _forge_receipt(published)
    v = _validate(published, tiling, coverage_samples=400)
    assert not any("hash to" in f.message for f in v.findings)
    assert {f.code for f in v.findings} == {"E008_INCLUSION_RULE"}


def test_the_validator_catches_a_boundary_cell_published_as_one(published, tiling) -> None:
    part = part_files(published.paths["tile_coverage"])[0]

    def fill(f: np.ndarray) -> None:
        below = np.flatnonzero(f < 1.0)
        f[below[0]] = 1.0

    _rewrite(part, fill)
    _forge_receipt(published)
    v = _validate(published, tiling, coverage_samples=400)
    assert any("but the cell is not within" in f.message for f in v.findings), v.findings


def test_the_validator_catches_an_out_of_range_fraction_and_a_missing_receipt(
    published, tiling
) -> None:
    part = part_files(published.paths["tile_coverage"])[-1]
    _rewrite(part, lambda f: f.__setitem__(-1, 0.0))
    doc = json.loads(published.paths["run_report"].read_text())
    del doc["coverage_receipt"]
    published.paths["run_report"].write_text(json.dumps(doc))
    v = _validate(published, tiling, coverage_samples=0)
    messages = [f.message for f in v.findings]
    assert any("is not in (0, 1]" in m for m in messages)
    assert any("has no coverage_receipt" in m for m in messages)


def test_cli_validate_checks_coverage_and_exits_one_on_a_tampered_fraction(
    published, tiling
) -> None:
    out = published.paths["tile_index"].parents[4]
    args = [
        "validate",
        "--out",
        str(out),
        "--iso",
        str(tiling[0]),
        "--countries",
        str(tiling[1]),
        "--raster",
        str(tiling[2]),
        "--samples",
        "0",
        "--coverage-samples",
        "50",
        "--quiet",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    part = part_files(published.paths["tile_coverage"])[0]
    _rewrite(part, lambda f: f.__setitem__(int(np.flatnonzero(f < 1.0)[0]), 0.123))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "E008_INCLUSION_RULE" in result.output


def test_a_region_build_with_coverage_validates_cleanly(tmp_path: Path) -> None:
    # the key column names tile_coverage's first column too, and the validator derives the
    # parameter hash with both extensions (region mode and coverage)
    (tmp_path / "in").mkdir()
    t = make_tiling(tmp_path / "in", 12)
    build(None, t.regions, t.raster, tmp_path / "out", key_column="region_id", coverage=True)
    v = validate_partition(
        tmp_path / "out", iso=None, countries=t.regions, raster=t.raster, key_column="region_id"
    )
    assert v.ok, [f.message for f in v.findings]
    assert not [w for w in v.warnings if "parameter_hash" in w]
