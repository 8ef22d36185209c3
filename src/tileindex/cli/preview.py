"""``tileindex preview``: draw a published partition as a PNG map (keys, or with
--coverage the tile_coverage fractions)."""

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
@click.option(
    "--coverage",
    is_flag=True,
    help="Draw tile_coverage instead: each cell shaded by its coverage_fraction (the "
    "largest over the keys that hold it; a downsampled pixel by the largest share one "
    "key covers). Needs a build with --coverage.",
)
@click.option("--overwrite", is_flag=True, help="Replace the PNG if it exists.")
def preview(
    root: Path,
    parameter_hash: str | None,
    png: Path,
    bbox: tuple[float, float, float, float] | None,
    width: int,
    dictionary: Path | None,
    coverage: bool,
    overwrite: bool,
) -> None:
    """Draw the tile_index partition under OUT as a map: cells coloured by key (the
    country, or the region of a --key-column build; the run report names the column).

    The world view downsamples (each pixel takes the key with most cells in it);
    --bbox draws a region cell by cell. With --coverage the cells are shaded by their
    coverage_fraction instead (a build with --coverage). Rows are streamed, so memory
    stays small for any partition size.

    \b
    Examples:
      tileindex preview --out out --png world.png
      tileindex preview --out out --png benelux.png --bbox 2.5,49.4,7.3,53.6
      tileindex preview --out out --png swiss.png --bbox 5.5,45.5,10.5,48 --coverage
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
            coverage=coverage,
        )
    _echo(result)


def _echo(result: PreviewResult) -> None:
    w, s, e, n = result.bbox
    scale = (
        "full detail"
        if result.cells_per_pixel == 1
        else f"1 pixel = {result.cells_per_pixel} x {result.cells_per_pixel} cells"
    )
    keys = "countries" if result.key_column == "country_iso" else f"{result.key_column} keys"
    shades = (
        f", {result.rows_below_one:,} with coverage_fraction < 1 (shaded)"
        if result.coverage
        else ""
    )
    click.echo(str(result.png))
    click.echo(
        f"  parameter_hash {result.parameter_hash}\n"
        f"  lon {w:g}..{e:g}, lat {s:g}..{n:g}, {scale}\n"
        f"  {result.rows_drawn:,} rows{shades}, {result.countries_drawn} {keys} drawn "
        f"({result.countries_in_view} with cells in view)"
    )
