"""``tileindex build`` through its runner: summary, clean errors, nothing partial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from click.testing import CliRunner

from tileindex.cli import main

from factories import build_args, make_inputs, write_grid


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_inputs(
        tmp_path, {"AA": [shapely.box(-10, -10, 10, 10)], "BB": [shapely.box(20, 0, 25, 5)]}
    )


def _error_lines(stderr: str) -> tuple[str, dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    message = next(line for line in lines if line.startswith("error: "))
    event = json.loads(next(line for line in lines if line.startswith("{")))
    return message, event


def test_build_prints_a_summary(inputs, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, build_args(*inputs, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "published" in result.stdout
    assert "425" in result.stdout  # AA 20 x 20 + BB 5 x 5 one-degree cells
    again = CliRunner().invoke(main, build_args(*inputs, tmp_path / "out"))
    assert again.exit_code == 0
    assert "identical" in again.stdout


def test_help_reads_well() -> None:
    result = CliRunner().invoke(main, ["build", "--help"])
    assert result.exit_code == 0
    for option in (
        "--iso",
        "--countries",
        "--raster",
        "--out",
        "--predicate",
        "--engine",
        "--chunk-size",
        "--parameter-hash",
    ):
        assert option in result.output
    top = CliRunner().invoke(main, ["--help"])
    assert "build" in top.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--chunk-size", "0"], "chunk size"),
        (["--parameter-hash", "XYZ"], "parameter hash"),
        (["--coverage", "--engine", "legacy"], "--coverage needs the fast engine"),
    ],
)
def test_bad_options_exit_nonzero_with_one_line(inputs, tmp_path: Path, extra, needle) -> None:
    result = CliRunner().invoke(main, build_args(*inputs, tmp_path / "out", *extra))
    assert result.exit_code != 0
    message, event = _error_lines(result.stderr)
    assert needle in message
    assert event["event"] == "S1_ERROR"
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "data").exists()


def test_unknown_predicate_is_refused(inputs, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, build_args(*inputs, tmp_path / "out", "--predicate", "centre")
    )
    assert result.exit_code != 0
    assert "centre" in result.stderr and "center" in result.stderr


def test_missing_input_names_the_input(inputs, tmp_path: Path) -> None:
    iso, countries, _raster = inputs
    result = CliRunner().invoke(
        main, build_args(iso, countries, tmp_path / "nope.tif", tmp_path / "out")
    )
    assert result.exit_code != 0
    message, _ = _error_lines(result.stderr)
    assert "nope.tif" in message
    assert not (tmp_path / "out" / "data").exists()


def test_south_up_grid_fails_with_e002_and_an_event(inputs, tmp_path: Path) -> None:
    iso, countries, _ = inputs
    raster = write_grid(tmp_path / "southup.tif", 360, 180, (1.0, 0.0, -180.0, 0.0, 1.0, -90.0))
    result = CliRunner().invoke(main, build_args(iso, countries, raster, tmp_path / "out"))
    assert result.exit_code != 0
    message, event = _error_lines(result.stderr)
    assert "E002_RASTER_MISMATCH" in message
    assert event["code"] == "E002_RASTER_MISMATCH"
    assert event["at"].endswith("Z")


def test_invalid_geometry_event_names_the_country(tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    inputs = make_inputs(tmp_path, {"AA": [shapely.box(-10, -10, -5, -5)], "BO": [bowtie]})
    out = tmp_path / "out"
    result = CliRunner().invoke(main, build_args(*inputs, out))
    assert result.exit_code != 0
    _message, event = _error_lines(result.stderr)
    assert event["code"] == "E001_GEO_INVALID" and event["country_iso"] == "BO"
    assert len(event["parameter_hash"]) == 64
    logged = list(out.glob("logs/layer1/1B/state=S1/parameter_hash=*/events.jsonl"))
    assert len(logged) == 1
    assert json.loads(logged[0].read_text().splitlines()[-1])["code"] == "E001_GEO_INVALID"
    assert not (out / "data").exists()


def test_event_log_records_the_plan(inputs, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, build_args(*inputs, tmp_path / "out", "--workers", "1"))
    assert result.exit_code == 0, result.output
    log = next((tmp_path / "out").glob("logs/**/events.jsonl"))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    (plan,) = [e for e in events if e["event"] == "S1_PLAN"]
    assert {u[1] for u in plan["units"]} == {"AA", "BB"}


def test_an_unwritable_output_root_is_a_clean_error(inputs, tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.mkdir()
    # a file where the staging folder must go: writing under --out fails
    (blocker / ".tileindex-staging").write_text("in the way")
    result = CliRunner().invoke(main, build_args(*inputs, blocker))
    assert result.exit_code == 1
    message, event = _error_lines(result.stderr)
    assert "choose a writable --out" in message
    assert event["code"] == "S1_OUTPUT_ERROR"
    assert "Traceback" not in result.output
