"""``tileindex lookup``: the regions of every point of a file, from a published index."""

from __future__ import annotations

from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import dictionary_option, parameter_hash_option
from tileindex.index import open_index
from tileindex.lookup import DEFAULT_BATCH_SIZE, lookup_points_file


@click.command(name="lookup", short_help="Attach the region of every point of a file.")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False), metavar="ROOT")
@click.option(
    "--points",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE",
    help="Read: the points, parquet or CSV with a header row (lon/lat in decimal degrees).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE",
    help="Written: parquet, the points' rows plus the key column, one row per (point, region).",
)
@click.option(
    "--drop-unmatched", is_flag=True, help="Leave out points in no region (default: null key)."
)
@click.option("--lon-column", default="lon", show_default=True, help="The longitude column.")
@click.option("--lat-column", default="lat", show_default=True, help="The latitude column.")
@parameter_hash_option("the partition to use (default: the only one under ROOT).")
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Points answered at a time (memory follows it, not the file).",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def lookup(
    root: Path,
    points: Path,
    out: Path,
    drop_unmatched: bool,
    lon_column: str,
    lat_column: str,
    parameter_hash: str | None,
    dictionary: Path | None,
    batch_size: int,
    overwrite: bool,
) -> None:
    """Look every point of --points up in the index under ROOT (an output root of
    'tileindex build'): a point belongs to each region whose geometry holds it, the
    outline included and hole outlines excluded (the center rule, docs/CONTRACT.md
    §10.4). Points on a shared border get a row for each region.

    \b
    Example:
      tileindex lookup out/ --points points.csv --out points_with_country.parquet
    """
    with clean_errors():
        index = open_index(root, parameter_hash, dictionary)
        result = lookup_points_file(
            index,
            points,
            out,
            lon_column=lon_column,
            lat_column=lat_column,
            drop_unmatched=drop_unmatched,
            batch_size=batch_size,
            overwrite=overwrite,
        )
    rate = result.points / max(result.seconds, 1e-9)
    click.echo(str(result.out))
    click.echo(
        f"  {result.points:,} points, {result.rows:,} rows, {result.unmatched:,} in no region "
        f"({'dropped' if drop_unmatched else f'null {result.key_column}'}); "
        f"{result.seconds:.1f} s ({rate:,.0f} points/s)"
    )
