"""``tileindex demo``: the whole world from real borders, with one command."""

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
from tileindex.demo import DEFAULT_DEMO_DIR, run_demo


@click.command(name="demo")
@out_written_option(
    "the folder for the prepared inputs, the output root and the preview map.",
    default=DEFAULT_DEMO_DIR,
)
@resolution_option(help="150 is a quick try.")
@predicate_option()
@workers_option
@click.option("--no-cache", is_flag=True, help="Do not read or write the mask cache.")
@quiet_option
def demo(
    out: Path, resolution: float, predicate: str, workers: int | None, no_cache: bool, quiet: bool
) -> None:
    """Build the tile index of the whole world from real borders and draw it.

    Prepares the ISO list (pycountry), the Natural Earth 1:10m countries and the
    WorldPop grid into OUT once, builds every country with a live progress display,
    prints a summary with the largest countries, and writes a preview PNG beside the
    run report. At the default 30″ the world is ~221 M rows.
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
        )
    print_build_summary(result.build)
    table = Table(title="largest countries (rows)", title_justify="left")
    table.add_column("country")
    table.add_column("rows", justify="right")
    for iso, rows in result.largest:
        table.add_row(iso, f"{rows:,}")
    Console().print(table)
    click.echo(f"preview map: {result.preview_png}")
