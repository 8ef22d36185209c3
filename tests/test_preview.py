"""``tileindex preview``: the PNG shows each country in its colour, at the right scale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
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

from factories import make_inputs

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
