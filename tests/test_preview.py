"""``tileindex preview``: the PNG shows each country (or region) in its colour, at the right
scale, and with --coverage each cell in the shade of its coverage fraction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner
from matplotlib.colors import to_rgba

from tileindex.cli.preview import preview
from tileindex.contract import DatasetDictionary
from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.pipeline import build
from tileindex.preview import NO_COUNTRY, PreviewResult, parse_bbox, render_preview

from factories import Tiling, make_inputs, make_tiling

# 0.5-degree cells over lat -60..60: small, and not the whole globe
GRID = (0.5, 0.0, -180.0, 0.0, -0.5, 60.0)
NCOLS, NROWS = 720, 240

COUNTRIES = {
    "AA": [shapely.box(-40, -20, 0, 20)],
    "BB": [shapely.box(0, -20, 30, 20)],  # shares AA's east edge: a neighbour
    "CC": [shapely.box(100, 30, 110, 40)],
    "DD": [shapely.box(-21, 0, -20, 1)],  # a microstate whose 4 cells AA holds too
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("preview")
    iso, countries, raster = make_inputs(
        folder, COUNTRIES, ncols=NCOLS, nrows=NROWS, transform=GRID
    )
    build(iso, countries, raster, folder / "out")
    return folder / "out"


def _rgba(png: Path) -> np.ndarray:
    return mpimg.imread(png)


def _pixel(result: PreviewResult, image: np.ndarray, lon: float, lat: float) -> np.ndarray:
    """The PNG pixel at (lon, lat), from the map's pixel box and the shown extent."""
    w, s, e, n = result.bbox
    left, top, right, bottom = result.map_box_px
    x = left + (lon - w) / (e - w) * (right - left)
    y = top + (n - lat) / (n - s) * (bottom - top)
    return image[int(y), int(x)]


def _is(colour: str, pixel: np.ndarray) -> bool:
    return bool(np.allclose(pixel, to_rgba(colour), atol=1.5 / 255))


def test_world_preview_downsamples_and_colours_each_country(root: Path, tmp_path: Path) -> None:
    png = tmp_path / "world.png"
    result = render_preview(root, png, width=400)

    image = _rgba(png)
    assert image.shape[1] == 400
    assert result.cells_per_pixel == 2  # 720 columns on about 360 map pixels
    assert result.bbox == (-180.0, -60.0, 180.0, 60.0)
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in _partition(root).iterdir())
    assert result.rows_drawn == total
    assert set(result.colors) <= {"AA", "BB", "CC", "DD"}
    assert {"AA", "BB", "CC"} <= set(result.colors)
    assert result.countries_in_view == 4
    for iso, (lon, lat) in {"AA": (-35, -15), "BB": (25, 15), "CC": (102, 32)}.items():
        assert _is(result.colors[iso], _pixel(result, image, lon, lat)), iso
    ocean = _pixel(result, image, -120, -40)
    assert _is(NO_COUNTRY, ocean)
    assert not any(_is(c, ocean) for c in result.colors.values())


def test_neighbours_get_different_colours(root: Path, tmp_path: Path) -> None:
    result = render_preview(root, tmp_path / "w.png", width=400)
    assert result.colors["AA"] != result.colors["BB"]


def test_bbox_preview_is_full_detail_and_exactly_as_wide_as_asked(
    root: Path, tmp_path: Path
) -> None:
    png = tmp_path / "box.png"
    result = render_preview(root, png, bbox=(-25, -5, 5, 5), width=777)

    image = _rgba(png)
    assert image.shape[1] == 777
    assert result.cells_per_pixel == 1
    assert result.bbox == (-25.0, -5.0, 5.0, 5.0)
    # AA: 50 x 20 cells (minus DD's 4, which it also holds), DD 4, BB 10 x 20
    assert result.rows_drawn == 50 * 20 + 4 + 10 * 20
    assert result.countries_in_view == result.countries_drawn == 3
    assert _is(result.colors["AA"], _pixel(result, image, -24, -4))
    assert _is(result.colors["BB"], _pixel(result, image, 4, -4))


def test_a_microstate_sharing_its_cells_shows_at_full_detail(root: Path, tmp_path: Path) -> None:
    # AA and DD both hold DD's cells: the tie goes to the country with fewer cells
    png = tmp_path / "dd.png"
    result = render_preview(root, png, bbox=(-23, -2, -18, 3), width=640)
    image = _rgba(png)
    assert result.colors["DD"] != result.colors["AA"]
    assert _is(result.colors["DD"], _pixel(result, image, -20.3, 0.2))
    assert _is(result.colors["AA"], _pixel(result, image, -22.5, -1.5))


def test_the_same_partition_draws_the_same_picture(root: Path, tmp_path: Path) -> None:
    a = render_preview(root, tmp_path / "a.png", width=400)
    b = render_preview(root, tmp_path / "b.png", width=400)
    assert a.colors == b.colors
    assert np.array_equal(_rgba(a.png), _rgba(b.png))


def test_a_grid_in_0_to_360_longitudes_is_found_by_a_bbox(tmp_path: Path) -> None:
    iso, countries, raster = make_inputs(
        tmp_path,
        {"EE": [shapely.box(330, -5, 340, 5)]},
        ncols=360,
        nrows=180,
        transform=(1.0, 0.0, 0.0, 0.0, -1.0, 90.0),
    )
    build(iso, countries, raster, tmp_path / "out")
    png = tmp_path / "e.png"
    result = render_preview(tmp_path / "out", png, bbox=(-35, -10, -15, 10), width=400)
    assert result.bbox == (-35.0, -10.0, -15.0, 10.0)
    assert result.rows_drawn == 100
    assert _is(result.colors["EE"], _pixel(result, _rgba(png), -29, -4))


# -- choosing the partition --------------------------------------------------------------


def _partition(root: Path) -> Path:
    (only,) = (root / "data/layer1/1B/tile_index").iterdir()
    return only


def _phash(root: Path) -> str:
    return _partition(root).name.split("=", 1)[1]


def test_an_explicit_parameter_hash_is_drawn(root: Path, tmp_path: Path) -> None:
    result = render_preview(root, tmp_path / "p.png", parameter_hash=_phash(root), width=400)
    assert result.parameter_hash == _phash(root)


def test_several_partitions_need_a_parameter_hash(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(root, copy)
    phash, other = _phash(root), "0" * 64
    paths = DatasetDictionary.load()
    shutil.copytree(paths.path("tile_index", copy, phash), paths.path("tile_index", copy, other))
    with pytest.raises(ConfigError, match="pass --parameter-hash") as info:
        render_preview(copy, tmp_path / "x.png")
    assert phash in str(info.value) and other in str(info.value)
    # the copy has no report: named as missing when picked
    with pytest.raises(InputFileError, match=r"run report .* is missing"):
        render_preview(copy, tmp_path / "x.png", parameter_hash=other)


def test_no_partition_says_to_build_first(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="tileindex build"):
        render_preview(tmp_path, tmp_path / "x.png")


def test_an_unbuilt_parameter_hash_is_named(root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        render_preview(root, tmp_path / "x.png", parameter_hash="f" * 64)


def test_a_report_without_a_grid_is_refused(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(root, copy)
    report = DatasetDictionary.load().path("run_report", copy, _phash(root))
    doc = json.loads(report.read_text())
    del doc["grid_transform"]
    report.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="grid_transform"):
        render_preview(copy, tmp_path / "x.png")


# -- bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["1,2,3", "a,b,c,d", "10,0,5,5", "0,5,5,5", "-190,0,0,5", "0,-95,5,5", "0,0,nan,5"],
)
def test_a_bad_bbox_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="bbox"):
        parse_bbox(text)


def test_a_bbox_off_the_grid_names_the_grid_extent(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not meet the grid.*lat -60\.\.60"):
        render_preview(root, tmp_path / "x.png", bbox=(0, 70, 10, 80))


@pytest.mark.parametrize("width", [10, 100_000])
def test_a_bad_width_is_refused(root: Path, tmp_path: Path, width: int) -> None:
    with pytest.raises(ConfigError, match="width"):
        render_preview(root, tmp_path / "x.png", width=width)


def test_an_existing_png_is_not_replaced_without_overwrite(root: Path, tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    png.write_bytes(b"keep")
    with pytest.raises(ConfigError, match="already exists"):
        render_preview(root, png, width=400)
    assert png.read_bytes() == b"keep"
    render_preview(root, png, width=400, overwrite=True)
    assert _rgba(png).shape[1] == 400


# -- the command ---------------------------------------------------------------------------


def test_cli_prints_the_png_and_what_it_shows(root: Path, tmp_path: Path) -> None:
    png = tmp_path / "cli.png"
    args = ["--out", str(root), "--png", str(png), "--bbox", "-25,-5,5,5"]
    result = CliRunner().invoke(preview, [*args, "--width", "400"])
    assert result.exit_code == 0, result.output
    assert str(png) in result.stdout
    assert "full detail" in result.stdout
    assert _rgba(png).shape[1] == 400


def test_cli_without_a_partition_fails_cleanly(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--png", str(tmp_path / "x.png")]
    result = CliRunner().invoke(preview, args)
    assert result.exit_code == 1
    assert "error: no tile_index partition" in result.stderr
    assert "Traceback" not in result.output


def test_cli_rejects_a_bad_bbox_as_a_usage_error(root: Path, tmp_path: Path) -> None:
    args = ["--out", str(root), "--png", str(tmp_path / "x.png"), "--bbox", "1,2,3"]
    result = CliRunner().invoke(preview, args)
    assert result.exit_code == 2
    assert "W,S,E,N" in result.stderr


# -- region mode (docs/CONTRACT.md §10.1) ------------------------------------------------


@pytest.fixture(scope="module")
def tiling_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tiling]:
    folder = tmp_path_factory.mktemp("tiling")
    tiling = make_tiling(folder, 24)
    build(tiling.keys, tiling.regions, tiling.raster, folder / "out", key_column="region_id")
    return folder / "out", tiling


def _inner_point(poly: shapely.Polygon, grid_cell: float) -> tuple[float, float]:
    """A point of ``poly`` two cells from its boundary (a pixel there is the region's at
    full detail whatever the predicate), near a corner: away from the label, which sits
    on the region's deepest pixel."""
    core = poly.buffer(-2 * grid_cell, join_style="mitre")
    x, y = core.exterior.coords[0]
    return float(x), float(y)


def test_a_region_build_is_drawn_by_its_key_column(
    tiling_root: tuple[Path, Tiling], tmp_path: Path
) -> None:
    root, tiling = tiling_root
    png = tmp_path / "regions.png"
    w, s, e, n = tiling.window
    result = render_preview(root, png, bbox=(w, s, e, n), width=800)

    assert result.key_column == "region_id"
    assert set(result.colors) == set(tiling.codes)  # all 24 regions hold cells and pixels
    assert result.countries_in_view == result.countries_drawn == 24
    image = _rgba(png)
    for code, poly in zip(tiling.codes, tiling.polygons, strict=True):
        lon, lat = _inner_point(poly, 0.1)
        assert _is(result.colors[code], _pixel(result, image, lon, lat)), code


def test_regions_sharing_a_border_get_different_colours(
    tiling_root: tuple[Path, Tiling], tmp_path: Path
) -> None:
    root, tiling = tiling_root
    result = render_preview(root, tmp_path / "r.png", bbox=tiling.window, width=800)
    polys = dict(zip(tiling.codes, tiling.polygons, strict=True))
    shared = [
        (a, b)
        for i, a in enumerate(tiling.codes)
        for b in tiling.codes[i + 1 :]
        if polys[a].intersection(polys[b]).length > 0.5  # a border, not a corner
    ]
    assert len(shared) >= 24  # a 4 x 6 lattice has 38 inner borders
    for a, b in shared:
        assert result.colors[a] != result.colors[b], (a, b)


def test_the_cli_names_the_key_column(tiling_root: tuple[Path, Tiling], tmp_path: Path) -> None:
    root, _ = tiling_root
    args = ["--out", str(root), "--png", str(tmp_path / "c.png"), "--width", "400"]
    result = CliRunner().invoke(preview, args)
    assert result.exit_code == 0, result.output
    assert "24 region_id keys drawn" in result.stdout


def test_ten_thousand_keys_colour_every_neighbour_differently() -> None:
    # 12,000 keys as blocks of 3 x 3 pixels, each row of blocks shifted by a pixel so
    # blocks meet along edges and at corners; colouring is what the preview runs
    from tileindex.preview import _assign_colours, _Keys

    rows, cols, side = 100, 120, 3
    y, x = np.mgrid[0 : rows * side, 0 : cols * side + 1]
    block_row = y // side
    block_col = np.minimum((x + block_row % 2) // side, cols - 1)
    best = (1 + block_row * cols + block_col).astype(np.uint32)
    keys = _Keys("region_id")
    names = pa.array([f"R{i:05d}" for i in range(1, rows * cols + 1)])
    keys.indexes(names, Path("synthetic"), "tile_index", None)
    assert len(keys) == rows * cols

    colours = _assign_colours(best, keys)
    assert len(colours) == rows * cols
    # neighbours found here independently: every pair of 8-adjacent pixels
    pairs = set()
    h, w = best.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = best[: h - dy, max(0, -dx) : w - max(0, dx)]
        b = best[dy:, max(0, dx) : w - max(0, -dx)]
        differ = a != b
        pairs |= set(zip(a[differ].tolist(), b[differ].tolist(), strict=True))
    assert len(pairs) > 3 * rows * cols
    assert all(colours[u] != colours[v] for u, v in pairs)


# -- coverage (docs/CONTRACT.md §10.3) ---------------------------------------------------

# On GRID (0.5° cells from -180, 60): KK's east edge halves a column of cells, its north
# edge halves a row, its north-east corner cell is a quarter covered; LL and MM split the
# column 20..20.5 at 20.1, 0.2 for LL and 0.8 for MM (the sum would read 1.0).
COVERAGE_COUNTRIES = {
    "KK": [shapely.box(0.0, 0.0, 5.25, 4.75)],
    "LL": [shapely.box(10.0, 0.0, 20.1, 5.0)],
    "MM": [shapely.box(20.1, 0.0, 30.0, 5.0)],
    # in the world view (2 x 2 cells per pixel, pixels on whole degrees): each stripe
    # fills the west half of a pixel, so every pixel over lon 40..50 reads 0.5
    "SS": [shapely.box(40.0 + i, -30.0, 40.5 + i, -20.0) for i in range(10)],
}


@pytest.fixture(scope="module")
def coverage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("coverage")
    iso, countries, raster = make_inputs(
        folder, COVERAGE_COUNTRIES, ncols=NCOLS, nrows=NROWS, transform=GRID
    )
    build(iso, countries, raster, folder / "out", predicate="any_overlap", coverage=True)
    return folder / "out"


def _cell_fraction(code: str, lon: float, lat: float) -> float:
    """area(cell ∩ country) / area(cell) of the GRID cell holding (lon, lat), by shapely."""
    x0 = -180.0 + 0.5 * np.floor((lon + 180.0) / 0.5)
    y1 = 60.0 - 0.5 * np.floor((60.0 - lat) / 0.5)
    cell = shapely.box(x0, y1 - 0.5, x0 + 0.5, y1)
    shape = shapely.union_all(COVERAGE_COUNTRIES[code])
    return float(cell.intersection(shape).area / cell.area)


def _shade(fraction: float) -> str:
    """The colour the docs give a fraction: the sequential colormap at that value."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["YlGnBu"](fraction))


def test_coverage_shades_full_half_and_quarter_cells(coverage_root: Path, tmp_path: Path) -> None:
    png = tmp_path / "cov.png"
    result = render_preview(coverage_root, png, bbox=(-2, -2, 8, 7), width=800, coverage=True)
    assert result.coverage and result.cells_per_pixel == 1
    image = _rgba(png)
    points = {"full": (2.2, 2.2), "half east": (5.2, 2.2), "half north": (2.2, 4.6)}
    points["quarter"] = (5.2, 4.6)
    expected = {"full": 1.0, "half east": 0.5, "half north": 0.5, "quarter": 0.25}
    for name, (lon, lat) in points.items():
        fraction = _cell_fraction("KK", lon, lat)
        assert fraction == expected[name], name
        assert _is(_shade(fraction), _pixel(result, image, lon, lat)), name
    # a full and a half cell differ visibly; a cell with no row is the no-country grey
    assert not _is(_shade(1.0), _pixel(result, image, 5.2, 2.2))
    assert _is(NO_COUNTRY, _pixel(result, image, 6.3, 2.2))
    # rows below 1.0: KK's cells that are not full, counted here cell by cell
    partial = [
        (lon, lat)
        for lon in np.arange(0.25, 5.5, 0.5)
        for lat in np.arange(0.25, 5.0, 0.5)
        if 0 < _cell_fraction("KK", lon, lat) < 1
    ]
    assert len(partial) == 9 + 10 + 1  # east column, north row, the corner
    assert result.rows_below_one == len(partial)


def test_a_cell_two_countries_share_shows_the_largest_fraction(
    coverage_root: Path, tmp_path: Path
) -> None:
    png = tmp_path / "shared.png"
    result = render_preview(coverage_root, png, bbox=(15, -2, 25, 7), width=800, coverage=True)
    lon, lat = 20.2, 2.2
    ll, mm = _cell_fraction("LL", lon, lat), _cell_fraction("MM", lon, lat)
    assert (round(ll, 12), round(mm, 12)) == (0.2, 0.8)
    pixel = _pixel(result, _rgba(png), lon, lat)
    assert _is(_shade(max(ll, mm)), pixel)
    assert not _is(_shade(1.0), pixel)  # not the sum


def test_a_downsampled_pixel_shows_the_share_one_country_covers(
    coverage_root: Path, tmp_path: Path
) -> None:
    png = tmp_path / "world.png"
    result = render_preview(coverage_root, png, width=400, coverage=True)
    assert result.cells_per_pixel == 2
    image = _rgba(png)
    # the pixel of lon 44..45, lat -26..-25: two of its four cells full, two empty
    cells = [(44.25, -25.25), (44.75, -25.25), (44.25, -25.75), (44.75, -25.75)]
    share = sum(_cell_fraction("SS", lon, lat) for lon, lat in cells) / 4
    assert share == 0.5
    assert _is(_shade(share), _pixel(result, image, 44.5, -25.5))
    assert _is(_shade(1.0), _pixel(result, image, 2.5, 2.5))  # inside KK


def test_coverage_of_a_build_without_it_says_to_rebuild(root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"rebuild with --coverage"):
        render_preview(root, tmp_path / "x.png", coverage=True)
    with pytest.raises(InputFileError, match=r"rebuild with --coverage"):
        render_preview(root, tmp_path / "x.png", coverage=True, parameter_hash=_phash(root))
    assert not (tmp_path / "x.png").exists()


def test_coverage_picks_the_build_that_has_it(coverage_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(coverage_root, copy)
    iso, countries, raster = make_inputs(
        tmp_path, COVERAGE_COUNTRIES, ncols=NCOLS, nrows=NROWS, transform=GRID
    )
    plain = build(iso, countries, raster, copy, predicate="any_overlap")
    with_coverage = render_preview(copy, tmp_path / "c.png", coverage=True, width=400)
    assert with_coverage.parameter_hash != plain.parameter_hash
    with pytest.raises(ConfigError, match="pass --parameter-hash"):
        render_preview(copy, tmp_path / "i.png", width=400)  # two tile_index partitions


def test_cli_coverage_prints_the_shaded_rows_and_fails_cleanly_without(
    coverage_root: Path, root: Path, tmp_path: Path
) -> None:
    png = tmp_path / "cli.png"
    args = ["--out", str(coverage_root), "--png", str(png), "--coverage", "--width", "400"]
    ok = CliRunner().invoke(preview, args)
    assert ok.exit_code == 0, ok.output
    assert "with coverage_fraction < 1 (shaded)" in ok.stdout
    args = ["--out", str(root), "--png", str(tmp_path / "bad.png"), "--coverage"]
    bad = CliRunner().invoke(preview, args)
    assert bad.exit_code == 1
    assert "rebuild with --coverage" in bad.stderr
    assert "Traceback" not in bad.output
