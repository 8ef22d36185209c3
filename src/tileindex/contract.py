"""The contract in code: output schemas, dataset paths, parameter hash, receipt."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pyarrow as pa
import yaml

from tileindex.errors import ConfigError

CONTRACT_VERSION = "tileindex/1B.S1/1"


# docs/CONTRACT.md §10.1: the name of the key column, the first column of every dataset.
# The default is the country contract of §1-§9; any other name is region mode.
DEFAULT_KEY_COLUMN = "country_iso"
KEY_MAX_BYTES = 128  # a region key's UTF-8 length (docs/CONTRACT.md §10.1)
# column names a key column may not take: the datasets' other columns and the layer's
# geometry column (the coverage dataset's fraction column included)
_RESERVED_COLUMNS = frozenset(
    (
        "tile_id",
        "raster_row",
        "raster_col",
        "centroid_lon",
        "centroid_lat",
        "pixel_area_m2",
        "inclusion_rule",
        "min_lon_deg",
        "max_lon_deg",
        "min_lat_deg",
        "max_lat_deg",
        "centroid_lon_deg",
        "centroid_lat_deg",
        "coverage_fraction",
        "geom",
    )
)


def check_key_column(name: str) -> str:
    """``name`` if it can name the key column (docs/CONTRACT.md §10.1), else ConfigError:
    a non-empty column name of printable characters, at most 128 UTF-8 bytes, that is not
    the name of another published column nor of the layer's ``geom`` column."""
    if (
        not isinstance(name, str)
        or not name
        or not name.isprintable()
        or len(name.encode("utf-8", "surrogatepass")) > KEY_MAX_BYTES
    ):
        raise ConfigError(
            f"key column {name!r} is not a usable column name; pass the name of the layer's "
            f"key column (printable, 1 to {KEY_MAX_BYTES} bytes), e.g. --key-column region_id"
        )
    if name in _RESERVED_COLUMNS:
        raise ConfigError(
            f"key column {name!r} is the name of another published or input column; rename "
            "the layer's key column (e.g. to region_id) and pass that name"
        )
    return name


def is_region_mode(key_column: str) -> bool:
    """Region mode is any key column but the default (docs/CONTRACT.md §10.1)."""
    return key_column != DEFAULT_KEY_COLUMN


def key_sort_key(key: str) -> bytes:
    """The order of keys: their UTF-8 bytes (docs/CONTRACT.md §6.4, §10.1). For valid
    Unicode this is code point order, which Python's ``str`` comparison also gives; the
    bytes are spelled out so that every sort of keys says which order it means (not a
    locale's collation, not UTF-16 code units as in Java or JavaScript)."""
    return key.encode("utf-8")


def sort_keys(keys: Iterable[str]) -> list[str]:
    """``keys`` in UTF-8 byte order (:func:`key_sort_key`)."""
    return sorted(keys, key=key_sort_key)


def tile_index_schema(key_column: str = DEFAULT_KEY_COLUMN) -> pa.Schema:
    """The ``tile_index`` schema (docs/CONTRACT.md §6.2); its first column is named
    ``key_column`` (§10.1)."""
    return pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("tile_id", pa.uint64(), nullable=False),
            pa.field("raster_row", pa.uint32(), nullable=False),
            pa.field("raster_col", pa.uint32(), nullable=False),
            pa.field("centroid_lon", pa.float64(), nullable=False),
            pa.field("centroid_lat", pa.float64(), nullable=False),
            pa.field("pixel_area_m2", pa.float64(), nullable=False),
            pa.field("inclusion_rule", pa.string(), nullable=False),
        ]
    )


def tile_bounds_schema(key_column: str = DEFAULT_KEY_COLUMN) -> pa.Schema:
    """The ``tile_bounds`` schema (docs/CONTRACT.md §6.3); its first column is named
    ``key_column`` (§10.1)."""
    return pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("tile_id", pa.uint64(), nullable=False),
            pa.field("min_lon_deg", pa.float64(), nullable=False),
            pa.field("max_lon_deg", pa.float64(), nullable=False),
            pa.field("min_lat_deg", pa.float64(), nullable=False),
            pa.field("max_lat_deg", pa.float64(), nullable=False),
            pa.field("centroid_lon_deg", pa.float64(), nullable=False),
            pa.field("centroid_lat_deg", pa.float64(), nullable=False),
        ]
    )


TILE_INDEX_SCHEMA = tile_index_schema()
TILE_BOUNDS_SCHEMA = tile_bounds_schema()

# docs/CONTRACT.md §10.3: the coverage fractions, keys and order of tile_index
TILE_COVERAGE_SCHEMA = pa.schema(
    [
        pa.field("country_iso", pa.string(), nullable=False),
        pa.field("tile_id", pa.uint64(), nullable=False),
        pa.field("coverage_fraction", pa.float64(), nullable=False),
    ]
)


def tile_coverage_schema(key_column: str = "country_iso") -> pa.Schema:
    """The ``tile_coverage`` schema whose first column is named ``key_column``
    (docs/CONTRACT.md §10.1, §10.3)."""
    return TILE_COVERAGE_SCHEMA.set(0, pa.field(key_column, pa.string(), nullable=False))


# docs/CONTRACT.md §10.4: values from a raster on the index's grid, row for row with
# tile_index (null where the raster holds nodata), and their statistics per region
VALUE_COLUMN = "value"
REGION_VALUE_COLUMNS = ("count", "sum", "mean", "min", "max")
WEIGHTED_VALUE_COLUMNS = ("weighted_count", "weighted_sum", "weighted_mean")


def tile_values_schema(key_column: str = DEFAULT_KEY_COLUMN) -> pa.Schema:
    """The ``tile_values`` schema (docs/CONTRACT.md §10.4); its first column is named
    ``key_column`` (§10.1)."""
    return pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("tile_id", pa.uint64(), nullable=False),
            pa.field(VALUE_COLUMN, pa.float64(), nullable=True),
        ]
    )


def region_values_schema(key_column: str = DEFAULT_KEY_COLUMN, weighted: bool = False) -> pa.Schema:
    """The ``region_values`` schema (docs/CONTRACT.md §10.4): one row per key; the
    ``weighted_*`` columns only when the index has ``tile_coverage``. ``count`` and the
    sums are 0 for a region without values, the means, ``min`` and ``max`` null."""
    fields = [
        pa.field(key_column, pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("sum", pa.float64(), nullable=False),
        pa.field("mean", pa.float64(), nullable=True),
        pa.field("min", pa.float64(), nullable=True),
        pa.field("max", pa.float64(), nullable=True),
    ]
    if weighted:
        fields += [
            pa.field("weighted_count", pa.float64(), nullable=False),
            pa.field("weighted_sum", pa.float64(), nullable=False),
            pa.field("weighted_mean", pa.float64(), nullable=True),
        ]
    return pa.schema(fields)


# docs/CONTRACT.md §8: what the run report, its PAT counters and each country summary hold at least
REPORT_FIELDS = (
    "parameter_hash",
    "predicate",
    "ingress_versions",
    "grid_dims",
    "countries_total",
    "rows_emitted",
    "determinism_receipt",
    "pat",
)
PAT_COUNTERS = (
    "wall_clock_seconds_total",
    "cpu_seconds_total",
    "countries_processed",
    "cells_scanned_total",
    "cells_included_total",
    "bytes_read_raster_total",
    "bytes_read_vectors_total",
    "max_worker_rss_bytes",
    "open_files_peak",
    "workers_used",
    "chunk_size",
)
SUMMARY_FIELDS = (
    "country_iso",
    "cells_visited",
    "cells_included",
    "cells_excluded_outside",
    "cells_excluded_hole",
    "tile_id_min",
    "tile_id_max",
)

# docs/CONTRACT.md §9: the budgets the validator checks against the run report's pat
# counters; the read ratios are multiples of the inputs' file sizes
_GIB = 1 << 30
BUDGETS: Mapping[str, float] = {
    "max_worker_rss_bytes": _GIB,
    "run_rss_bytes": 2 * _GIB,
    "open_files_peak": 256,
    "temp_disk_worker_bytes": 2 * _GIB,
    "raster_read_ratio": 1.25,
    "vector_read_ratio": 1.25,
}

DATASET_KEYS = ("tile_index", "tile_bounds", "run_report", "country_summaries", "event_log")
# keys a dictionary may omit: only a build that publishes the dataset needs them
# (docs/CONTRACT.md §6.1, §10.3, §10.4); tile_values and region_values are written by
# ``tileindex values``, never by a build
OPTIONAL_DATASET_KEYS = ("tile_coverage", "region_geometry", "tile_values", "region_values")
# what ``tileindex values`` writes beside a published index (docs/CONTRACT.md §10.4): a
# build neither writes these nor records them in its report's ``outputs``
READ_SIDE_KEYS = ("tile_values", "region_values")
COVERAGE_FIELDS = ("coverage_receipt",)  # docs/CONTRACT.md §8: the report, with --coverage
COVERAGE_SUMMARY_FIELDS = ("coverage_area_fraction_sum",)

_HASH_RE = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would accept a trailing newline


def check_parameter_hash(value: str) -> str:
    if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
        raise ConfigError(
            f"parameter hash {value!r} is not 64 lowercase hex characters; pass a SHA-256 "
            "hex digest or omit it to derive one from the inputs"
        )
    return value


def parameter_hash(
    predicate: str,
    digests: Mapping[str, str],
    grid_json: Mapping[str, object],
    *,
    key_column: str = DEFAULT_KEY_COLUMN,
    coverage: bool = False,
) -> str:
    """SHA-256 of the canonical JSON of what determines the result (docs/CONTRACT.md §7).

    The extensions enter only when used (docs/CONTRACT.md §10): ``"key_column"`` when it
    is not ``country_iso``, ``"coverage": true`` with coverage, so a build that uses
    neither keeps its identity."""
    doc: dict[str, object] = {
        "contract_version": CONTRACT_VERSION,
        "predicate": predicate,
        "ingress": dict(sorted(digests.items())),
        "grid": grid_json,
    }
    if is_region_mode(key_column):
        doc["key_column"] = key_column
    if coverage:
        doc["coverage"] = True
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DatasetDictionary:
    """Relative path templates for every artefact, keyed by ``DATASET_KEYS``."""

    templates: Mapping[str, str]
    source: str = "the built-in dataset dictionary"

    def require(self, key: str, why: str) -> None:
        """A ConfigError naming the dictionary when it has no template for ``key``."""
        if key not in self.templates:
            raise ConfigError(
                f"{self.source} has no path template for {key}, which {why} needs; add "
                f"'{key}: <relative path with {{parameter_hash}}>' under 'datasets'"
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> DatasetDictionary:
        if path is None:
            text = resources.files("tileindex").joinpath("dataset_dictionary.yaml").read_text()
            source = "the built-in dataset dictionary"
        else:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"dataset dictionary {path}: cannot read ({exc.strerror}); pass an existing "
                    "YAML file or omit --dictionary to use the built-in one"
                ) from exc
            source = f"dataset dictionary {path}"
        return cls(dict(_templates(text, source)), source)

    def relative(self, key: str, parameter_hash: str) -> str:
        """The path of ``key`` relative to the output root, exactly as the dictionary
        spells it (a partition keeps its trailing ``/``)."""
        return self.templates[key].format(parameter_hash=parameter_hash)

    def path(self, key: str, root: str | Path, parameter_hash: str) -> Path:
        return Path(root) / self.relative(key, parameter_hash).rstrip("/")


@functools.lru_cache(maxsize=16)
def _templates(text: str, source: str) -> Mapping[str, str]:
    """The checked path templates of a dataset dictionary's text, parsed once per process:
    every ``tileindex.open`` loads its dictionary, and the parse was most of its time
    (``benchmarks/open.py``'s ``open`` column)."""
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    datasets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(datasets, dict):
        raise ConfigError(f"{source}: needs a 'datasets' mapping with {', '.join(DATASET_KEYS)}")
    missing = [k for k in DATASET_KEYS if not isinstance(datasets.get(k), str)]
    if missing:
        raise ConfigError(f"{source}: missing path templates for {', '.join(missing)}")
    keys = DATASET_KEYS + tuple(k for k in OPTIONAL_DATASET_KEYS if k in datasets)
    for key in keys:
        tpl = datasets[key]
        if not isinstance(tpl, str):
            raise ConfigError(f"{source}: the {key} path template must be a string")
        if "{parameter_hash}" not in tpl or Path(tpl).is_absolute() or ".." in Path(tpl).parts:
            raise ConfigError(
                f"{source}: {key} template {tpl!r} must be a relative path containing "
                "{parameter_hash}"
            )
    return {k: datasets[k] for k in keys}


def determinism_receipt(partition: Path, partition_path: str) -> dict[str, str]:
    """SHA-256 over every file's bytes of ``partition``, in ASCII order of relative path
    (docs/CONTRACT.md §7).

    ``partition_path`` is what the receipt records: the dataset dictionary's path of the
    partition relative to the output root (:meth:`DatasetDictionary.relative`), so the
    receipt does not depend on where the output root lives or on a staged copy's path.
    """
    digest = hashlib.sha256()
    files = sorted(
        (p for p in partition.rglob("*") if p.is_file()),
        key=lambda p: p.relative_to(partition).as_posix().encode("ascii"),
    )
    for path in files:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return {"partition_path": partition_path, "sha256_hex": digest.hexdigest()}
