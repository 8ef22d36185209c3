"""``tileindex mask``: a window of a published index as a GeoTIFF of region ids or
coverage fractions, with an id table beside it."""

from __future__ import annotations

from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import dictionary_option, parameter_hash_option
from tileindex.errors import ConfigError
from tileindex.index import open_index
from tileindex.mask import write_mask


def _bbox(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 4:
        raise click.BadParameter(f"{value!r} is not four numbers W,S,E,N, e.g. 5,45,11,48")
    return numbers


@click.command(name="mask", short_help="Write a window of the index as a GeoTIFF mask.")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False), metavar="ROOT")
@click.option(
    "--bbox",
    required=True,
    callback=_bbox,
    metavar="W,S,E,N",
    help="The window, in degrees of the grid: every cell that meets this box.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE.tif",
    help="Written: the GeoTIFF (COG), and FILE.ids.csv beside it.",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="One float64 band of coverage_fraction per region in view (needs tile_coverage) "
    "instead of one uint32 band of region ids.",
)
@click.option(
    "--chunk", type=int, default=1024, show_default=True, help="Cells per side of a chunk."
)
@parameter_hash_option("the partition to draw (default: the only one under ROOT).")
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@click.option("--overwrite", is_flag=True, help="Replace FILE and FILE.ids.csv if they exist.")
def mask(
    root: Path,
    bbox: tuple[float, float, float, float],
    out: Path,
    coverage: bool,
    chunk: int,
    parameter_hash: str | None,
    dictionary: Path | None,
    overwrite: bool,
) -> None:
    """Write the cells of the index under ROOT (the --out of a build) that meet --bbox as
    a GeoTIFF on the grid's own transform (EPSG:4326): region ids (uint32, 0 = none; the
    id -> key table in FILE.ids.csv), or with --coverage the coverage fractions.

    \b
    Examples:
      tileindex mask out/ --bbox 5,45,11,48 --out ch.tif
      tileindex mask out/ --bbox 5,45,11,48 --coverage --out ch_fraction.tif
    """
    with clean_errors():
        if out.suffix.lower() not in (".tif", ".tiff"):
            raise ConfigError(f"--out {out}: the mask is a GeoTIFF; give a name ending in .tif")
        index = open_index(root, parameter_hash, dictionary)
        result = write_mask(index, bbox, out, coverage=coverage, overwrite=overwrite, chunks=chunk)
    w = result.window
    click.echo(
        f"{result.path}: {w.width} x {w.height} cells (rows {w.row_start}..{w.row_stop - 1}, "
        f"cols {w.col_start}..{w.col_stop - 1}), {result.bands} band(s); ids in {result.ids_path}"
    )
