"""``tileindex preview``: draw a published tile_index partition as a PNG map."""

from __future__ import annotations

from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    dictionary_option,
    out_read_option,
    parameter_hash_option,
)
from tileindex.errors import ConfigError
from tileindex.preview import MAX_WIDTH, MIN_WIDTH, PreviewResult, parse_bbox, render_preview


class _BBox(click.ParamType):
    name = "W,S,E,N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, float, float, float]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_bbox(str(value))
        except ConfigError as exc:
            self.fail(exc.message, param, ctx)


@click.command(name="preview", short_help="Draw a published tile index as a PNG map.")
@out_read_option(dest="root")
@parameter_hash_option("the partition to draw (default: the only one under OUT).")
@click.option(
    "--png",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Written: the PNG file.",
)
@click.option(
    "--bbox",
    type=_BBox(),
    default=None,
    help="Draw only this lon/lat box, in degrees, at full detail (default: the whole grid).",
)
@click.option(
    "--width",
    type=click.IntRange(MIN_WIDTH, MAX_WIDTH),
    default=1600,
    show_default=True,
    help="Width of the PNG in pixels.",
)
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@click.option("--overwrite", is_flag=True, help="Replace the PNG if it exists.")
def preview(
    root: Path,
    parameter_hash: str | None,
    png: Path,
    bbox: tuple[float, float, float, float] | None,
    width: int,
    dictionary: Path | None,
    overwrite: bool,
) -> None:
    """Draw the tile_index partition under OUT as a map: cells coloured by country.

    The world view downsamples (each pixel takes the country with most cells in it);
    --bbox draws a region cell by cell. Rows are streamed, so memory stays small for
    any partition size.

    \b
    Examples:
      tileindex preview --out out --png world.png
      tileindex preview --out out --png benelux.png --bbox 2.5,49.4,7.3,53.6
    """
    with clean_errors():
        result = render_preview(
            root,
            png,
            parameter_hash=parameter_hash,
            bbox=bbox,
            width=width,
            dictionary=dictionary,
            overwrite=overwrite,
        )
    _echo(result)


def _echo(result: PreviewResult) -> None:
    w, s, e, n = result.bbox
    scale = (
        "full detail"
        if result.cells_per_pixel == 1
        else f"1 pixel = {result.cells_per_pixel} x {result.cells_per_pixel} cells"
    )
    click.echo(str(result.png))
    click.echo(
        f"  parameter_hash {result.parameter_hash}\n"
        f"  lon {w:g}..{e:g}, lat {s:g}..{n:g}, {scale}\n"
        f"  {result.rows_drawn:,} rows, {result.countries_drawn} countries drawn "
        f"({result.countries_in_view} with cells in view)"
    )
