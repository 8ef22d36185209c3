"""Findings as data: the codes, the result type, and the recorder every check writes to."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

E002 = "E002_RASTER_MISMATCH"
E003 = "E003_DUP_TILE"
E004 = "E004_BOUNDS"
E005 = "E005_ISO_FK"
E006 = "E006_AREA_NONPOS"
E008 = "E008_INCLUSION_RULE"
E009 = "E009_PERF_BUDGET"
E010 = "E010_IMMUTABLE_PARTITION"

# the code of each column: its type, nulls and values are findings of that code
COLUMN_CODES = {
    "country_iso": E005,
    "tile_id": E002,
    "raster_row": E002,
    "raster_col": E002,
    "centroid_lon": E004,
    "centroid_lat": E004,
    "pixel_area_m2": E006,
    "inclusion_rule": E008,
    "min_lon_deg": E004,
    "max_lon_deg": E004,
    "min_lat_deg": E004,
    "max_lat_deg": E004,
    "centroid_lon_deg": E004,
    "centroid_lat_deg": E004,
    "coverage_fraction": E008,  # docs/CONTRACT.md §10.3
}

EXAMPLES = 5  # findings kept per check; the rest are counted


def column_code(name: str) -> str:
    """The code of a column's findings; a name not in :data:`COLUMN_CODES` is a region
    mode's key column (docs/CONTRACT.md §10.1), whose findings are E005 like
    ``country_iso``'s."""
    return COLUMN_CODES.get(name, E005)


@dataclass(frozen=True)
class Finding:
    """One contract violation, with its docs/CONTRACT.md §8 code."""

    code: str
    message: str
    country_iso: str | None = None
    tile_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.country_iso is not None:
            out["country_iso"] = self.country_iso
        if self.tile_id is not None:
            out["tile_id"] = self.tile_id
        return out


@dataclass(frozen=True)
class ValidationResult:
    """``ok`` iff there is no finding; ``stats`` holds counts, checks, windows, seconds."""

    ok: bool
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
            "warnings": list(self.warnings),
            "stats": self.stats,
        }

    def by_code(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = {}
        for f in self.findings:
            out.setdefault(f.code, []).append(f)
        return dict(sorted(out.items()))


class Checks:
    """Named checks: each records its failures, keeps the first few as findings."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.failures: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self.findings: list[Finding] = []
        self.warnings: list[str] = []

    def ran(self, name: str, code: str) -> None:
        self.codes.setdefault(name, code)
        self.failures.setdefault(name, 0)

    def fail(
        self,
        name: str,
        code: str,
        message: str,
        country_iso: str | None = None,
        tile_id: int | None = None,
        count: int = 1,
    ) -> None:
        self.ran(name, code)
        self.failures[name] += count
        if self.shown.get(name, 0) < EXAMPLES:
            self.shown[name] = self.shown.get(name, 0) + 1
            self.findings.append(Finding(code, message, country_iso, tile_id))

    def warn(self, message: str) -> None:
        log.info("warning: %s", message)
        self.warnings.append(message)

    def close(self) -> None:
        for name, n in self.failures.items():
            shown = self.shown.get(name, 0)
            if n > shown:
                self.findings.append(
                    Finding(self.codes[name], f"{name}: {n - shown} more failure(s) not shown")
                )

    def stats(self) -> dict[str, Any]:
        return {
            "run": len(self.codes),
            "failed": sum(1 for n in self.failures.values() if n),
            "by_name": {
                name: {"code": self.codes[name], "failures": self.failures[name]}
                for name in sorted(self.codes)
            },
        }


def describe_cell(ncols: int, tid: int) -> str:
    return f"tile_id {tid} (row {tid // ncols}, col {tid % ncols})"
