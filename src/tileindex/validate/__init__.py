"""The independent validator of a published tile index: returns findings, never prints.

It shares only the contract (schemas, dataset dictionary, receipt, budgets), the layout,
the sealed-input readers, the grid's dimensions and transform, the country geometry of
docs/CONTRACT.md §4 and the legacy oracle with the build. Every value is recomputed
here from the contract's formulas; inclusion is re-decided by a method of its own
(:mod:`.recount`), never by the build's kernel.

Streaming: both datasets are read in lockstep, batch by batch; the independent
recount works in row blocks. Memory is O(batch + block), never O(dataset) or O(country).

One module per concern, called in order by :mod:`.validator`:

==============  ========================================================================
``files``       flat layout of numbered part files, exact schemas, not-null columns
``keys``        key order and uniqueness, ISO foreign key, the same keys in both datasets
``cells``       tile ids, centroids, bounds and WGS84 areas from the grid (``axes``)
``evidence``    run report, input digests, budgets, receipt, country summaries
``recount``     the independent recount of every country's cells (``shape``)
``inclusion``   recount (or ``--full`` legacy) against the rows, first differing cells
``samples``     windows on country boundaries re-decided by the legacy engine
==============  ========================================================================

Codes. Every finding carries the docs/CONTRACT.md §8 code of what it is about; where
the contract has no code of its own the nearest one is used:

=================================  ==================================================
E002_RASTER_MISMATCH               tile_id / raster_row / raster_col (values, types,
                                   nulls), grid_dims or grid_transform in the report,
                                   tile_id_min/max of a summary
E003_DUP_TILE                      duplicate key, key order, tile_index and
                                   tile_bounds not holding the same keys in order
E004_BOUNDS                        centroid and bounds columns (values, types, nulls)
E005_ISO_FK                        country_iso not in the ISO list; summaries or
                                   countries_total not matching the ISO list
E006_AREA_NONPOS                   pixel_area_m2 not > 0 or not the WGS84 cell area
E008_INCLUSION_RULE                inclusion_rule column, report predicate, included
                                   cells contradicting the predicate (recount, sampled
                                   windows, --full), counts in the evidence that do
                                   not match the rows
E009_PERF_BUDGET                   docs/CONTRACT.md §9 budgets (contract.BUDGETS),
                                   missing or inconsistent ``pat``
E010_IMMUTABLE_PARTITION           what is published at the identity is not what the
                                   run recorded: receipt, parameter_hash, input
                                   digests, missing evidence, stray or nested files,
                                   unreadable part files
=================================  ==================================================
"""

from tileindex.contract import BUDGETS
from tileindex.layout import find_parameter_hashes
from tileindex.validate.findings import Finding, ValidationResult
from tileindex.validate.recount import (
    _segment_meets_open_box as _segment_meets_open_box,  # for its edge-case test
)
from tileindex.validate.recount import recount_ids
from tileindex.validate.samples import SampledWindow, boundary_windows
from tileindex.validate.validator import validate_partition

__all__ = [
    "BUDGETS",
    "Finding",
    "SampledWindow",
    "ValidationResult",
    "boundary_windows",
    "find_parameter_hashes",
    "recount_ids",
    "validate_partition",
]
