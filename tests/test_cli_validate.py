"""``tileindex validate`` and ``tileindex parity`` through their runners."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner

from tileindex.cli.parity import parity
from tileindex.cli.validate import validate
from tileindex.pipeline import build
from tileindex.predicates import PREDICATES

from factories import make_inputs

COUNTRIES = {
    "AA": [shapely.Polygon([(-10, -10), (10, -8), (9, 10), (-9, 9)])],
    "BB": [shapely.box(20, 0, 25, 5)],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    folder = tmp_path_factory.mktemp("cli")
    iso, countries, raster = make_inputs(folder, COUNTRIES)
    build(iso, countries, raster, folder / "out")
    args = ["--iso", str(iso), "--countries", str(countries), "--raster", str(raster)]
    return args, folder / "out"


def test_a_valid_build_prints_a_summary_and_exits_0(world) -> None:
    args, out = world
    result = CliRunner().invoke(validate, ["--out", str(out), *args, "--samples", "2", "-q"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "tileindex validate: OK" in text
    assert "0 failed" in text and "recount" in text
    assert text.count("on AA's boundary") + text.count("on BB's boundary") == 2
    assert "seconds" in text
    assert result.stderr == ""


def test_json_is_for_machines(world) -> None:
    args, out = world
    result = CliRunner().invoke(
        validate, ["--out", str(out), *args, "--samples", "3", "--seed", "5", "--json"]
    )
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["findings"] == []
    assert len(doc["stats"]["sampled_windows"]) == 3 and doc["stats"]["seed"] == 5
    assert "streaming" in result.stderr  # progress goes to stderr


def test_findings_exit_1_grouped_by_code(world, tmp_path: Path) -> None:
    args, out = world
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    partition = next((copy / "data/layer1/1B/tile_index").iterdir())
    (partition / "README").write_text("not a part file")
    result = CliRunner().invoke(validate, ["--out", str(copy), *args, "-q"])
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "E010_IMMUTABLE_PARTITION (2)" in result.stdout  # the stray file and the receipt
    assert "stray entry 'README'" in result.stdout
    doc = json.loads(CliRunner().invoke(validate, ["--out", str(copy), *args, "--json"]).stdout)
    assert doc["ok"] is False and {f["code"] for f in doc["findings"]} == {
        "E010_IMMUTABLE_PARTITION"
    }


def test_nothing_to_validate_is_one_clean_line(world, tmp_path: Path) -> None:
    args, _ = world
    result = CliRunner().invoke(validate, ["--out", str(tmp_path), *args])
    assert result.exit_code == 1
    assert "error: no published tile_index partition" in result.stderr
    assert "Traceback" not in result.output


def test_parity_prints_both_engines_side_by_side(world) -> None:
    args, _ = world
    result = CliRunner().invoke(
        parity, [*args, "--codes", "AA,BB", "--window", "8", "--samples", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "sha256 fast" in lines[0] and "sha256 legacy" in lines[0]
    # 2 countries x 2 windows x every predicate (the default "both" compares each)
    assert sum(1 for line in lines if line.endswith("same")) == 2 * 2 * len(PREDICATES)
    assert "0 different" in lines[-1]


def test_parity_json_and_one_predicate(world) -> None:
    args, _ = world
    result = CliRunner().invoke(
        parity, [*args, "--codes", "BB", "--samples", "2", "--predicate", "any_overlap", "--json"]
    )
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert {w["predicate"] for w in doc["windows"]} == {"any_overlap"}
    assert doc["windows"][0]["fast"]["sha256"] == doc["windows"][0]["reference"]["sha256"]


def test_parity_unknown_code_exits_1(world) -> None:
    args, _ = world
    result = CliRunner().invoke(parity, [*args, "--codes", "AA,XX"])
    assert result.exit_code == 1
    assert "'XX' have no polygons" in result.stderr


def test_help_lists_the_options() -> None:
    text = CliRunner().invoke(validate, ["--help"]).output
    for option in ("--out", "--parameter-hash", "--samples", "--seed", "--full", "--json"):
        assert option in text
    text = CliRunner().invoke(parity, ["--help"]).output
    for option in ("--codes", "--window", "--samples", "--seed", "--predicate", "--json"):
        assert option in text
