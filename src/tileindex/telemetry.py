"""Progress and structured events, delivered through one callback protocol."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tileindex.report import CountrySummary, RunReport, rfc3339_utc

log = logging.getLogger(__name__)

ERROR_EVENT = "S1_ERROR"
_CONTEXT_KEYS = ("country_iso", "raster_row", "raster_col")


def error_event(
    code: str, message: str, parameter_hash: str | None, **context: Any
) -> dict[str, Any]:
    """The SPEC §8 failure event. ``context`` may hold ``country_iso``, ``raster_row``,
    ``raster_col`` (None values are left out). ``parameter_hash`` is None (JSON null)
    only when the run failed before its identity was known."""
    unknown = sorted(set(context) - set(_CONTEXT_KEYS))
    if unknown:
        raise TypeError(
            f"error_event got unknown context {unknown}; allowed: {', '.join(_CONTEXT_KEYS)}"
        )
    event: dict[str, Any] = {
        "event": ERROR_EVENT,
        "code": code,
        "at": rfc3339_utc(),
        "parameter_hash": parameter_hash,
        "message": message,
    }
    for key in _CONTEXT_KEYS:
        if context.get(key) is not None:
            event[key] = context[key]
    return event


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
    time, and are skipped when ``progress`` is False (an error-only event log). Each line
    is one ``O_APPEND`` write, so no file stays open between callbacks.
    """

    def __init__(self, path: Path, progress: bool = True) -> None:
        self.path = Path(path)
        self.progress = progress
        self._lock = threading.Lock()

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

    def _progress(self, line: dict[str, Any], sync: bool = False) -> None:
        if self.progress:
            self._append({"event": line.pop("event"), "at": rfc3339_utc(), **line}, sync)
        elif sync:
            self._sync()

    def _append(self, obj: Mapping[str, Any], sync: bool = False) -> None:
        data = (json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, data)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def _sync(self) -> None:
        if not self.path.exists():
            return
        with self._lock:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


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


class LoggingTelemetry:
    """Sends events and progress to ``logging`` (handlers are the CLI's business)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    def on_start(self, total_countries: int, total_units: int) -> None:
        self.log.info("start: %d countries, %d work units", total_countries, total_units)

    def on_unit_done(
        self, iso: str, cells_visited: int, cells_included: int, seconds: float
    ) -> None:
        self.log.debug(
            "%s: unit done, %d of %d cells included (%.3fs)",
            iso,
            cells_included,
            cells_visited,
            seconds,
        )

    def on_country_done(self, summary: CountrySummary) -> None:
        self.log.info(
            "%s: %d of %d cells included",
            summary.country_iso,
            summary.cells_included,
            summary.cells_visited,
        )

    def on_event(self, event: Mapping[str, Any]) -> None:
        level = logging.ERROR if event.get("event") == ERROR_EVENT else logging.INFO
        self.log.log(level, "%s", json.dumps(dict(event), separators=(",", ":")))

    def on_finish(self, report: RunReport | None) -> None:
        if report is None:
            self.log.error("finished without publishing")
        else:
            self.log.info("finished: %d rows emitted", report.rows_emitted)


__all__ = [
    "ERROR_EVENT",
    "JsonLinesTelemetry",
    "LoggingTelemetry",
    "MultiTelemetry",
    "NullTelemetry",
    "Telemetry",
    "error_event",
]
