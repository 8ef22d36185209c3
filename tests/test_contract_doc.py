"""docs/CONTRACT.md and the README against the code and a real build: the tables marked
``<!-- table: NAME -->`` are parsed and compared with what is published, so the
documents cannot drift from the code."""

from __future__ import annotations

import builtins
import inspect
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from tileindex import contract, errors
from tileindex.contract import BUDGETS, DatasetDictionary
from tileindex.layout import part_files
from tileindex.pipeline import BuildResult, build
from tileindex.report import PatCounters

from factories import make_inputs

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "CONTRACT.md"
README = ROOT / "README.md"

# Arrow type names as the documents spell them
ARROW_TYPES = {
    "string": pa.string(),
    "uint64": pa.uint64(),
    "int64": pa.int64(),
    "uint32": pa.uint32(),
    "float64": pa.float64(),
}
NULLABLE = {"no": False, "yes": True}
_MARKER = re.compile(r"^<!-- table: (\S+) -->$")


def tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table that follows a ``<!-- table: NAME -->`` line, as rows keyed by
    the header cells; backticks around a cell are dropped."""
    found: dict[str, list[dict[str, str]]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = _MARKER.match(line.strip())
        if not m:
            continue
        body = []
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            body.append([cell.strip() for cell in row.strip().strip("|").split("|")])
        assert len(body) >= 3, f"{path.name}: table {m.group(1)} has no rows"
        header, separator, *rows = body
        assert all(set(cell) <= set("-:") for cell in separator), f"{m.group(1)}: no separator"
        assert m.group(1) not in found, f"{path.name}: table {m.group(1)} appears twice"
        found[m.group(1)] = [
            dict(zip(header, (_plain(c) for c in row), strict=True)) for row in rows
        ]
    return found


def _plain(cell: str) -> str:
    return cell[1:-1] if len(cell) >= 2 and cell[0] == cell[-1] == "`" else cell


@pytest.fixture(scope="module")
def doc() -> dict[str, list[dict[str, str]]]:
    return tables(CONTRACT)


@pytest.fixture(scope="module")
def readme() -> dict[str, list[dict[str, str]]]:
    return tables(README)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A small real build: one country with a hole, its enclave, a code without polygons."""
    tmp = tmp_path_factory.mktemp("contract-doc")
    host = shapely.box(-10, -10, 10, 10).difference(shapely.box(-2, -2, 2, 2))
    inputs = make_inputs(
        tmp, {"AA": [host], "BB": [shapely.box(-2, -2, 2, 2)]}, iso_codes=["AA", "BB", "CC"]
    )
    return build(*inputs, tmp / "out")


@pytest.fixture(scope="module")
def built_coverage(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The same build with ``coverage=True`` (docs/CONTRACT.md §10.3)."""
    tmp = tmp_path_factory.mktemp("contract-doc-coverage")
    host = shapely.box(-10, -10, 10, 10).difference(shapely.box(-2, -2, 2, 2))
    inputs = make_inputs(
        tmp, {"AA": [host], "BB": [shapely.box(-2.5, -2, 2, 2.5)]}, iso_codes=["AA", "BB", "CC"]
    )
    return build(*inputs, tmp / "out", predicate="any_overlap", coverage=True)


def _published_schema(result: BuildResult, dataset: str) -> pa.Schema:
    parts = part_files(result.paths[dataset])
    assert parts, f"{dataset}: nothing published"
    return pq.read_schema(parts[0])


def _documented_schema(rows: list[dict[str, str]]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(r["column"], ARROW_TYPES[r["type"]], nullable=NULLABLE[r["nullable"]])
            for r in rows
        ]
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", dict: "object", list: "array"}[type(value)]


def _type_matches(documented: str, value: Any) -> bool:
    allowed = set(documented.split(" or "))
    if "number" in allowed:
        allowed.add("integer")  # JSON numbers include the integers
    return _json_type(value) in allowed


def _flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every field, each parent before its children; ``pat`` is
    documented in a table of its own, so its children are left out here."""
    out = []
    for key, value in doc.items():
        name = prefix + key
        out.append((name, value))
        if isinstance(value, dict) and name != "pat":
            out.extend(_flatten(value, name + "."))
    return out


# -- columns ------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["tile_index", "tile_bounds"])
def test_column_tables_match_what_a_build_publishes(doc, built, dataset: str) -> None:
    documented = _documented_schema(doc[f"columns/{dataset}"])
    published = _published_schema(built, dataset)
    assert published.names == documented.names
    for got, want in zip(published, documented, strict=True):
        assert got.type == want.type, got.name
        assert got.nullable == want.nullable, got.name


def test_the_coverage_column_table_matches_what_a_build_publishes(doc, built_coverage) -> None:
    documented = _documented_schema(doc["columns/tile_coverage"])
    assert _published_schema(built_coverage, "tile_coverage").equals(documented)
    assert documented.equals(contract.tile_coverage_schema())


@pytest.mark.parametrize(
    ("dataset", "schema"),
    [
        ("tile_index", contract.TILE_INDEX_SCHEMA),
        ("tile_bounds", contract.TILE_BOUNDS_SCHEMA),
        ("tile_coverage", contract.TILE_COVERAGE_SCHEMA),
    ],
)
def test_column_tables_match_the_contract_schemas(doc, dataset: str, schema: pa.Schema) -> None:
    assert _documented_schema(doc[f"columns/{dataset}"]).equals(schema)


@pytest.mark.parametrize("dataset", ["tile_index", "tile_bounds"])
def test_readme_column_tables_name_the_published_columns_and_types(
    readme, built, dataset: str
) -> None:
    published = _published_schema(built, dataset)
    rows = readme[f"columns/{dataset}"]
    assert [r["column"] for r in rows] == published.names
    assert [ARROW_TYPES[r["type"]] for r in rows] == published.types


def test_paths_table_is_the_built_in_dictionary(doc) -> None:
    documented = {r["key"]: r["path template"] for r in doc["paths"]}
    assert documented == dict(DatasetDictionary.load().templates)


# -- error codes --------------------------------------------------------------------------


def _error_classes() -> list[type[errors.TileIndexError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.TileIndexError) and cls is not errors.TileIndexError
    ]


def _rows_by_code(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes)), "a code is documented twice"
    return dict(zip(codes, rows, strict=True))


def _names(cell: str) -> list[str]:
    return [name.strip().strip("`") for name in cell.split(",")]


def test_error_table_documents_exactly_the_codes_of_the_error_classes(doc) -> None:
    documented = set(_rows_by_code(doc["errors"]))
    raised = {cls("probe").event_code for cls in _error_classes()}
    assert documented == raised


def test_error_table_names_the_class_and_built_in_of_each_code(doc) -> None:
    listed: set[str] = set()
    for code, row in _rows_by_code(doc["errors"]).items():
        classes, bases = _names(row["raised as"]), _names(row["built-in"])
        assert len(classes) == len(bases), code
        for cls_name, builtin_name in zip(classes, bases, strict=True):
            cls = getattr(errors, cls_name)
            assert cls("probe").event_code == code, cls_name
            assert issubclass(cls, getattr(builtins, builtin_name)), cls_name
            listed.add(cls_name)
        assert row["when"] and row["fix"], f"{code}: say when it happens and how to fix it"
    assert listed == {cls.__name__ for cls in _error_classes()}


def test_readme_error_table_lists_every_code(doc, readme) -> None:
    assert {r["code"] for r in readme["errors"]} == set(_rows_by_code(doc["errors"]))


# -- report, PAT, summaries ---------------------------------------------------------------


def _report_json(result: BuildResult) -> dict[str, Any]:
    return json.loads(result.paths["run_report"].read_text())


def test_run_report_table_is_every_field_a_build_writes_in_order(doc, built) -> None:
    documented = [r["field"] for r in doc["run_report"]]
    written = _flatten(_report_json(built))
    assert documented == [name for name, _ in written]
    assert set(contract.REPORT_FIELDS) <= set(documented)


def test_coverage_report_table_is_every_field_coverage_adds_in_order(
    doc, built, built_coverage
) -> None:
    base = {name for name, _ in _flatten(_report_json(built))}
    written = _flatten(_report_json(built_coverage))
    added = [name for name, _ in written if name not in base]
    assert [r["field"] for r in doc["run_report/coverage"]] == added
    assert [name for name, _ in written if name in base] == [r["field"] for r in doc["run_report"]]
    values = dict(written)
    for row in doc["run_report/coverage"]:
        assert _type_matches(row["type"], values[row["field"]]), row["field"]
    assert set(contract.COVERAGE_FIELDS) <= {r["field"] for r in doc["run_report/coverage"]}


def test_coverage_summary_table_is_the_field_coverage_adds(doc, built_coverage) -> None:
    documented = [r["field"] for r in doc["summary"]] + [
        r["field"] for r in doc["summary/coverage"]
    ]
    lines = built_coverage.paths["country_summaries"].read_text().splitlines()
    for line in lines:
        summary = json.loads(line)
        assert list(summary) == documented
        for row in doc["summary/coverage"]:
            assert _type_matches(row["type"], summary[row["field"]]), row["field"]
    assert list(contract.COVERAGE_SUMMARY_FIELDS) == [r["field"] for r in doc["summary/coverage"]]


def test_run_report_types_match_the_written_values(doc, built) -> None:
    values = dict(_flatten(_report_json(built)))
    for row in doc["run_report"]:
        assert _type_matches(row["type"], values[row["field"]]), row["field"]


def test_pat_table_is_every_counter_a_build_writes(doc, built) -> None:
    documented = [r["field"] for r in doc["pat"]]
    pat = _report_json(built)["pat"]
    assert documented == list(pat)
    assert documented == [f.name for f in fields(PatCounters)]
    assert set(contract.PAT_COUNTERS) <= set(documented)
    for row in doc["pat"]:
        assert _type_matches(row["type"], pat[row["field"]]), row["field"]
        assert row["unit"], f"{row['field']}: a counter needs a unit"


def test_summary_table_is_every_field_of_a_summary_line(doc, built) -> None:
    documented = [r["field"] for r in doc["summary"]]
    lines = [
        json.loads(line)
        for line in built.paths["country_summaries"].read_text().splitlines()
        if line
    ]
    assert [s["country_iso"] for s in lines] == ["AA", "BB", "CC"]
    for summary in lines:
        assert documented == list(summary)
        for row in doc["summary"]:
            assert _type_matches(row["type"], summary[row["field"]]), row["field"]
    assert set(contract.SUMMARY_FIELDS) <= set(documented)
    # CC has no polygons: the nullable tile ids are exercised as null
    assert lines[2]["tile_id_min"] is None


def test_every_event_a_build_logs_is_documented(doc, built) -> None:
    documented = {r["event"] for r in doc["events"]}
    logged = {
        json.loads(line)["event"]
        for line in built.paths["event_log"].read_text().splitlines()
        if line
    }
    assert logged <= documented
    assert {"S1_ERROR", "S1_PLAN", "S1_UNIT", "S1_SHARD_FLUSH", "S1_MERGE"} <= documented


# -- budgets ------------------------------------------------------------------------------


def _limit(text: str) -> float:
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)\s*(GiB)?", text)
    assert m, f"budget limit {text!r} does not start with a number"
    return float(m.group(1)) * (1 << 30 if m.group(2) else 1)


def test_budget_table_is_the_validator_budgets(doc) -> None:
    documented = {r["BUDGETS key"]: _limit(r["limit"]) for r in doc["budgets"]}
    assert documented == {k: float(v) for k, v in BUDGETS.items()}


def test_readme_budget_table_agrees_with_the_contract(doc, readme) -> None:
    short = {r["budget"]: _limit(r["limit"]) for r in readme["budgets"]}
    assert short == {r["budget"]: _limit(r["limit"]) for r in doc["budgets"]}


# -- links ----------------------------------------------------------------------------


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors (lowercase, punctuation dropped, spaces to hyphens) and
    explicit ``<a id="...">`` anchors."""
    text = path.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize(("source", "prefix"), [(README, "docs/CONTRACT.md"), (CONTRACT, "")])
def test_links_into_the_contract_resolve(source: Path, prefix: str) -> None:
    targets = re.findall(rf"\]\({re.escape(prefix)}#([^)]+)\)", source.read_text())
    assert targets, f"{source.name} has no links into the contract"
    missing = sorted(set(targets) - _anchors(CONTRACT))
    assert not missing, f"{source.name} links to anchors that do not exist: {missing}"


def test_readme_points_at_the_contract_not_the_shared_spec() -> None:
    text = README.read_text()
    assert "../shared/" not in text
    assert "](docs/CONTRACT.md)" in text


# -- the parser itself --------------------------------------------------------------------


def test_parser_reads_marked_tables_only(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "<!-- table: t -->\n| a | b |\n|---|---|\n| `x` | y |\n| z | `w` |\nafter\n"
    )
    assert tables(md) == {"t": [{"a": "x", "b": "y"}, {"a": "z", "b": "w"}]}
