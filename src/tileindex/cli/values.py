"""``tileindex values``: attach a raster's values to a published index (docs/CONTRACT.md §10.4)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    dictionary_option,
    json_option,
    out_read_option,
    parameter_hash_option,
    thread_workers_option,
)
from tileindex.index import open_index
from tileindex.values import ValuesResult
from tileindex.values import values as attach_values


@click.command(name="values", short_help="Attach a raster's values to a published index.")
@out_read_option(dest="root")
@click.option(
    "--raster",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Read: the values raster, on exactly the index's grid (same size and transform, "
    "EPSG:4326), e.g. a population raster.",
)
@click.option(
    "--band", type=click.IntRange(min=1), default=1, show_default=True, help="Band to read."
)
@thread_workers_option
@parameter_hash_option("the index to attach to (default: the only one under OUT).")
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@json_option
def values(
    root: Path,
    raster: Path,
    band: int,
    workers: int | None,
    parameter_hash: str | None,
    dictionary: Path | None,
    as_json: bool,
) -> None:
    """Publish tile_values (the raster's value at every row of tile_index; nodata is
    null) and region_values.parquet (per region: count, sum, mean, min, max, and the same
    weighted by coverage_fraction when the index has tile_coverage) beside the index
    under OUT. Write-once: a rerun with the same raster is a no-op, another raster is
    refused (E010). The results do not depend on --workers, to the last bit.

    \b
    Example:
      tileindex values --out out/ --raster population.tif --workers 4
    """
    with clean_errors():
        index = open_index(root, parameter_hash, dictionary)
        result = attach_values(index, raster, workers, band=band)
    _echo(result, as_json)


def _echo(result: ValuesResult, as_json: bool) -> None:
    if as_json:
        doc = {
            "parameter_hash": result.parameter_hash,
            "outcome": result.outcome,
            "rows": result.rows,
            "null_rows": result.null_rows,
            "weighted": result.weighted,
            "regions": result.region_values.num_rows,
            "paths": {k: str(v) for k, v in result.paths.items()},
            "seconds": round(result.seconds, 3),
        }
        click.echo(json.dumps(doc, sort_keys=True))
        return
    verb = "published" if result.outcome == "published" else "already published (identical, no-op)"
    click.echo(
        f"{verb}: {result.rows:,} values ({result.null_rows:,} null) for "
        f"{result.region_values.num_rows} regions in {result.seconds:.1f} s"
        + (", weighted by coverage_fraction" if result.weighted else "")
    )
    for name, path in result.paths.items():
        click.echo(f"  {name}  {path}")
