"""``tileindex sample``: weighted sample locations from a published index, as parquet."""

from __future__ import annotations

from pathlib import Path

import click
import pyarrow.parquet as pq

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import dictionary_option, parameter_hash_option, workers_option
from tileindex.errors import ConfigError
from tileindex.fsio import write_atomic
from tileindex.index import open_index
from tileindex.sample import WEIGHTS
from tileindex.sample import sample as draw_sample


@click.command(name="sample", short_help="Draw weighted sample locations inside the regions.")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False), metavar="ROOT")
@click.option("--n", "n", type=int, required=True, help="Points in total (or per region).")
@click.option(
    "--per-region", is_flag=True, help="Draw N points in every region instead of N in total."
)
@click.option(
    "--weights",
    type=str,
    default="area",
    show_default=True,
    metavar=f"[{'|'.join(WEIGHTS)}]",
    help="Cell weights: area (pixel_area_m2), values (tile_values' value, null = 0), "
    "coverage (area x coverage_fraction).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="KEY",
    help="Draw only in this region (repeat for several; default: every key).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE.parquet",
    help="Written: the sample, columns <key>, tile_id, lon, lat.",
)
@workers_option
@parameter_hash_option("the partition to sample (default: the only one under ROOT).")
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@click.option("--overwrite", is_flag=True, help="Replace FILE if it exists.")
def sample(
    root: Path,
    n: int,
    per_region: bool,
    weights: str,
    seed: int,
    regions: tuple[str, ...],
    out: Path,
    workers: int | None,
    parameter_hash: str | None,
    dictionary: Path | None,
    overwrite: bool,
) -> None:
    """Draw sample points inside the regions of the index under ROOT (the --out of a build).

    Cells are drawn with the given weights, then a point uniform inside the drawn cell's
    part of the region (exact, closed shell and open holes). The same --seed gives the
    same points, whatever the layout, the order the regions are read in or --workers:
    the file is byte-identical.

    \b
    Examples:
      tileindex sample out/ --n 1000 --out points.parquet
      tileindex sample out/ --n 50 --per-region --weights coverage --seed 7 --out p.parquet
      tileindex sample out/ --n 1000000 --workers 4 --out points.parquet
    """
    with clean_errors():
        if out.suffix.lower() != ".parquet":
            raise ConfigError(f"--out {out}: the sample is parquet; give a name ending in .parquet")
        if out.exists() and not overwrite:
            raise ConfigError(
                f"--out {out} already exists; choose another name or pass --overwrite"
            )
        index = open_index(root, parameter_hash, dictionary)
        table = draw_sample(
            index,
            n,
            per_region=per_region,
            weights=weights,
            seed=seed,
            keys=list(regions) or None,
            workers=workers,
        )
        write_atomic(out, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    drawn = len(set(table[index.key_column].to_pylist()))
    click.echo(f"{out}: {table.num_rows:,} points in {drawn} regions")
