"""The build's progress for people: a live display on a terminal, periodic lines otherwise."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["ProgressTelemetry", "progress_telemetry"]


class _Display(Progress):
    """One bar with its counters, and the status lines below it as wrapping text: a table
    cell would cut them to ``…`` on an 80-column terminal, a line of text never does."""

    status: tuple[str, ...] = ()

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for line in self.status:
            yield Text(line, overflow="fold")


class ProgressTelemetry:
    """A :class:`tileindex.telemetry.Telemetry` that shows a build's progress: a live
    display on ``console`` (stderr by default) when ``live``, otherwise a plain line
    every ``interval_s`` seconds. ``console.print(this)`` renders the live display's
    current state."""

    def __init__(
        self, live: bool, interval_s: float = 10.0, console: Console | None = None
    ) -> None:
        self._interval = interval_s
        self._progress: _Display | None = None
        if live:
            self._progress = _Display(
                TextColumn("[bold]units"),
                BarColumn(bar_width=None),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=True,
                expand=True,
            )
        self._task: TaskID | None = None
        self._units = self._units_total = self._countries = self._countries_total = 0
        self._cells = self._rows = 0
        self._pending: dict[int, tuple[str, int]] = {}
        self._t0 = self._last = time.perf_counter()

    def __enter__(self) -> ProgressTelemetry:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __rich__(self) -> RenderableType:
        return self._progress.get_renderable() if self._progress is not None else ""

    def on_start(self, total_countries: int, total_units: int) -> None:
        self._countries_total, self._units_total = total_countries, total_units
        if self._progress is not None:
            self._task = self._progress.add_task("units", total=total_units)
            self._refresh()
        else:
            click.echo(f"building {total_countries} countries in {total_units} units", err=True)

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        self._units += 1
        self._cells += cells_visited
        self._rows += cells_included
        status = self._status()
        if self._progress is not None:
            self._progress.status = status
            if self._task is not None:
                self._progress.update(self._task, advance=1)
        elif time.perf_counter() - self._last >= self._interval:
            self._last = time.perf_counter()
            elapsed = time.perf_counter() - self._t0
            click.echo(
                f"[{elapsed:6.0f}s] units {self._units}/{self._units_total} · "
                + " · ".join(status),
                err=True,
            )

    def _status(self) -> tuple[str, ...]:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        lines = [
            f"countries {self._countries}/{self._countries_total} · "
            f"{self._rows / elapsed / 1e6:.1f} M rows/s · "
            f"{self._cells / elapsed / 1e6:.0f} M cells/s"
        ]
        if self._pending:
            label, cells = max(self._pending.values(), key=lambda v: v[1])
            lines.append(f"heaviest left: {label} ({cells / 1e6:.1f} M cells)")
        return tuple(lines)

    def on_country_done(self, summary: Any) -> None:
        self._countries += 1
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.status = self._status()

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "S1_PLAN":
            self._pending = {
                uid: (f"{iso} rows {r0}-{r1}", cells) for uid, iso, r0, r1, cells in event["units"]
            }
        elif kind == "S1_UNIT":
            self._pending.pop(event["unit_id"], None)
        if kind in ("S1_PLAN", "S1_UNIT"):
            self._refresh()
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
    """No display when ``quiet``; a live one when stderr is a terminal; lines otherwise."""
    if quiet:
        yield None
        return
    console = Console(stderr=True)
    with ProgressTelemetry(live=console.is_terminal, console=console) as tele:
        yield tele
