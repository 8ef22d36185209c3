"""``tileindex demo`` end to end on a coarse grid: prepare once, build, table, map."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tileindex.cli import main


def test_demo_prepares_builds_and_draws(tmp_path: Path) -> None:
    args = ["demo", "--out", str(tmp_path), "--resolution", "600", "--workers", "1", "--quiet"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "largest countries" in first.stdout
    assert "RU" in first.stdout  # the largest country by far at any resolution
    png = next(tmp_path.glob("out/reports/layer1/1B/state=S1/parameter_hash=*/preview.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    inputs = tmp_path / "inputs-600arcsec"
    stamp = (inputs / "countries.parquet").stat().st_mtime_ns
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "identical" in second.stdout  # the same bytes again: a no-op publish
    assert (inputs / "countries.parquet").stat().st_mtime_ns == stamp  # inputs reused
