"""The error hierarchy: one root, one class per docs/CONTRACT.md §8 code, each also a built-in."""

from __future__ import annotations

from typing import Any

# The event code for bad input that docs/CONTRACT.md §8 gives no E-code (missing file, ...).
BAD_INPUT_EVENT_CODE = "S1_BAD_INPUT"


class TileIndexError(Exception):
    """Root of every error tileindex raises on purpose.

    ``code`` is the docs/CONTRACT.md §8 error code (``None`` for plain bad input that the contract
    gives no code for); ``context`` carries the optional event fields
    (``country_iso``, ``raster_row``, ``raster_col``).
    """

    code: str | None = None
    # the S1_ERROR event code of an error the contract gives no E-code
    uncoded_event: str = BAD_INPUT_EVENT_CODE

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    @property
    def event_code(self) -> str:
        """The ``code`` of this error's S1_ERROR event."""
        return self.code or self.uncoded_event

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class InputError(TileIndexError, ValueError):
    """A sealed input is missing, unreadable or malformed (no contract code)."""


class InputFileError(TileIndexError, OSError):
    """A sealed input file cannot be opened or read."""


class GeometryInvalidError(TileIndexError, ValueError):
    code = "E001_GEO_INVALID"


class RasterMismatchError(TileIndexError, ValueError):
    code = "E002_RASTER_MISMATCH"


class DuplicateTileError(TileIndexError, ValueError):
    code = "E003_DUP_TILE"


class BoundsError(TileIndexError, ValueError):
    code = "E004_BOUNDS"


class IsoForeignKeyError(TileIndexError, ValueError):
    code = "E005_ISO_FK"


class AreaNonPositiveError(TileIndexError, ValueError):
    code = "E006_AREA_NONPOS"


class CrsMismatchError(TileIndexError, ValueError):
    code = "E007_CRS_MISMATCH"


class InclusionRuleError(TileIndexError, ValueError):
    code = "E008_INCLUSION_RULE"


class PerfBudgetError(TileIndexError, RuntimeError):
    code = "E009_PERF_BUDGET"


class ImmutablePartitionError(TileIndexError, FileExistsError):
    code = "E010_IMMUTABLE_PARTITION"


class ConfigError(TileIndexError, ValueError):
    """An option has a value outside its domain (chunk size, parameter hash, ...)."""


class DiskFullError(TileIndexError, OSError):
    """The output or staging file system ran out of space."""

    uncoded_event = "S1_DISK_FULL"


class OutputError(TileIndexError, OSError):
    """The output root cannot be written (permissions, a file in the way, ...)."""

    uncoded_event = "S1_OUTPUT_ERROR"


class WorkerError(TileIndexError, RuntimeError):
    """A work unit kept failing (retries exhausted) or worker processes kept dying."""

    uncoded_event = "S1_WORKER_FAILED"


class SchedulerLostError(TileIndexError, ConnectionError):
    """The dask scheduler cannot be reached, or the connection to it was lost mid-build."""

    uncoded_event = "S1_SCHEDULER_LOST"


__all__ = [
    "BAD_INPUT_EVENT_CODE",
    "AreaNonPositiveError",
    "BoundsError",
    "ConfigError",
    "CrsMismatchError",
    "DiskFullError",
    "DuplicateTileError",
    "GeometryInvalidError",
    "ImmutablePartitionError",
    "InclusionRuleError",
    "InputError",
    "InputFileError",
    "IsoForeignKeyError",
    "OutputError",
    "PerfBudgetError",
    "RasterMismatchError",
    "SchedulerLostError",
    "TileIndexError",
    "WorkerError",
]
