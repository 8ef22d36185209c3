"""Shared CLI plumbing: logging, progress display, summaries, clean error exits."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tileindex.errors import TileIndexError
from tileindex.telemetry import error_event

_err = Console(stderr=True)

INPUT_FILE = click.Path(path_type=Path, dir_okay=False)


def window_options(
    window: int, samples: int, samples_help: str, min_samples: int = 0
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--window``, ``--samples`` and ``--seed`` of the commands that draw windows."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option(
                    "--window",
                    type=click.IntRange(min=1),
                    default=window,
                    show_default=True,
                    help="Side of a window, in cells.",
                ),
                click.option(
                    "--samples",
                    type=click.IntRange(min=min_samples),
                    default=samples,
                    show_default=True,
                    help=samples_help,
                ),
                click.option(
                    "--seed",
                    type=int,
                    default=0,
                    show_default=True,
                    help="Seed of the window draw.",
                ),
            ]
        ):
            fn = option(fn)
        return fn

    return apply


def input_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The three sealed inputs, as every command that reads them names them."""
    for option in reversed(
        [
            click.option(
                "--iso",
                "iso",
                type=INPUT_FILE,
                required=True,
                help="ISO 3166 list (parquet or CSV, column country_iso).",
            ),
            click.option(
                "--countries",
                type=INPUT_FILE,
                required=True,
                help="Country polygons (GeoParquet, EPSG:4326, columns country_iso, geom).",
            ),
            click.option(
                "--raster",
                type=INPUT_FILE,
                required=True,
                help="Raster that defines the grid (any GDAL raster, EPSG:4326, north-up).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Turn a TileIndexError into a one-line message, an S1_ERROR event line on stderr
    and exit status 1 (never a traceback as the only explanation); Ctrl-C into exit 130."""
    try:
        yield
    except TileIndexError as exc:
        phash = getattr(exc, "parameter_hash", None)
        event = error_event(exc.event_code, exc.message, phash, **exc.context)
        click.echo(f"error: {exc}", err=True)
        click.echo(json.dumps(event, sort_keys=True), err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        # staging is removed on the way out; the final paths never saw partial output
        click.echo("interrupted: nothing was published", err=True)
        raise SystemExit(130) from None


class ProgressTelemetry:
    """Progress for people: a live bar on a terminal, plain periodic lines otherwise."""

    def __init__(self, live: bool, interval_s: float = 10.0) -> None:
        self._live = live
        self._interval = interval_s
        self._progress: Progress | None = None
        self._task: Any = None
        self._units = self._units_total = self._countries = self._countries_total = 0
        self._cells = self._rows = 0
        self._pending: dict[int, tuple[str, int]] = {}
        self._t0 = self._last = time.perf_counter()

    def __enter__(self) -> ProgressTelemetry:
        if self._live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_err,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_start(self, total_countries: int, total_units: int) -> None:
        self._countries_total, self._units_total = total_countries, total_units
        if self._progress is not None:
            self._task = self._progress.add_task("units", total=total_units, status="")
        else:
            click.echo(f"building {total_countries} countries in {total_units} units", err=True)

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        self._units += 1
        self._cells += cells_visited
        self._rows += cells_included
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        status = (
            f"countries {self._countries}/{self._countries_total} · "
            f"{self._rows / elapsed / 1e6:.1f} M rows/s · "
            f"{self._cells / elapsed / 1e6:.0f} M cells/s"
        )
        if self._pending:
            label, cells = max(self._pending.values(), key=lambda v: v[1])
            status += f" · heaviest left: {label} ({cells / 1e6:.1f} M cells)"
        if self._progress is not None:
            self._progress.update(self._task, advance=1, status=status)
        elif time.perf_counter() - self._last >= self._interval:
            self._last = time.perf_counter()
            click.echo(
                f"[{elapsed:6.0f}s] units {self._units}/{self._units_total} · {status}", err=True
            )

    def on_country_done(self, summary: Any) -> None:
        self._countries += 1

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "S1_PLAN":
            self._pending = {
                uid: (f"{iso} rows {r0}-{r1}", cells) for uid, iso, r0, r1, cells in event["units"]
            }
        elif kind == "S1_UNIT":
            self._pending.pop(event["unit_id"], None)
        if kind == "S1_EXECUTOR":
            msg = f"dask cluster with {event['workers']} workers; dashboard: {event['dashboard']}"
            if self._progress is not None:
                self._progress.console.print(msg)
            else:
                click.echo(msg, err=True)

    def on_finish(self, report: Any) -> None:
        pass


@contextlib.contextmanager
def progress_telemetry(quiet: bool) -> Iterator[ProgressTelemetry | None]:
    if quiet:
        yield None
        return
    with ProgressTelemetry(live=_err.is_terminal) as tele:
        yield tele


def print_build_summary(result: Any) -> None:
    """A short table for people: counts, time, throughput, where things are."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rate = result.rows_emitted / max(result.seconds, 1e-9)
    verb = "published" if result.outcome == "published" else "already published (identical, no-op)"
    table.add_row("outcome", verb)
    table.add_row("parameter_hash", result.parameter_hash)
    table.add_row("countries", f"{result.countries_total} ({result.countries_with_rows} with rows)")
    table.add_row("rows", f"{result.rows_emitted:,}")
    table.add_row("seconds", f"{result.seconds:.1f} ({rate:,.0f} rows/s)")
    for key in ("tile_index", "tile_bounds", "run_report"):
        table.add_row(key, str(result.paths[key]))
    Console().print(table)
