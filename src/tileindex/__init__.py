"""tileindex: exact, fast, deterministic country membership for global lon/lat grids.

The public API: one function per command of the ``tileindex`` CLI, the value each
returns, and the error types (one root, one class per docs/CONTRACT.md §8 code).
"""

from tileindex.demo import DemoResult, run_demo
from tileindex.errors import (
    AreaNonPositiveError,
    BoundsError,
    ConfigError,
    CrsMismatchError,
    DiskFullError,
    DuplicateTileError,
    GeometryInvalidError,
    ImmutablePartitionError,
    InclusionRuleError,
    InputError,
    InputFileError,
    IsoForeignKeyError,
    OutputError,
    PerfBudgetError,
    RasterMismatchError,
    SchedulerLostError,
    TileIndexError,
    WorkerError,
)
from tileindex.index import Index
from tileindex.index import open_index as open
from tileindex.lookup import PointLookup, lookup
from tileindex.mask import MaskResult, to_xarray, write_mask
from tileindex.parity import ParityResult, run_parity
from tileindex.pipeline import BuildResult, build
from tileindex.prepare import PrepareResult, prepare_inputs
from tileindex.preview import PreviewResult, render_preview
from tileindex.sample import sample
from tileindex.validate import ValidationResult, validate_partition
from tileindex.values import ValuesResult, values

__all__ = [
    "AreaNonPositiveError",
    "BoundsError",
    "BuildResult",
    "ConfigError",
    "CrsMismatchError",
    "DemoResult",
    "DiskFullError",
    "DuplicateTileError",
    "GeometryInvalidError",
    "ImmutablePartitionError",
    "InclusionRuleError",
    "Index",
    "InputError",
    "InputFileError",
    "IsoForeignKeyError",
    "MaskResult",
    "OutputError",
    "ParityResult",
    "PerfBudgetError",
    "PointLookup",
    "PrepareResult",
    "PreviewResult",
    "RasterMismatchError",
    "SchedulerLostError",
    "TileIndexError",
    "ValidationResult",
    "ValuesResult",
    "WorkerError",
    "build",
    "lookup",
    "open",
    "prepare_inputs",
    "render_preview",
    "run_demo",
    "run_parity",
    "sample",
    "to_xarray",
    "validate_partition",
    "values",
    "write_mask",
]
