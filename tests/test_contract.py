"""The contract in code (docs/CONTRACT.md §6.1, §7): the dataset dictionary, the
parameter hash recipe and the determinism receipt, each checked against values derived
here independently (hand-written canonical JSON, hashlib over the files' bytes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner

from tileindex.cli import main
from tileindex.contract import (
    DATASET_KEYS,
    DatasetDictionary,
    determinism_receipt,
    parameter_hash,
)
from tileindex.errors import ConfigError, TileIndexError
from tileindex.pipeline import build

from factories import build_args, make_inputs

HASH = "ab" * 32

BUILT_IN = {
    "tile_index": "data/layer1/1B/tile_index/parameter_hash={parameter_hash}/",
    "tile_bounds": "data/layer1/1B/tile_bounds/parameter_hash={parameter_hash}/",
    "run_report": "reports/layer1/1B/state=S1/parameter_hash={parameter_hash}/s1_run_report.json",
    "country_summaries": (
        "reports/layer1/1B/state=S1/parameter_hash={parameter_hash}/country_summaries.jsonl"
    ),
    "event_log": "logs/layer1/1B/state=S1/parameter_hash={parameter_hash}/events.jsonl",
    "tile_coverage": "data/layer1/1B/tile_coverage/parameter_hash={parameter_hash}/",
    "region_geometry": (
        "reports/layer1/1B/state=S1/parameter_hash={parameter_hash}/region_geometry.parquet"
    ),
    "tile_values": "data/layer1/1B/tile_values/parameter_hash={parameter_hash}/",
    "region_values": (
        "reports/layer1/1B/state=S1/parameter_hash={parameter_hash}/region_values.parquet"
    ),
}

# a replacement dictionary: every artefact somewhere else
ELSEWHERE = {
    "tile_index": "idx/{parameter_hash}/",
    "tile_bounds": "bnd/{parameter_hash}/",
    "run_report": "meta/{parameter_hash}/report.json",
    "country_summaries": "meta/{parameter_hash}/summaries.jsonl",
    "event_log": "meta/{parameter_hash}/events.jsonl",
}


def _yaml(datasets: dict[str, object]) -> str:
    lines = ["version: 1", "datasets:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in datasets.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_inputs(
        tmp_path, {"AA": [shapely.box(-10, -10, 10, 10)], "BB": [shapely.box(20, 0, 25, 5)]}
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the dataset dictionary -----------------------------------------------------------


def test_built_in_dictionary_holds_the_documented_paths() -> None:
    paths = DatasetDictionary.load()
    assert dict(paths.templates) == BUILT_IN
    assert paths.relative("tile_index", HASH) == f"data/layer1/1B/tile_index/parameter_hash={HASH}/"
    # a partition keeps its trailing slash in the evidence, not in the filesystem path
    assert paths.path("tile_index", Path("/r"), HASH) == Path(
        f"/r/data/layer1/1B/tile_index/parameter_hash={HASH}"
    )


def test_a_user_dictionary_replaces_every_path(tmp_path: Path) -> None:
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml(ELSEWHERE))
    paths = DatasetDictionary.load(file)
    assert dict(paths.templates) == ELSEWHERE
    assert paths.relative("run_report", HASH) == f"meta/{HASH}/report.json"
    assert paths.path("tile_bounds", tmp_path, HASH) == tmp_path / "bnd" / HASH


def test_a_dictionary_is_read_afresh_and_its_parse_shared_safely(tmp_path: Path) -> None:
    # the parse of a dictionary's text is kept for the process (tileindex.open loads it
    # every time): a changed file is read again, and a caller's change to one loaded
    # dictionary reaches no other
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml(ELSEWHERE))
    first = DatasetDictionary.load(file)
    first.templates["run_report"] = "changed/{parameter_hash}.json"  # type: ignore[index]
    assert DatasetDictionary.load(file).templates == ELSEWHERE
    file.write_text(_yaml({**ELSEWHERE, "tile_bounds": "b2/{parameter_hash}/"}))
    assert DatasetDictionary.load(file).templates["tile_bounds"] == "b2/{parameter_hash}/"


def test_extra_keys_in_a_user_dictionary_are_ignored(tmp_path: Path) -> None:
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml({**ELSEWHERE, "tile_elevation": "elev/{parameter_hash}/"}))
    assert tuple(DatasetDictionary.load(file).templates) == DATASET_KEYS


def test_the_optional_tile_coverage_key_is_kept_and_checked(tmp_path: Path) -> None:
    # docs/CONTRACT.md §6.1, §10.3: optional, but checked like the others when present
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml({**ELSEWHERE, "tile_coverage": "cov/{parameter_hash}/"}))
    paths = DatasetDictionary.load(file)
    assert paths.relative("tile_coverage", HASH) == f"cov/{HASH}/"
    file.write_text(_yaml({**ELSEWHERE, "tile_coverage": "/abs/{parameter_hash}/"}))
    with pytest.raises(ConfigError, match="tile_coverage template"):
        DatasetDictionary.load(file)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("datasets: [unclosed\n", ["not valid YAML"]),
        ("", ["needs a 'datasets' mapping", "tile_index"]),
        ("- just\n- a list\n", ["needs a 'datasets' mapping"]),
        ("version: 1\ndatasets: nothing\n", ["needs a 'datasets' mapping"]),
        (_yaml({k: v for k, v in ELSEWHERE.items() if k != "event_log"}), ["event_log"]),
        (_yaml({**ELSEWHERE, "run_report": 7}), ["missing path templates for run_report"]),
        (_yaml({**ELSEWHERE, "tile_index": "idx/fixed/"}), ["tile_index", "{parameter_hash}"]),
        (
            _yaml({**ELSEWHERE, "tile_bounds": "/abs/{parameter_hash}/"}),
            ["tile_bounds", "relative path"],
        ),
        (
            _yaml({**ELSEWHERE, "event_log": "../up/{parameter_hash}.jsonl"}),
            ["event_log", "relative path"],
        ),
    ],
    ids=[
        "not-yaml",
        "empty",
        "a-list",
        "datasets-not-a-mapping",
        "missing-key",
        "template-not-a-string",
        "no-placeholder",
        "absolute",
        "dot-dot",
    ],
)
def test_a_bad_dictionary_is_a_config_error_naming_the_file_and_the_problem(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        DatasetDictionary.load(file)
    message = str(info.value)
    assert str(file) in message
    for needle in needles:
        assert needle in message
    assert info.value.event_code == "S1_BAD_INPUT"


def test_a_missing_dictionary_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="omit --dictionary to use the built-in one"):
        DatasetDictionary.load(tmp_path / "nope.yaml")


def test_build_with_dictionary_publishes_where_the_dictionary_says(inputs, tmp_path: Path) -> None:
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml(ELSEWHERE))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, build_args(*inputs, out, "--dictionary", str(file)))
    assert result.exit_code == 0, result.output
    (phash,) = [p.name for p in (out / "idx").iterdir()]
    assert (out / "idx" / phash / "part-00000.parquet").is_file()
    assert (out / "bnd" / phash / "part-00000.parquet").is_file()
    report = json.loads((out / "meta" / phash / "report.json").read_text())
    assert (out / "meta" / phash / "summaries.jsonl").is_file()
    assert (out / "meta" / phash / "events.jsonl").is_file()
    assert not (out / "data").exists() and not (out / "reports").exists()
    assert report["outputs"] == {k: v.format(parameter_hash=phash) for k, v in ELSEWHERE.items()}
    assert report["determinism_receipt"]["partition_path"] == f"idx/{phash}/"


def test_build_with_a_bad_dictionary_fails_cleanly_before_any_work(inputs, tmp_path: Path) -> None:
    file = tmp_path / "paths.yaml"
    file.write_text(_yaml({**ELSEWHERE, "tile_index": "/abs/{parameter_hash}/"}))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, build_args(*inputs, out, "--dictionary", str(file)))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and str(file) in lines[0]
    event = json.loads(lines[1])
    assert (event["event"], event["code"]) == ("S1_ERROR", "S1_BAD_INPUT")
    assert not out.exists()


# -- the parameter hash ---------------------------------------------------------------


def test_parameter_hash_of_a_build_follows_the_documented_recipe(inputs, tmp_path: Path) -> None:
    iso, countries, raster = inputs
    # the canonical JSON written out by hand: keys sorted, no spaces, floats as Python
    # writes them; the 1-degree test grid is 360 x 180 from (-180, 90)
    canonical = (
        '{"contract_version":"tileindex/1B.S1/1",'
        '"grid":{"ncols":360,"nrows":180,"transform":[1.0,0.0,-180.0,0.0,-1.0,90.0]},'
        f'"ingress":{{"countries":"{_sha256(countries)}","iso":"{_sha256(iso)}",'
        f'"raster":"{_sha256(raster)}"}},'
        '"predicate":"any_overlap"}'
    )
    expected = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    result = build(*inputs, tmp_path / "out", predicate="any_overlap")
    assert result.parameter_hash == expected
    assert result.report.parameter_hash == expected
    assert result.paths["tile_index"].name == f"parameter_hash={expected}"


def test_parameter_hash_writes_floats_in_shortest_round_trip_form() -> None:
    digests = {"raster": "r" * 64, "iso": "i" * 64, "countries": "c" * 64}
    grid = {
        "ncols": 43199,
        "nrows": 16755,
        "transform": [0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827],
    }
    canonical = (
        '{"contract_version":"tileindex/1B.S1/1",'
        '"grid":{"ncols":43199,"nrows":16755,"transform":'
        "[0.0083333333,0.0,-180.0012493,0.0,-0.0083333333,83.6329165016827]},"
        f'"ingress":{{"countries":"{"c" * 64}","iso":"{"i" * 64}","raster":"{"r" * 64}"}},'
        '"predicate":"center"}'
    )
    assert parameter_hash("center", digests, grid) == hashlib.sha256(canonical.encode()).hexdigest()


def test_parameter_hash_changes_with_each_ingredient() -> None:
    digests = {"raster": "r" * 64, "iso": "i" * 64, "countries": "c" * 64}
    grid = {"ncols": 2, "nrows": 1, "transform": [1.0, 0.0, 0.0, 0.0, -1.0, 1.0]}
    base = parameter_hash("center", digests, grid)
    assert len(base) == 64 and base == base.lower()
    assert parameter_hash("any_overlap", digests, grid) != base
    assert parameter_hash("center", {**digests, "iso": "j" * 64}, grid) != base
    assert parameter_hash("center", digests, {**grid, "ncols": 3}) != base


def test_an_explicit_parameter_hash_names_the_result(inputs, tmp_path: Path) -> None:
    result = build(*inputs, tmp_path / "out", parameter_hash=HASH)
    assert result.parameter_hash == HASH
    assert result.paths["tile_index"].name == f"parameter_hash={HASH}"


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "xy" * 32, "ab" * 32 + "\n"])
def test_a_malformed_explicit_parameter_hash_is_refused(inputs, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="64 lowercase hex"):
        build(*inputs, tmp_path / "out", parameter_hash=bad)
    assert not (tmp_path / "out").exists()


# -- the determinism receipt ----------------------------------------------------------


def _receipt_by_hand(partition: Path) -> str:
    """SHA-256 over every file's bytes, in ASCII order of the path relative to the
    partition (a plain byte-string sort, not a per-component one)."""
    names = [p.relative_to(partition).as_posix() for p in partition.rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for name in sorted(names, key=lambda n: n.encode("ascii")):
        digest.update((partition / name).read_bytes())
    return digest.hexdigest()


def test_receipt_concatenates_in_ascii_order_of_relative_path(tmp_path: Path) -> None:
    part = tmp_path / "p"
    (part / "a").mkdir(parents=True)
    # ASCII order of the paths: "B" < "a.txt" < "a/b" < "a0" ('.' < '/' < '0'); a sort
    # by path components would put "a/b" first, a case-folding sort "a..." before "B"
    for name, data in {"B": b"1", "a.txt": b"2", "a/b": b"3", "a0": b"4"}.items():
        (part / name).write_bytes(data)
    receipt = determinism_receipt(part, "rel/p/")
    assert receipt == {
        "partition_path": "rel/p/",
        "sha256_hex": hashlib.sha256(b"1234").hexdigest(),
    }
    assert receipt["sha256_hex"] == _receipt_by_hand(part)


def test_receipt_of_a_build_covers_every_part_file(inputs, tmp_path: Path) -> None:
    # 16-row groups, 2 per file: the 425 rows span 14 part files
    result = build(*inputs, tmp_path / "out", rows_per_row_group=16, row_groups_per_file=2)
    partition = result.paths["tile_index"]
    parts = sorted(p.name for p in partition.iterdir())
    assert len(parts) == 14
    expected = hashlib.sha256(b"".join((partition / n).read_bytes() for n in parts)).hexdigest()
    receipt = json.loads(result.paths["run_report"].read_text())["determinism_receipt"]
    assert receipt["sha256_hex"] == expected == _receipt_by_hand(partition)


def test_receipt_partition_path_is_relative_to_the_output_root(inputs, tmp_path: Path) -> None:
    roots = (tmp_path / "one", tmp_path / "two" / "deeper")
    results = [build(*inputs, root) for root in roots]
    expected = f"data/layer1/1B/tile_index/parameter_hash={results[0].parameter_hash}/"
    for root, result in zip(roots, results, strict=True):
        receipt = json.loads(result.paths["run_report"].read_text())["determinism_receipt"]
        assert receipt["partition_path"] == expected
        assert (root / expected).is_dir()  # relative to this root, and it names the partition
        assert receipt["sha256_hex"] == _receipt_by_hand(root / expected)
    assert results[0].report.determinism_receipt == results[1].report.determinism_receipt


def test_config_error_is_a_value_error_and_a_tileindex_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, TileIndexError)
