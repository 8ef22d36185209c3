"""``tileindex build``: build and publish the tile index from three sealed inputs."""

from __future__ import annotations

from pathlib import Path

import click

from tileindex.cache import default_cache_dir
from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    coverage_option,
    dictionary_option,
    layer_input_options,
    metrics_out_option,
    out_written_option,
    parameter_hash_option,
    predicate_option,
    quiet_option,
    workers_option,
)
from tileindex.cli.output import print_build_summary
from tileindex.cli.progress import progress_telemetry
from tileindex.errors import OutputError
from tileindex.executors import EXECUTORS
from tileindex.metrics import write_metrics
from tileindex.pipeline import DEFAULT_CHUNK_SIZE, ENGINES
from tileindex.pipeline import build as run_build


@click.command(name="build")
@layer_input_options
@out_written_option("the output root; datasets, reports and the event log go below it.")
@predicate_option()
@coverage_option
@click.option(
    "--engine",
    type=click.Choice(sorted(ENGINES)),
    default="fast",
    show_default=True,
    help="fast: vectorised exact engine; legacy: slow per-cell reference (same bytes).",
)
@click.option(
    "--chunk-size",
    default=DEFAULT_CHUNK_SIZE,
    show_default=True,
    metavar="N|auto",
    help=(
        "Cells per side of a work chunk, or auto: full-width chunks sized by each "
        "country's boundary. Memory is bounded by it; the output does not depend on it."
    ),
)
@workers_option
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=None,
    help="serial, process or dask (default: serial for one worker, process otherwise; "
    "dask needs the extra: pip install 'tileindex[dask]').",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Dask scheduler address (with --executor dask; default: start a LocalCluster).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Written and read: the mask cache folder "
    "(default: $TILEINDEX_CACHE_DIR or ~/.cache/tileindex/masks).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the mask cache.")
@parameter_hash_option(
    "the identity to publish under (default: derived from the inputs, predicate and grid)."
)
@dictionary_option()
@metrics_out_option
@quiet_option
def build(
    key_column: str,
    iso: Path | None,
    countries: Path,
    raster: Path,
    out: Path,
    predicate: str,
    coverage: bool,
    engine: str,
    chunk_size: str,
    workers: int | None,
    executor: str | None,
    scheduler: str | None,
    cache_dir: Path | None,
    no_cache: bool,
    parameter_hash: str | None,
    dictionary: Path | None,
    metrics_out: Path | None,
    quiet: bool,
) -> None:
    """Build the tile index of every country in the ISO list and publish it.

    Every grid cell that belongs to a country under the predicate becomes a row of
    tile_index and tile_bounds, sorted by (country_iso, tile_id), published atomically
    under OUT with a run report, per-country summaries and a determinism receipt.
    With --key-column NAME the layer (--regions) is any region layer keyed by NAME,
    the key list (--keys) is optional, and the output's first column is NAME.
    Publishing the same result again is a no-op; a different result at the same
    parameter hash is refused (E010).
    """
    with clean_errors(), progress_telemetry(quiet) as tele:
        result = run_build(
            iso,
            countries,
            raster,
            out,
            key_column=key_column,
            predicate=predicate,
            engine=engine,
            chunk_size=chunk_size,
            workers=workers,
            executor=executor,
            scheduler=scheduler,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
            parameter_hash=parameter_hash,
            dictionary=dictionary,
            telemetry=tele,
            coverage=coverage,
        )
    print_build_summary(result)
    if metrics_out is not None and result.metrics is not None:
        with clean_errors():
            try:
                prom, js = write_metrics(metrics_out, result.metrics)
            except OSError as exc:  # the published partition stands; only the metrics failed
                raise OutputError(
                    f"cannot write --metrics-out {metrics_out}: {exc.strerror or exc}; "
                    "the tile index was published"
                ) from exc
        click.echo(f"metrics: {prom} and {js}")
