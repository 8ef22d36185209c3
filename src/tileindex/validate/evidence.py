"""The evidence against the partition: the run report (docs/CONTRACT.md §8 fields, pat
counters, parameter hash, input digests, grid), the §9 budgets, the determinism receipt
and the country summaries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tileindex.contract import (
    BUDGETS,
    DEFAULT_KEY_COLUMN,
    PAT_COUNTERS,
    REPORT_FIELDS,
    SUMMARY_FIELDS,
    determinism_receipt,
)
from tileindex.contract import parameter_hash as derive_parameter_hash
from tileindex.predicates import PREDICATES
from tileindex.validate.findings import E002, E005, E008, E009, E010, Checks
from tileindex.validate.keys import CountryRows
from tileindex.validate.target import Target

# the code of a missing report field
_FIELD_CODES = {
    "parameter_hash": E010,
    "predicate": E008,
    "ingress_versions": E010,
    "grid_dims": E002,
    "countries_total": E005,
    "rows_emitted": E008,
    "determinism_receipt": E010,
    "pat": E009,
}


@dataclass(frozen=True)
class Report:
    """The run report as read: ``doc`` is None when it is missing or not a JSON object;
    ``pat`` its pat counters ({} when absent); ``derived_hash_matches`` whether the
    parameter hash derived from the inputs and its predicate is the partition's (None
    without a valid predicate)."""

    doc: Mapping[str, Any] | None
    pat: Mapping[str, Any]
    derived_hash_matches: bool | None


def check_report(c: Checks, target: Target) -> Report:
    """The run report against the partition and the inputs: the docs/CONTRACT.md §8
    fields and pat counters, parameter hash, input digests, grid, countries_total and the
    §9 budgets."""
    phash, digests, grid = target.phash, target.digests, target.grid
    path = target.path("run_report")
    c.ran("report readable", E010)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        c.fail("report readable", E010, f"run report {path} missing or unreadable: {exc}")
        return Report(None, {}, None)
    if not isinstance(report, dict):
        c.fail("report readable", E010, f"run report {path} is not a JSON object")
        return Report(None, {}, None)
    for key in REPORT_FIELDS:
        code = _FIELD_CODES[key]
        c.ran(f"report field {key}", code)
        if key not in report:
            c.fail(f"report field {key}", code, f"run report lacks '{key}' (docs/CONTRACT.md §8)")
    pat_doc = report.get("pat")
    pat: Mapping[str, Any] = pat_doc if isinstance(pat_doc, dict) else {}
    for key in PAT_COUNTERS:
        c.ran("pat counters", E009)
        value = pat.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            c.fail("pat counters", E009, f"pat.{key} is missing or not a number >= 0: {value!r}")

    c.ran("parameter_hash", E010)
    if report.get("parameter_hash") != phash:
        c.fail(
            "parameter_hash",
            E010,
            f"report parameter_hash {report.get('parameter_hash')!r} is not the partition's "
            f"{phash}",
        )
    c.ran("input digests", E010)
    ingress = report.get("ingress_versions")
    ingress = ingress if isinstance(ingress, dict) else {}
    for key, digest in digests.items():
        if ingress.get(key) != digest:
            c.fail(
                "input digests",
                E010,
                f"the given {key} input differs from the one the run used: sha256 {digest} "
                f"here, {ingress.get(key)!r} in the report; validate against the run's inputs",
            )
    c.ran("key column", E010)
    # a report from before region mode has no key_column: it was a country build
    recorded_key = report.get("key_column", DEFAULT_KEY_COLUMN)
    if recorded_key != target.key_column:
        c.fail(
            "key column",
            E010,
            f"report key_column {recorded_key!r} is not {target.key_column!r}; validate "
            f"with the build's --key-column ({recorded_key!r})",
        )
    derived_matches = None
    pred = report.get("predicate")
    if isinstance(pred, str) and pred in PREDICATES:
        derived = derive_parameter_hash(
            pred,
            digests,
            grid.to_json(),
            key_column=target.key_column,
            coverage=report.get("coverage_receipt") is not None,
        )
        derived_matches = derived == phash
        if not derived_matches:
            c.warn(
                "parameter_hash is not the one derived from these inputs, predicate and "
                "grid (an explicit --parameter-hash, or other inputs)"
            )
    c.ran("grid", E002)
    dims = report.get("grid_dims")
    if dims != {"nrows": grid.nrows, "ncols": grid.ncols}:
        c.fail(
            "grid",
            E002,
            f"report grid_dims {dims!r} is not the raster's "
            f"{{'nrows': {grid.nrows}, 'ncols': {grid.ncols}}}",
        )
    transform = report.get("grid_transform")
    if transform is not None and transform != list(grid.transform):
        c.fail("grid", E002, f"report grid_transform {transform} is not {list(grid.transform)}")
    c.ran("countries_total", E005)
    if report.get("countries_total") != len(target.iso_codes):
        c.fail(
            "countries_total",
            E005,
            f"report countries_total {report.get('countries_total')!r} but the "
            f"{target.key_list} has {len(target.iso_codes)} keys",
        )
    _check_budgets(c, pat, target.sizes, len(target.iso_codes))
    return Report(report, pat, derived_matches)


def _check_budgets(c: Checks, pat: Mapping[str, Any], sizes: Mapping[str, int], total: int) -> None:
    """docs/CONTRACT.md §9 against the pat counters, and the counters' consistency."""

    def num(key: str) -> float | None:
        v = pat.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def budget(name: str, value: float | None, limit: float, what: str) -> None:
        c.ran(f"budget {name}", E009)
        if value is not None and value > limit:
            c.fail(f"budget {name}", E009, f"{what}: {value:,.0f} > budget {limit:,.0f}")

    worker = num("max_worker_rss_bytes")
    budget("worker rss", worker, BUDGETS["max_worker_rss_bytes"], "peak RSS of a worker")
    workers = num("workers_used")
    main = num("main_rss_peak_bytes")
    if worker is not None and workers is not None:
        if workers <= 1:
            run_rss = worker
        else:
            if main is None:
                c.warn("pat.main_rss_peak_bytes missing: whole-run RSS counts workers only")
            run_rss = (main or 0.0) + workers * worker
        budget("run rss", run_rss, BUDGETS["run_rss_bytes"], "peak RSS of the whole run")
    budget("open files", num("open_files_peak"), BUDGETS["open_files_peak"], "open files")
    budget(
        "worker temp disk",
        num("temp_disk_worker_peak_bytes"),
        BUDGETS["temp_disk_worker_bytes"],
        "temp disk of a worker",
    )
    budget(
        "raster bytes",
        num("bytes_read_raster_total"),
        BUDGETS["raster_read_ratio"] * sizes["raster"],
        f"raster bytes read (raster is {sizes['raster']:,} bytes)",
    )
    budget(
        "vector bytes",
        num("bytes_read_vectors_total"),
        BUDGETS["vector_read_ratio"] * sizes["vectors"],
        f"vector bytes read (ISO list + countries are {sizes['vectors']:,} bytes)",
    )
    c.ran("pat consistency", E009)
    if num("countries_processed") not in (None, float(total)):
        c.fail(
            "pat consistency",
            E009,
            f"pat.countries_processed {pat.get('countries_processed')} but the ISO list has "
            f"{total} codes",
        )
    for key in ("workers_used", "chunk_size"):
        value = num(key)
        if value is not None and value < 1:
            c.fail("pat consistency", E009, f"pat.{key} is {value}, expected >= 1")


def report_predicate(c: Checks, report: Report) -> str | None:
    """The run's predicate, when the report names a valid one."""
    c.ran("predicate", E008)
    pred = None if report.doc is None else report.doc.get("predicate")
    if isinstance(pred, str) and pred in PREDICATES:
        return pred
    if report.doc is not None:
        c.fail(
            "predicate",
            E008,
            f"report predicate {pred!r} is not one of {', '.join(PREDICATES)}",
        )
    c.warn("no valid predicate in the report: row and recount checks are skipped")
    return None


# -- files ----------------------------------------------------------------------------


def check_receipt(c: Checks, target: Target, report: Report) -> dict[str, str] | None:
    """The tile_index partition's receipt, recomputed, against the one the run recorded;
    returns the recomputed one (None when the partition is missing)."""
    c.ran("determinism receipt", E010)
    index_dir = target.path("tile_index")
    if not index_dir.is_dir():
        return None
    relative = target.paths.relative("tile_index", target.phash)
    receipt = determinism_receipt(index_dir, relative)
    recorded = report.doc.get("determinism_receipt") if report.doc is not None else None
    if not isinstance(recorded, dict):
        return receipt
    if recorded.get("sha256_hex") != receipt["sha256_hex"]:
        c.fail(
            "determinism receipt",
            E010,
            f"tile_index bytes hash to {receipt['sha256_hex']}, the report recorded "
            f"{recorded.get('sha256_hex')!r}: the partition is not what the run published",
        )
    if recorded.get("partition_path") != relative:
        c.fail(
            "determinism receipt",
            E010,
            f"receipt partition_path {recorded.get('partition_path')!r} is not the "
            f"partition's path relative to the output root, {relative!r}",
        )
    return receipt


def check_summaries(
    c: Checks, target: Target, rows: Mapping[str, CountryRows], report: Report
) -> None:
    """The country summaries against the ISO list and the partition's rows; the pat's
    cells_scanned_total against their cells_visited. A summary's key field is named
    like the datasets' key column (docs/CONTRACT.md §10.1)."""
    path = target.path("country_summaries")
    key_field = target.key_column
    fields = (key_field, *SUMMARY_FIELDS[1:])
    for name, code in (
        ("summaries readable", E010),
        ("summary per ISO code", E005),
        ("summary counts", E008),
        ("summary tile ids", E002),
    ):
        c.ran(name, code)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        c.fail("summaries readable", E010, f"country summaries {path} missing or unreadable: {exc}")
        return
    seen: dict[str, dict[str, Any]] = {}
    visited_total = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            c.fail("summaries readable", E010, f"{path.name} line {n} is not JSON")
            continue
        missing = [k for k in fields if not isinstance(doc, dict) or k not in doc]
        if missing:
            c.fail("summaries readable", E010, f"{path.name} line {n} lacks {missing}")
            continue
        code = doc[key_field]
        if code in seen:
            c.fail("summary per ISO code", E005, f"two summaries for {code}", code)
        seen[code] = doc
        counts = [doc[k] for k in SUMMARY_FIELDS[1:5]]
        if not all(isinstance(x, int) and x >= 0 for x in counts):
            c.fail(
                "summary counts",
                E008,
                f"summary of {code}: counts {counts} not ints >= 0",
                code,
            )
            continue
        visited, included, outside, hole = counts
        visited_total += visited
        if visited != included + outside + hole:
            c.fail(
                "summary counts",
                E008,
                f"summary of {code}: cells_visited {visited} != included {included} + "
                f"outside {outside} + hole {hole}",
                code,
            )
        counted = rows.get(code, CountryRows())
        if included != counted.count:
            c.fail(
                "summary counts",
                E008,
                f"summary of {code}: cells_included {included} but the partition has "
                f"{counted.count} row(s)",
                code,
            )
        if (doc["tile_id_min"], doc["tile_id_max"]) != (counted.tile_min, counted.tile_max):
            c.fail(
                "summary tile ids",
                E002,
                f"summary of {code}: tile_id_min/max {doc['tile_id_min']}/{doc['tile_id_max']} "
                f"but the rows span {counted.tile_min}/{counted.tile_max}",
                code,
            )
    foreign = sorted(set(seen) - set(target.iso_codes))
    absent = sorted(set(target.iso_codes) - set(seen))
    if foreign:
        c.fail(
            "summary per ISO code",
            E005,
            f"summaries for keys not in the {target.key_list}: {foreign[:10]}",
        )
    if absent:
        c.fail(
            "summary per ISO code",
            E005,
            f"no summary for key(s) of the {target.key_list}: {absent[:10]}",
        )
    scanned = report.pat.get("cells_scanned_total")
    c.ran("pat consistency", E009)
    if isinstance(scanned, int) and scanned != visited_total:
        c.fail(
            "pat consistency",
            E009,
            f"pat.cells_scanned_total {scanned} != sum of the summaries' cells_visited "
            f"{visited_total}",
        )


def check_counts(c: Checks, report: Report, row_count: int) -> None:
    """The report's row counts against the partition's."""
    c.ran("row counts", E008)
    doc = report.doc if report.doc is not None else {}
    for key, value in (
        ("rows_emitted", doc.get("rows_emitted")),
        ("pat.cells_included_total", report.pat.get("cells_included_total")),
    ):
        if value is not None and value != row_count:
            c.fail(
                "row counts",
                E008,
                f"report {key} {value} but the partition has {row_count} rows",
            )


# -- inclusion ---------------------------------------------------------------------------
