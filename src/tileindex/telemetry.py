"""Progress and structured events, delivered through one callback protocol: the typed
events a build emits and the sinks that observe them."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from tileindex.errors import ConfigError
from tileindex.fsio import fsync_file
from tileindex.grid import MaskCounts
from tileindex.plan import WorkUnit
from tileindex.report import CountrySummary, RunReport, rfc3339_utc

ERROR_EVENT = "S1_ERROR"
_CONTEXT_KEYS = ("country_iso", "raster_row", "raster_col")


# -- events ---------------------------------------------------------------------------
# Each event is a small frozen value; ``to_json()`` is its event-log line: ``event`` (the
# name), ``at`` (when it was made), then its fields in order. Sinks receive the line.


@dataclass(frozen=True)
class _Event:
    NAME: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.NAME, "at": None}  # "at" stays second
        for f in fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(value: Any) -> Any:
    """Tuples (of tuples) as the lists ``json.loads`` gives back."""
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ExecutorEvent(_Event):
    """A distributed executor is up (where to watch it)."""

    NAME: ClassVar[str] = "S1_EXECUTOR"
    executor: str
    workers: int
    dashboard: str
    at: str = field(default_factory=rfc3339_utc)


@dataclass(frozen=True)
class PlanEvent(_Event):
    """The work units, as ``(unit_id, country_iso, row_start, row_stop, cells)``."""

    NAME: ClassVar[str] = "S1_PLAN"
    units: tuple[tuple[int, str, int, int, int], ...]
    at: str = field(default_factory=rfc3339_utc)

    @classmethod
    def of(cls, units: Sequence[WorkUnit]) -> PlanEvent:
        return cls(
            tuple((u.unit_id, u.country_iso, u.row_start, u.row_stop, u.cells) for u in units)
        )


@dataclass(frozen=True)
class UnitEvent(_Event):
    """A unit was masked: its rows and column spans, what it saw, who and how long."""

    NAME: ClassVar[str] = "S1_UNIT"
    unit_id: int
    country_iso: str
    row_start: int
    row_stop: int
    col_spans: tuple[tuple[int, int], ...]
    cells_visited: int
    cells_included: int
    seconds: float
    worker: str
    at: str = field(default_factory=rfc3339_utc)

    @classmethod
    def of(cls, unit: WorkUnit, counts: MaskCounts, seconds: float, worker: str) -> UnitEvent:
        return cls(
            unit_id=unit.unit_id,
            country_iso=unit.country_iso,
            row_start=unit.row_start,
            row_stop=unit.row_stop,
            col_spans=tuple((w.col_start, w.col_stop) for w in unit.windows),
            cells_visited=counts.cells_visited,
            cells_included=counts.cells_included,
            seconds=round(seconds, 6),
            worker=worker,
        )


@dataclass(frozen=True)
class ShardFlushEvent(_Event):
    """A part file of both datasets was written to staging."""

    NAME: ClassVar[str] = "S1_SHARD_FLUSH"
    part_index: int
    rows: int
    bytes: int
    seconds: float
    worker: str
    at: str = field(default_factory=rfc3339_utc)


@dataclass(frozen=True)
class MergeEvent(_Event):
    """Every part is written and verified: the staged partitions are complete."""

    NAME: ClassVar[str] = "S1_MERGE"
    parts: int
    rows: int
    bytes: int
    seconds: float
    at: str = field(default_factory=rfc3339_utc)


@dataclass(frozen=True)
class ErrorEvent:
    """The docs/CONTRACT.md §8 failure event. ``parameter_hash`` is None (JSON null) only
    when the run failed before its identity was known; context values that are None
    are left out of the line."""

    code: str
    message: str
    parameter_hash: str | None
    country_iso: str | None = None
    raster_row: int | None = None
    raster_col: int | None = None
    at: str = field(default_factory=rfc3339_utc)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": ERROR_EVENT,
            "code": self.code,
            "at": self.at,
            "parameter_hash": self.parameter_hash,
            "message": self.message,
        }
        for key in _CONTEXT_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def error_event(
    code: str, message: str, parameter_hash: str | None, **context: Any
) -> dict[str, Any]:
    """The event-log line of an :class:`ErrorEvent`; ``context`` may hold
    ``country_iso``, ``raster_row``, ``raster_col``."""
    unknown = sorted(set(context) - set(_CONTEXT_KEYS))
    if unknown:
        raise TypeError(
            f"error_event got unknown context {unknown}; allowed: {', '.join(_CONTEXT_KEYS)}"
        )
    return ErrorEvent(code, message, parameter_hash, **context).to_json()


@runtime_checkable
class Telemetry(Protocol):
    """What a run tells its observers. Called from the coordinating process only."""

    def on_start(self, total_countries: int, total_units: int) -> None: ...

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None: ...

    def on_country_done(self, summary: CountrySummary) -> None: ...

    def on_event(self, event: Mapping[str, Any]) -> None: ...

    def on_finish(self, report: RunReport | None) -> None: ...


class NullTelemetry:
    """Observes nothing."""

    def on_start(self, total_countries: int, total_units: int) -> None:
        pass

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        pass

    def on_country_done(self, summary: CountrySummary) -> None:
        pass

    def on_event(self, event: Mapping[str, Any]) -> None:
        pass

    def on_finish(self, report: RunReport | None) -> None:
        pass


class JsonLinesTelemetry:
    """Appends one JSON object per callback to ``path``.

    Events passed to ``on_event`` (e.g. S1_ERROR) are written as given; progress lines
    carry ``event`` = S1_START / S1_UNIT_DONE / S1_COUNTRY_DONE / S1_FINISH and an ``at``
    time, and are skipped when ``progress`` is False (an error-only event log). The file
    is opened once (``O_APPEND``) on the first line and closed by ``on_finish``; each line
    is one write, so a build of 10,000 regions does not pay an open per unit event.
    """

    def __init__(self, path: Path, progress: bool = True) -> None:
        self.path = Path(path)
        self.progress = progress
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closer: weakref.finalize | None = None

    def on_start(self, total_countries: int, total_units: int) -> None:
        self._progress(
            {"event": "S1_START", "total_countries": total_countries, "total_units": total_units}
        )

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        self._progress(
            {
                "event": "S1_UNIT_DONE",
                "country_iso": iso,
                "cells_visited": cells_visited,
                "cells_included": cells_included,
                "seconds": seconds,
            }
        )

    def on_country_done(self, summary: CountrySummary) -> None:
        self._progress({"event": "S1_COUNTRY_DONE", **summary.to_json()})

    def on_event(self, event: Mapping[str, Any]) -> None:
        self._append(dict(event))

    def on_finish(self, report: RunReport | None) -> None:
        line: dict[str, Any] = {"event": "S1_FINISH", "ok": report is not None}
        if report is not None:
            line["parameter_hash"] = report.parameter_hash
            line["rows_emitted"] = report.rows_emitted
        self._progress(line, sync=True)
        self.close()

    def _progress(self, line: dict[str, Any], sync: bool = False) -> None:
        if self.progress:
            self._append({"event": line.pop("event"), "at": rfc3339_utc(), **line}, sync)
        elif sync:
            self._sync()

    def _append(self, obj: Mapping[str, Any], sync: bool = False) -> None:
        data = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                self._closer = weakref.finalize(self, os.close, self._fd)
            os.write(self._fd, data)
            if sync:
                os.fsync(self._fd)

    def _sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
            elif self.path.exists():
                fsync_file(self.path)

    def close(self) -> None:
        """Close the log (reopened by the next line); on_finish calls it."""
        with self._lock:
            if self._closer is not None:
                self._closer()
            self._fd, self._closer = None, None


class MultiTelemetry:
    """Fans every callback out to several observers, in order."""

    def __init__(self, *sinks: Telemetry) -> None:
        self.sinks = sinks

    def on_start(self, total_countries: int, total_units: int) -> None:
        for s in self.sinks:
            s.on_start(total_countries, total_units)

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        for s in self.sinks:
            s.on_unit_done(iso, cells_visited, cells_included, seconds)

    def on_country_done(self, summary: CountrySummary) -> None:
        for s in self.sinks:
            s.on_country_done(summary)

    def on_event(self, event: Mapping[str, Any]) -> None:
        for s in self.sinks:
            s.on_event(event)

    def on_finish(self, report: RunReport | None) -> None:
        for s in self.sinks:
            s.on_finish(report)


# -- progress as a fraction (API ``build(progress=...)``, docs/CONTRACT.md §10.4) ------

ProgressCallback = Callable[[float, str], object]

# Shares of the run: masking the units, then encoding the part files; 1.0 only at the end.
_MASK_SHARE = 0.9
_ENCODE_SHARE = 0.09


class CallbackTelemetry:
    """Turns a build's callbacks into ``callback(fraction, message)``: ``fraction`` in
    [0, 1], never decreasing, 1.0 exactly once, when the run has published (or found its
    partition already published); a failed run stops short of 1.0 (the exception tells).

    Masking takes the first 90 %, weighted by the cells of each planned unit (the
    ``S1_PLAN`` event), encoding the next 9 %, weighted by the rows of each part file
    written; the rest is publishing the evidence."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last = 0.0
        self._plan: dict[int, int] = {}
        self._plan_cells = 0
        self._masked_cells = 0
        self._units_done = 0
        self._rows_total = 0
        self._rows_written = 0

    def _emit(self, fraction: float, message: str) -> None:
        self._last = min(max(self._last, fraction), 1.0)
        self._callback(self._last, message)

    def on_start(self, total_countries: int, total_units: int) -> None:
        self._emit(0.0, f"planned {total_units} units for {total_countries} regions")

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        self._rows_total += cells_included

    def on_country_done(self, summary: CountrySummary) -> None:
        pass

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "S1_PLAN":
            self._plan = {int(u[0]): int(u[4]) for u in event["units"]}
            self._plan_cells = sum(self._plan.values())
        elif kind == "S1_UNIT":
            self._units_done += 1
            self._masked_cells += self._plan.get(int(event["unit_id"]), 0)
            share = self._masked_cells / self._plan_cells if self._plan_cells else 1.0
            self._emit(
                _MASK_SHARE * share,
                f"masked unit {self._units_done}/{len(self._plan)}: {event['country_iso']} "
                f"rows {event['row_start']}-{event['row_stop']}",
            )
        elif kind == "S1_SHARD_FLUSH":
            self._rows_written += int(event["rows"])
            share = self._rows_written / self._rows_total if self._rows_total else 1.0
            self._emit(
                _MASK_SHARE + _ENCODE_SHARE * min(share, 1.0),
                f"wrote part {event['part_index']} ({event['rows']} rows)",
            )
        elif kind == "S1_MERGE":
            self._emit(
                _MASK_SHARE + _ENCODE_SHARE,
                f"encoded {event['rows']} rows in {event['parts']} parts",
            )

    def on_finish(self, report: RunReport | None) -> None:
        if report is not None:
            self._emit(
                1.0, f"done: {report.rows_emitted} rows, parameter hash {report.parameter_hash}"
            )


@contextlib.contextmanager
def progress_sink(progress: bool | ProgressCallback) -> Iterator[Telemetry | None]:
    """The observer ``build(progress=...)`` asks for: ``False`` none; ``True`` the CLI's
    display (live on a terminal, a line every 10 s otherwise, on stderr); a callable
    through :class:`CallbackTelemetry`. Anything else is a ConfigError."""
    if progress is False or progress is None:
        yield None
    elif progress is True:
        # asked for explicitly: the only way the library writes to a terminal. The
        # display lives with the CLI (rich, click), so it is imported only here.
        from tileindex.cli.progress import progress_telemetry

        with progress_telemetry(quiet=False) as tele:
            yield tele
    elif callable(progress):
        yield CallbackTelemetry(progress)
    else:
        raise ConfigError(
            f"progress must be True, False or a callable(fraction, message), got "
            f"{type(progress).__name__} {progress!r}"
        )


__all__ = [
    "ERROR_EVENT",
    "CallbackTelemetry",
    "ErrorEvent",
    "ExecutorEvent",
    "JsonLinesTelemetry",
    "MergeEvent",
    "MultiTelemetry",
    "NullTelemetry",
    "PlanEvent",
    "ProgressCallback",
    "ShardFlushEvent",
    "Telemetry",
    "UnitEvent",
    "error_event",
    "progress_sink",
]
