"""``tileindex demo``: the whole world from real borders, with one command."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from tileindex.cache import default_cache_dir
from tileindex.cli._common import clean_errors, print_build_summary, progress_telemetry
from tileindex.demo import DEFAULT_DEMO_DIR, run_demo
from tileindex.predicates import PREDICATES


@click.command(name="demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DEMO_DIR,
    show_default=True,
    help="Folder for the cached inputs, the published datasets and the preview map.",
)
@click.option(
    "--resolution",
    type=float,
    default=30.0,
    show_default=True,
    help="Grid resolution in arc-seconds (30 = the WorldPop 1 km grid; 150 is a quick try).",
)
@click.option("--predicate", type=click.Choice(PREDICATES), default="center", show_default=True)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes (default: all cores; 1 runs in this process).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the mask cache.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
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
