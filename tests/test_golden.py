"""Golden regression on real borders: the whole world built at 150″ from the prepared
Natural Earth / pycountry / WorldPop-grid inputs, for both predicates, compared with
``tests/golden/world150_{center,any_overlap}.json`` (provenance: tests/data/README.md),
plus facts that follow from the geography itself rather than from recorded output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import shapely

from golden.regenerate import (
    COUNTRIES,
    PREDICATES,
    REGENERATE,
    RESOLUTION_ARCSEC,
    VALUE_FIELDS,
    WorldOutputs,
    build_world,
    country_values,
    golden_path,
    input_facts,
    read_outputs,
)
from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid
from tileindex.inputs import read_country_layer, read_grid, read_iso_list
from tileindex.prepare import PrepareResult, prepare_inputs

HOW = f"if the change is deliberate, run `{REGENERATE}` and say why in CHANGES.md"
DATELINE = ("FJ", "KI", "NZ", "RU")  # known to straddle ±180
# (host, enclave owner): a hole of the host is a part of the enclave owner
ENCLAVES = (("ZA", "LS"), ("IT", "SM"), ("IT", "VA"), ("FR", "ES"))


@dataclass(frozen=True)
class World:
    prepared: PrepareResult
    grid: Grid
    geoms: dict[str, CountryGeometry]
    outputs: dict[str, WorldOutputs]  # per predicate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # ~1 s to prepare, ~6 s (center) and ~11 s (any_overlap) to build on one core
    tmp = tmp_path_factory.mktemp("golden")
    prepared = prepare_inputs(tmp / "inputs", RESOLUTION_ARCSEC)
    layer = read_country_layer(prepared.countries_path, read_iso_list(prepared.iso_path))
    outputs = {}
    for predicate in PREDICATES:
        result, _seconds = build_world(prepared, tmp / predicate, predicate)
        outputs[predicate] = read_outputs(result, COUNTRIES)
    return World(
        prepared=prepared,
        grid=read_grid(prepared.grid_path).grid,
        geoms={code: country_geometry(code, layer.rows[code]) for code in COUNTRIES},
        outputs=outputs,
    )


@pytest.fixture(scope="module")
def golden() -> dict[str, dict[str, Any]]:
    docs = {}
    for predicate in PREDICATES:
        path = golden_path(predicate)
        if not path.is_file():
            pytest.fail(f"golden file {path} is missing; run `{REGENERATE}`")
        docs[predicate] = json.loads(path.read_text(encoding="utf-8"))
    return docs


def _inputs_changed(world: World, doc: dict[str, Any]) -> str | None:
    now, then = input_facts(world.prepared), doc["inputs"]
    if now["digests"] == then["digests"]:
        return None
    files = ", ".join(
        f"{name} {then['digests'].get(name, '?')[:12]} -> {digest[:12]}"
        for name, digest in now["digests"].items()
        if then["digests"].get(name) != digest
    )
    sources = ("pycountry", "natural_earth_package", "natural_earth_version")
    moved = [f"{k} {then.get(k)} -> {now[k]}" for k in sources if then.get(k) != now[k]]
    why = (
        "; ".join(moved)
        if moved
        else "the package versions are the same, so tileindex.prepare must have changed"
    )
    return (
        f"the prepared inputs changed since the golden files were made ({files}; {why}); "
        "golden values are only comparable on the same inputs. If the new inputs are "
        f"intended, run `{REGENERATE}` and note it in CHANGES.md"
    )


def _cells(world: World, predicate: str, code: str) -> set[int]:
    return set(world.outputs[predicate].tile_ids[code].tolist())


def _centroids(grid: Grid, tile_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.asarray(tile_ids, dtype=np.uint64), np.uint64(grid.ncols))
    return grid.centroid_lon(cols), grid.centroid_lat(rows)


# -- the golden values -----------------------------------------------------------------


def test_golden_files_describe_this_grid(world: World, golden: dict[str, dict]) -> None:
    grid = world.grid
    for predicate, doc in golden.items():
        assert doc["predicate"] == predicate
        assert doc["grid"] == {
            "resolution_arcsec": RESOLUTION_ARCSEC,
            "ncols": grid.ncols,
            "nrows": grid.nrows,
            "transform": list(grid.transform),
        }, f"{golden_path(predicate).name} was made on another grid; {HOW}"
        assert sorted(doc["countries"]) == sorted(COUNTRIES), (
            f"{golden_path(predicate).name} holds other countries than the suite checks; {HOW}"
        )
    # WorldPop's top-left corner, so the west edge overhangs -180 by 0.00125 degrees
    assert (grid.c, grid.f) == (-180.0012493, 83.6329165016827)


@pytest.mark.parametrize("predicate", PREDICATES)
def test_inputs_are_those_of_the_golden_files(
    world: World, golden: dict[str, dict], predicate: str
) -> None:
    changed = _inputs_changed(world, golden[predicate])
    assert changed is None, changed


@pytest.mark.parametrize("code", COUNTRIES)
@pytest.mark.parametrize("predicate", PREDICATES)
def test_country_matches_golden(
    world: World, golden: dict[str, dict], predicate: str, code: str
) -> None:
    doc = golden[predicate]
    changed = _inputs_changed(world, doc)
    if changed:
        pytest.fail(changed)
    outputs = world.outputs[predicate]
    got = country_values(outputs.tile_ids[code], outputs.summaries[code])
    want = doc["countries"][code]
    wrong = [
        f"{field} is {got[field]!r}, golden {want.get(field)!r}"
        for field in VALUE_FIELDS
        if got[field] != want.get(field)
    ]
    assert not wrong, (
        f"{code} under {predicate} differs from {golden_path(predicate).name}: "
        f"{'; '.join(wrong)}. {HOW}"
    )


@pytest.mark.parametrize("predicate", PREDICATES)
def test_world_totals_match_golden(world: World, golden: dict[str, dict], predicate: str) -> None:
    doc = golden[predicate]
    changed = _inputs_changed(world, doc)
    if changed:
        pytest.fail(changed)
    outputs = world.outputs[predicate]
    got = {
        "countries_total": outputs.report["countries_total"],
        "countries_with_rows": sum(1 for s in outputs.summaries.values() if s["cells_included"]),
        "rows_emitted": outputs.report["rows_emitted"],
    }
    assert got == doc["world"], f"world totals under {predicate}: {got} != {doc['world']}. {HOW}"


# -- facts from geography --------------------------------------------------------------


def test_center_cells_are_any_overlap_cells(world: World) -> None:
    # a centroid in or on the outline of a valid polygon has polygon area in every
    # neighbourhood, so a center cell always overlaps the country's interior
    for code in COUNTRIES:
        center = world.outputs["center"].tile_ids[code]
        overlap = world.outputs["any_overlap"].tile_ids[code]
        extra = center[~np.isin(center, overlap, assume_unique=True)]
        assert extra.size == 0, f"{code}: center cells {extra[:3].tolist()} do not overlap it"


def test_any_overlap_cells_cover_the_country(world: World) -> None:
    # the included cells cover the country, so their planar lon/lat area is at least its
    # area (every golden country lies within the grid's latitudes)
    cell = world.grid.a * -world.grid.e
    south = world.grid.f + world.grid.e * world.grid.nrows
    for code in COUNTRIES:
        geom = world.geoms[code].geom
        assert geom.bounds[1] > south and geom.bounds[3] < world.grid.f, code
        rows = world.outputs["any_overlap"].tile_ids[code].size
        assert rows * cell >= geom.area, (code, rows, geom.area / cell)


@pytest.mark.parametrize("code", ["VA", "SM"])
def test_tiny_states_match_a_direct_computation(world: World, code: str) -> None:
    """Every cell near the state decided directly with shapely: centroid covered, and
    positive area of the cell's intersection with the state."""
    grid, geom = world.grid, world.geoms[code].geom
    assert len(world.geoms[code].parts) == 1 and not world.geoms[code].parts[0].interiors
    minx, miny, maxx, maxy = geom.bounds
    col0 = int(np.floor((minx - grid.c) / grid.a)) - 1
    col1 = int(np.floor((maxx - grid.c) / grid.a)) + 2
    row0 = int(np.floor((maxy - grid.f) / grid.e)) - 1
    row1 = int(np.floor((miny - grid.f) / grid.e)) + 2
    rows, cols = np.meshgrid(np.arange(row0, row1), np.arange(col0, col1), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    tids = grid.tile_id(rows, cols)
    x0, x1 = grid.raw_x_edges(cols)
    south, north = grid.lat_bounds(rows)
    in_center = shapely.intersects_xy(geom, grid.centroid_lon(cols), grid.centroid_lat(rows))
    overlap = shapely.area(shapely.intersection(geom, shapely.box(x0, south, x1, north))) > 0
    assert _cells(world, "center", code) == set(tids[in_center].tolist())
    assert _cells(world, "any_overlap", code) == set(tids[overlap].tolist())


def test_vatican_is_smaller_than_a_cell(world: World) -> None:
    grid, geom = world.grid, world.geoms["VA"].geom
    minx, miny, maxx, maxy = geom.bounds
    # narrower and lower than one cell: at most one centroid can fall inside, and the
    # state meets at most 2 x 2 cells, at least one of them with positive area
    assert maxx - minx < grid.a and maxy - miny < -grid.e
    assert len(_cells(world, "center", "VA")) <= 1
    assert 1 <= len(_cells(world, "any_overlap", "VA")) <= 4


@pytest.mark.parametrize(("host", "owner"), ENCLAVES)
def test_enclave_cells_are_not_host_cells(world: World, host: str, owner: str) -> None:
    holes = [shapely.Polygon(h) for p in world.geoms[host].parts for h in p.interiors]
    enclaves = [p for p in world.geoms[owner].parts if any(p.equals(h) for h in holes)]
    assert enclaves, f"no part of {owner} is a hole of {host} in these inputs"
    # under center a centroid in or on the enclave's outline is the owner's and, being
    # in or on a hole of the host, never the host's
    owner_ids = world.outputs["center"].tile_ids[owner]
    inside = shapely.intersects_xy(shapely.union_all(enclaves), *_centroids(world.grid, owner_ids))
    assert not set(owner_ids[inside].tolist()) & _cells(world, "center", host)
    if owner != "ES":  # Llívia's cells are not all across its outline: no claim
        # a cell across the outline overlaps both
        assert _cells(world, "any_overlap", host) & _cells(world, "any_overlap", owner)


@pytest.mark.parametrize("host", sorted({h for h, _ in ENCLAVES}))
def test_host_holes_are_enclaves(world: World, host: str) -> None:
    """ZA's only hole is Lesotho, IT's are San Marino and the Vatican, FR's is Llívia;
    so the centroids the host loses to holes are exactly its enclaves' centroids."""
    owners = sorted({o for h, o in ENCLAVES if h == host})
    holes = [shapely.Polygon(h) for p in world.geoms[host].parts for h in p.interiors]
    for hole in holes:
        assert any(hole.equals(p) for o in owners for p in world.geoms[o].parts), host
    in_holes = sum(
        int(
            shapely.intersects_xy(
                shapely.union_all(holes),
                *_centroids(world.grid, world.outputs["center"].tile_ids[o]),
            ).sum()
        )
        for o in owners
    )
    assert world.outputs["center"].summaries[host]["cells_excluded_hole"] == in_holes


@pytest.mark.parametrize("predicate", PREDICATES)
def test_dateline_countries_have_cells_on_both_sides(world: World, predicate: str) -> None:
    """A country with land well inside both 170..180 and -180..-170 has cells there."""
    east, west = shapely.box(170.5, -90, 179.5, 90), shapely.box(-179.5, -90, -170.5, 90)
    crossing = []
    for code in COUNTRIES:
        geom = world.geoms[code].geom
        if not (geom.intersection(east).area > 0 and geom.intersection(west).area > 0):
            continue
        crossing.append(code)
        shapely.prepare(geom)
        lon, _ = _centroids(world.grid, world.outputs[predicate].tile_ids[code])
        if predicate == "center":
            # land is not enough for a centroid: look for one inside the land
            grid = world.grid
            cols = np.arange(grid.ncols)
            lons = grid.centroid_lon(cols)
            rows = np.arange(grid.nrows)
            for side, strip in (("east", lons > 170.5), ("west", lons < -170.5)):
                xs, ys = np.meshgrid(lons[strip], grid.centroid_lat(rows))
                expected = bool(shapely.contains_xy(geom, xs.ravel(), ys.ravel()).any())
                has = bool((lon > 170.5).any() if side == "east" else (lon < -170.5).any())
                assert has or not expected, f"{code} has no {predicate} cell on the {side}"
        else:
            assert (lon > 170).any() and (lon < -170).any(), code
    assert set(DATELINE) <= set(crossing), crossing


def test_first_column_is_tested_at_its_wrapped_position(world: World) -> None:
    """Column 0 spans -180.00125..-179.958: its western sliver lies next to +180. Its
    any_overlap cells are exactly those whose two pieces overlap the country."""
    grid = world.grid
    x0, x1 = grid.raw_x_edges(0)
    rows = np.arange(grid.nrows)
    south, north = grid.lat_bounds(rows)
    west = shapely.box(-180.0, south, float(x1), north)
    east = shapely.box(float(x0) + 360.0, south, 180.0, north)
    assert x0 < -180.0
    for code in ("RU", "FJ"):
        geom = world.geoms[code].geom
        area = shapely.area(shapely.intersection(geom, west)) + shapely.area(
            shapely.intersection(geom, east)
        )
        expected = set(grid.tile_id(rows[area > 0], 0).tolist())
        ids = world.outputs["any_overlap"].tile_ids[code]
        got = set(ids[ids % np.uint64(grid.ncols) == 0].tolist())
        assert expected and got == expected, code


def test_neighbours_have_cells_and_share_the_border(world: World) -> None:
    border = world.geoms["BE"].geom.intersection(world.geoms["NL"].geom)
    assert border.length > 0  # BE and NL share a land border in these inputs
    for predicate in PREDICATES:
        assert _cells(world, predicate, "BE") and _cells(world, predicate, "NL")
    assert _cells(world, "any_overlap", "BE") & _cells(world, "any_overlap", "NL")


def test_codes_from_the_fallback_field_have_cells(world: World) -> None:
    fallbacks = {f["country_iso"] for f in world.prepared.report["fallbacks"]}
    for code in ("FR", "NO", "TW"):
        assert code in fallbacks, f"{code} no longer needs ISO_A2_EH"
        for predicate in PREDICATES:
            assert _cells(world, predicate, code), (code, predicate)


def test_golden_files_are_canonical_json() -> None:
    for predicate in PREDICATES:
        text = golden_path(predicate).read_text(encoding="utf-8")
        doc = json.loads(text)
        assert text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
