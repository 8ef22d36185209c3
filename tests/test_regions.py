"""Region mode (docs/CONTRACT.md §10.1): a layer keyed by any column, keys of any UTF-8
text ordered by their bytes, an optional key list, every bad key refused with a line that
names it and its row, the validator's region checks, and a 2,000-region tiling."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner

import tileindex
from tileindex.cli import main
from tileindex.contract import (
    CONTRACT_VERSION,
    check_key_column,
    parameter_hash,
    sort_keys,
    tile_bounds_schema,
    tile_index_schema,
)
from tileindex.errors import ConfigError, InputError, IsoForeignKeyError, TileIndexError
from tileindex.layout import find_parameter_hashes, part_files
from tileindex.validate import validate_partition

from factories import write_countries, write_grid, write_iso

KEY = "region_id"
# keys whose UTF-8 byte order differs from case-folded, locale and UTF-16 orders:
# "Z" < "a" (not case-folded), "é" after every ASCII key, U+E000 (private use, 3 UTF-8
# bytes) before U+1F600 (4 bytes), though UTF-16 puts the surrogate pair of U+1F600 first
KEYS = ("a", "Z", "é", "\U0001f600", "\ue000", "b b", "a-1")
BYTEWISE = ("Z", "a", "a-1", "b b", "é", "\ue000", "\U0001f600")


def _square(i: int, size: float = 2.0) -> shapely.Polygon:
    """The i-th square of a tiling 20 squares wide, cell-aligned on the 1-degree grid."""
    x, y = -100.0 + size * (i % 20), 40.0 - size * (i // 20)
    return shapely.box(x, y - size, x + size, y)


def _expected_ids(i: int, size: int = 2) -> list[int]:
    """The tile ids of :func:`_square` on the 1-degree grid (360 columns from -180, rows
    from +90): its size x size cells, whose centroids it holds."""
    col0 = 80 + size * (i % 20)
    row0 = 50 + size * (i // 20)
    return [(row0 + r) * 360 + col0 + c for r in range(size) for c in range(size)]


def _layer(tmp: Path, rows: Sequence[tuple[Any, Any]], column: str = KEY) -> Path:
    return write_countries(tmp / "regions.parquet", rows, iso_column=column)


def _grid(tmp: Path) -> Path:
    return write_grid(tmp / "grid.tif", 360, 180)


def _nothing_published(out: Path) -> bool:
    return find_parameter_hashes(out) == [] and not (out / "reports").exists()


def _build(iso: Path | None, layer: Path, raster: Path, out: Path, **kw: Any):
    return tileindex.build(iso, layer, raster, out, key_column=KEY, **kw)


@pytest.fixture(scope="module")
def region_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A layer of the KEYS squares (one key on two rows) and a key list with one key more."""
    tmp = tmp_path_factory.mktemp("regions")
    rows = [(k, _square(i)) for i, k in enumerate(KEYS)] + [("a", _square(len(KEYS)))]
    layer = _layer(tmp, rows)
    keys = write_iso(tmp / "keys.csv", [*KEYS, "no polygons"], fmt="csv", column=KEY)
    return keys, layer, _grid(tmp)


# -- order and layout -----------------------------------------------------------------------


def test_sort_keys_is_utf8_byte_order_not_utf16() -> None:
    assert tuple(sort_keys(KEYS)) == BYTEWISE
    assert sorted(KEYS, key=lambda k: k.encode("utf-16-be")) != list(BYTEWISE)


def test_region_build_orders_rows_parts_and_summaries_by_utf8_bytes(
    region_world, tmp_path: Path
) -> None:
    keys, layer, raster = region_world
    # 4 rows a part file: every key spans part boundaries, so file order matters too
    result = _build(keys, layer, raster, tmp_path / "out", rows_per_row_group=2)
    index_files = part_files(result.paths["tile_index"])
    assert len(index_files) > 1
    column = [k for p in index_files for k in pq.read_table(p).column(KEY).to_pylist()]
    assert column == sorted(column, key=lambda k: k.encode("utf-8"))
    assert list(dict.fromkeys(column)) == list(BYTEWISE)
    lines = [json.loads(x) for x in result.paths["country_summaries"].read_text().splitlines()]
    assert [s[KEY] for s in lines] == sort_keys([*KEYS, "no polygons"])
    assert all("country_iso" not in s for s in lines)


def test_region_build_names_the_first_column_and_records_the_key_column(
    region_world, tmp_path: Path
) -> None:
    keys, layer, raster = region_world
    result = _build(keys, layer, raster, tmp_path / "out")
    for name, schema in (
        ("tile_index", tile_index_schema(KEY)),
        ("tile_bounds", tile_bounds_schema(KEY)),
    ):
        got = pq.read_schema(part_files(result.paths[name])[0]).remove_metadata()
        assert got.equals(schema)
        assert got.field(0).name == KEY and not got.field(0).nullable
    report = json.loads(result.paths["run_report"].read_text())
    assert report["key_column"] == KEY
    assert report["countries_total"] == len(KEYS) + 1
    table = pq.read_table(result.paths["tile_index"])
    for i, key in enumerate(KEYS):
        ids = table.filter(pa.compute.equal(table[KEY], key))["tile_id"].to_pylist()
        want = _expected_ids(i) + (_expected_ids(len(KEYS)) if key == "a" else [])
        assert ids == sorted(want), key


def test_without_a_key_list_the_layers_keys_are_the_list(region_world, tmp_path: Path) -> None:
    _, layer, raster = region_world
    result = _build(None, layer, raster, tmp_path / "out")
    assert [s.country_iso for s in result.summaries] == list(BYTEWISE)
    # the digest of the derived list: its keys as UTF-8 lines (docs/CONTRACT.md §10.1)
    lines = b"".join(k.encode() + b"\n" for k in BYTEWISE)
    assert result.report.ingress_versions["iso"] == hashlib.sha256(lines).hexdigest()


def test_the_key_column_name_enters_the_parameter_hash_and_the_default_does_not() -> None:
    digests = {"iso": "1" * 64, "countries": "2" * 64, "raster": "3" * 64}
    grid = {"ncols": 360, "nrows": 180, "transform": [1.0, 0.0, -180.0, 0.0, -1.0, 90.0]}
    doc = {
        "contract_version": CONTRACT_VERSION,
        "grid": grid,
        "ingress": digests,
        "predicate": "center",
    }
    today = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    assert parameter_hash("center", digests, grid) == today.hexdigest()
    assert parameter_hash("center", digests, grid, key_column="country_iso") == today.hexdigest()
    region = parameter_hash("center", digests, grid, key_column=KEY)
    doc["key_column"] = KEY
    assert (
        region
        == hashlib.sha256(
            json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    )
    assert region != parameter_hash("center", digests, grid, key_column="other")


def test_a_region_layer_keyed_by_country_iso_codes_is_not_the_country_build(
    tmp_path: Path,
) -> None:
    """Same polygons and codes: country mode and region mode publish the same cells under
    different hashes and first-column names."""
    rows = [("AA", _square(0)), ("BB", _square(1))]
    country_layer = write_countries(tmp_path / "c.parquet", rows)
    region_layer = _layer(tmp_path, rows)
    iso = write_iso(tmp_path / "iso.parquet", ["AA", "BB"])
    raster = _grid(tmp_path)
    country = tileindex.build(iso, country_layer, raster, tmp_path / "country")
    region = _build(None, region_layer, raster, tmp_path / "region")
    assert country.parameter_hash != region.parameter_hash
    a = pq.read_table(country.paths["tile_index"])
    b = pq.read_table(region.paths["tile_index"])
    assert a.rename_columns([KEY, *a.column_names[1:]]).equals(b)


# -- bad input: one line naming the key and the row, nothing published ----------------------


def _refused(
    tmp_path: Path, rows: Sequence[tuple[Any, Any]], keys: Sequence[Any] | None = None
) -> TileIndexError:
    layer = _layer(tmp_path, rows)
    iso = None if keys is None else write_iso(tmp_path / "keys.parquet", list(keys), column=KEY)
    out = tmp_path / "out"
    with pytest.raises(TileIndexError) as info:
        _build(iso, layer, _grid(tmp_path), out)
    assert "\n" not in str(info.value)
    assert _nothing_published(out)
    return info.value


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (None, "row 2: the key is null"),
        ("", "row 2: the key is empty"),
        ("x" * 129, "is 129 UTF-8 bytes long, more than 128"),
        ("é" * 65, "is 130 UTF-8 bytes long, more than 128"),
        ("tab\there", "holds the control character U+0009"),
        ("nul\x00", "holds the control character U+0000"),
        ("c1\x85", "holds the control character U+0085"),
    ],
)
def test_a_bad_layer_key_is_refused_naming_its_row(tmp_path: Path, bad: Any, needle: str) -> None:
    err = _refused(tmp_path, [("ok", _square(0)), (bad, _square(1))])
    assert isinstance(err, InputError)
    assert "region layer" in str(err) and f"column '{KEY}'" in str(err)
    assert needle in str(err)
    assert "every key must be a non-empty UTF-8 string of at most 128 bytes" in str(err)


def test_a_key_of_exactly_128_bytes_is_a_key(tmp_path: Path) -> None:
    key = "é" * 64
    result = _build(None, _layer(tmp_path, [(key, _square(0))]), _grid(tmp_path), tmp_path / "o")
    assert [s.country_iso for s in result.summaries] == [key]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (None, "row 2: the key is null"),
        ("", "row 2: the key is empty"),
        ("y" * 200, "is 200 UTF-8 bytes long"),
    ],
)
def test_a_bad_key_in_the_key_list_is_refused_naming_its_row(
    tmp_path: Path, bad: Any, needle: str
) -> None:
    err = _refused(tmp_path, [("ok", _square(0))], keys=["ok", bad])
    assert "key list" in str(err) and needle in str(err)


def test_a_duplicate_in_the_key_list_names_the_key_and_both_rows(tmp_path: Path) -> None:
    err = _refused(tmp_path, [("ok", _square(0))], keys=["ok", "twice", "x", "twice"])
    assert isinstance(err, InputError)
    assert "the key 'twice' is listed twice, at rows 2 and 4; list each key once" in str(err)


def test_an_empty_key_list_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, [("ok", _square(0))], keys=[])
    assert "the list is empty" in str(err) and "omit --keys" in str(err)


def test_a_layer_key_missing_from_the_key_list_is_e005_naming_key_and_row(tmp_path: Path) -> None:
    err = _refused(
        tmp_path,
        [("ok", _square(0)), ("stray", _square(1)), ("other", _square(2))],
        keys=["ok"],
    )
    assert isinstance(err, IsoForeignKeyError) and err.code == "E005_ISO_FK"
    assert "row 2: the key 'stray' is not in the key list" in str(err)
    assert "(and 1 more key(s) not listed)" in str(err)
    assert "add it to the key list or drop those rows" in str(err)


def test_a_missing_key_column_is_refused_naming_the_column(tmp_path: Path) -> None:
    layer = write_countries(tmp_path / "regions.parquet", [("AA", _square(0))])  # country_iso
    with pytest.raises(InputError, match=f"column '{KEY}' is missing") as info:
        _build(None, layer, _grid(tmp_path), tmp_path / "out")
    assert "found: country_iso, geom" in str(info.value) and "--key-column" in str(info.value)
    assert _nothing_published(tmp_path / "out")


@pytest.mark.parametrize("where", ["layer", "keys"])
def test_a_key_column_that_is_not_of_strings_is_refused(tmp_path: Path, where: str) -> None:
    ints = pa.array([1, 2], pa.int64())
    if where == "layer":
        wkb = pa.array([shapely.to_wkb(_square(0)), shapely.to_wkb(_square(1))], pa.binary())
        layer = tmp_path / "regions.parquet"
        pq.write_table(pa.table({KEY: ints, "geom": wkb}), layer)
        iso = None
    else:
        layer = _layer(tmp_path, [("1", _square(0))])
        iso = tmp_path / "keys.parquet"
        pq.write_table(pa.table({KEY: ints}), iso)
    with pytest.raises(InputError, match=f"key column '{KEY}' has type int64, not string"):
        _build(iso, layer, _grid(tmp_path), tmp_path / "out")
    assert _nothing_published(tmp_path / "out")


@pytest.mark.parametrize("name", ["", "tile_id", "geom", "coverage_fraction", "bad\nname"])
def test_an_unusable_key_column_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="key column"):
        check_key_column(name)


def test_country_mode_still_needs_an_iso_list(tmp_path: Path) -> None:
    layer = write_countries(tmp_path / "c.parquet", [("AA", _square(0))])
    with pytest.raises(ConfigError, match="no ISO list given"):
        tileindex.build(None, layer, _grid(tmp_path), tmp_path / "out")
    assert _nothing_published(tmp_path / "out")


def test_country_mode_keeps_its_two_letter_rule(tmp_path: Path) -> None:
    """The same key list that region mode accepts is bad input in country mode."""
    layer = write_countries(tmp_path / "c.parquet", [("a-1", _square(0))])
    iso = write_iso(tmp_path / "iso.parquet", ["a-1"])
    with pytest.raises(InputError, match="not 2 ASCII letters"):
        tileindex.build(iso, layer, _grid(tmp_path), tmp_path / "out")


# -- the command line -----------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_region_build_and_validate(region_world, tmp_path: Path) -> None:
    keys, layer, raster = region_world
    out = str(tmp_path / "out")
    common = ["--key-column", KEY, "--regions", str(layer), "--raster", str(raster)]
    built = _cli("build", *common, "--keys", str(keys), "--out", out, "--quiet", "--workers", "1")
    assert built.exit_code == 0, built.output
    assert "regions" in built.stdout
    ok = _cli("validate", "--out", out, *common, "--keys", str(keys), "--json", "--quiet")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["stats"]["key_column"] == KEY
    # without --keys the validator derives another key list: its digest differs
    other = _cli("validate", "--out", out, *common, "--quiet")
    assert other.exit_code == 1 and "E010" in other.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--key-column", KEY, "--iso", "{keys}"], "--iso does not apply in region mode"),
        (["--keys", "{keys}"], "--keys is region mode's key list"),
        (["--iso", "{keys}", "--countries", "{layer}"], "name the same input"),
        ([], "Missing option '--iso'"),
    ],
)
def test_cli_refuses_a_combination_that_does_not_apply(
    region_world, tmp_path: Path, args: list[str], needle: str
) -> None:
    keys, layer, raster = region_world
    args = [a.format(keys=keys, layer=layer) for a in args]
    result = _cli(
        "build", *args, "--regions", str(layer), "--raster", str(raster), "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert needle in result.stderr
    assert _nothing_published(tmp_path)


def test_cli_refuses_an_unusable_key_column_with_its_code(region_world, tmp_path: Path) -> None:
    _, layer, raster = region_world
    result = _cli(
        "build", "--key-column", "tile_id", "--regions", str(layer), "--raster", str(raster),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "S1_BAD_INPUT" in result.stderr and "'tile_id'" in result.stderr


# -- the validator in region mode -----------------------------------------------------------


def test_validator_catches_a_foreign_key_and_a_summary_under_the_wrong_name(
    region_world, tmp_path: Path
) -> None:
    keys, layer, raster = region_world
    result = _build(keys, layer, raster, tmp_path / "out")
    fresh = validate_partition(
        tmp_path / "out", iso=keys, countries=layer, raster=raster, key_column=KEY
    )
    assert fresh.ok, fresh.findings
    # a key list without "b b": its rows are foreign now
    fewer = write_iso(tmp_path / "fewer.csv", [k for k in KEYS if k != "b b"], "csv", KEY)
    layer2 = _layer(tmp_path, [(k, _square(i)) for i, k in enumerate(KEYS) if k != "b b"])
    # the summaries' key field renamed back to country_iso: unreadable as region summaries
    path = result.paths["country_summaries"]
    path.chmod(0o644)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({"country_iso": d.pop(KEY), **d}) + "\n" for d in lines))
    got = validate_partition(
        tmp_path / "out", iso=fewer, countries=layer2, raster=raster, key_column=KEY
    )
    codes = {f.code for f in got.findings}
    assert "E005_ISO_FK" in codes
    foreign = [f for f in got.findings if "not in the key list" in f.message]
    assert foreign and foreign[0].country_iso == "b b"
    assert any(f"lacks ['{KEY}']" in f.message for f in got.findings)


def test_validator_catches_keys_out_of_byte_order(tmp_path: Path) -> None:
    """Rows in Python-unicode-but-not-bytewise order cannot exist for valid UTF-8 (they
    are one order); rows in UTF-16 order can: "\\ue000" after "\\U0001f600"."""
    keys = ["\ue000", "\U0001f600"]
    layer = _layer(tmp_path, [(k, _square(i)) for i, k in enumerate(keys)])
    raster = _grid(tmp_path)
    result = _build(None, layer, raster, tmp_path / "out")
    folder = result.paths["tile_index"]
    (part,) = part_files(folder)
    table = pq.read_table(part)
    utf16 = sorted(range(table.num_rows), key=lambda i: table[KEY][i].as_py().encode("utf-16-be"))
    swapped = table.take(utf16)
    part.chmod(0o644)
    pq.write_table(swapped.cast(tile_index_schema(KEY)), part)
    got = validate_partition(
        tmp_path / "out", iso=None, countries=layer, raster=raster, key_column=KEY
    )
    assert any(
        f.code == "E003_DUP_TILE" and "keys ascend by their UTF-8 bytes" in f.message
        for f in got.findings
    )


# -- scale: 2,000 regions, every region's rows; growth counted, not timed -------------------


def test_two_thousand_square_regions_each_get_exactly_their_cells(tmp_path: Path) -> None:
    n = 2000
    keys = [f"r{i:04d}-é" if i % 3 else f"R{i}" for i in range(n)]
    size = 1
    layer = _layer(
        tmp_path,
        [(k, _tiling_square(i, size)) for i, k in enumerate(keys)],
    )
    result = _build(None, layer, _grid(tmp_path), tmp_path / "out")
    assert result.countries_total == n and result.rows_emitted == n
    table = pq.read_table(result.paths["tile_index"], columns=[KEY, "tile_id"])
    got = dict(zip(table[KEY].to_pylist(), table["tile_id"].to_pylist(), strict=True))
    assert got == {k: _tiling_id(i) for i, k in enumerate(keys)}
    assert table[KEY].to_pylist() == sort_keys(keys)
    assert [s.country_iso for s in result.summaries] == sort_keys(keys)
    assert all(s.cells_included == 1 for s in result.summaries)
    check = validate_partition(
        tmp_path / "out", iso=None, countries=layer, raster=_grid(tmp_path), key_column=KEY
    )
    assert check.ok, check.findings[:3]


_TILING_WIDTH = 100  # squares per tiling row


def _tiling_square(i: int, size: int = 1) -> shapely.Polygon:
    x = -150.0 + size * (i % _TILING_WIDTH)
    y = 80.0 - size * (i // _TILING_WIDTH)
    return shapely.box(x, y - size, x + size, y)


def _tiling_id(i: int) -> int:
    return (10 + i // _TILING_WIDTH) * 360 + 30 + i % _TILING_WIDTH


def _count_calls(fn: Callable[[], Any]) -> int:
    """Python and C function calls made by ``fn`` in every thread (a count of work that,
    unlike a time, does not depend on the machine or its load)."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return calls


def test_build_and_validation_work_grows_linearly_in_the_regions(tmp_path: Path) -> None:
    """Per-region work is the same for every region of the tiling, so the calls a build
    and its validation make are a + b*n; a loop over all regions for each region (a list
    ``.index``-style scan written in Python, per-region rescans of all units) adds a
    c*n^2 term, which the second difference over n, 2n, 3n exposes: it is 2*c*n^2, and 0
    when the work is linear. Scans hidden inside one C call (numpy) are not counted:
    those were removed by reading (see docs/CONTRACT.md §10.1, "Scale")."""
    raster = _grid(tmp_path)
    n = 150
    counts = []
    for k in (1, 2, 3):
        folder = tmp_path / f"n{k}"
        folder.mkdir()
        keys = [f"k{i:05d}" for i in range(k * n)]
        layer = _layer(folder, [(key, _tiling_square(i)) for i, key in enumerate(keys)])

        def run(folder: Path = folder, layer: Path = layer) -> None:
            _build(None, layer, raster, folder / "out")
            check = validate_partition(
                folder / "out", iso=None, countries=layer, raster=raster, key_column=KEY,
                samples=0,
            )  # fmt: skip
            assert check.ok

        counts.append(_count_calls(run))
    c1, c2, c3 = counts
    per_region = (c3 - c1) / (2 * n)
    curvature = c3 - 2 * c2 + c1
    assert per_region > 0
    # a quadratic term as small as one call per pair of regions would give 2 * n^2 = 45,000
    assert abs(curvature) < 0.2 * n * n, (counts, per_region, curvature)


def test_the_validator_finds_the_shapes_of_a_window_in_one_pass() -> None:
    """Shapes meeting a sampled window come from one array of every part's box, not a
    test per shape: with 1,000 shapes, the answer equals the per-shape definition."""
    from tileindex.geometry import country_geometry
    from tileindex.grid import Grid, Window
    from tileindex.validate.axes import Axes
    from tileindex.validate.samples import _meeting, _PartBoxes
    from tileindex.validate.shape import Shape

    grid = Grid.from_transform(360, 180, (1.0, 0.0, -180.0, 0.0, -1.0, 90.0))
    axes = Axes(grid)
    shapes = {f"k{i}": Shape(country_geometry(f"k{i}", [_tiling_square(i)])) for i in range(1000)}
    boxes = _PartBoxes.of(shapes)
    rng = np.random.default_rng(0)
    for _ in range(20):
        r, c = int(rng.integers(0, 170)), int(rng.integers(0, 350))
        win = Window(r, r + 10, c, c + 10)
        south, north = 90.0 - (r + 10), 90.0 - r
        west, east = -180.0 + c, -180.0 + c + 10
        want = {
            k
            for k, s in shapes.items()
            if (s.bounds[:, 1] <= north).any()
            and (s.bounds[:, 3] >= south).any()
            and (s.bounds[:, 0] <= east).any()
            and (s.bounds[:, 2] >= west).any()
        }
        assert _meeting(axes, boxes, win) == want


def test_planning_builds_the_grid_axes_once_not_once_per_region(monkeypatch) -> None:
    """Each region's windows need the grid's row edges and column segments; building them
    per region made planning O(regions x grid side) (25.9 s for 2,000 regions on the
    WorldPop grid, 0.36 s once per grid)."""
    from tileindex import grid as grid_module
    from tileindex.geometry import country_geometry
    from tileindex.grid import Grid
    from tileindex.plan import plan_countries

    calls = []
    real = Grid.column_segments

    def counted(self: Grid, col_start: int, col_stop: int) -> Any:
        calls.append((col_start, col_stop))
        return real(self, col_start, col_stop)

    monkeypatch.setattr(Grid, "column_segments", counted)
    grid_module._whole_grid_axes.cache_clear()
    grid = Grid.from_transform(360, 180, (1.0, 0.0, -180.0, 0.0, -1.0, 90.0))
    geoms = {f"k{i}": country_geometry(f"k{i}", [_tiling_square(i)]) for i in range(500)}
    units = plan_countries(grid, geoms, None)
    assert len(units) == 500
    assert calls == [(0, 360)]
