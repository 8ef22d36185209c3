"""``tileindex demo`` end to end on a coarse grid: prepare once, build, table, map; and
its region path (Algeria's communes, with coverage)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
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


def test_demo_of_a_region_layer_builds_its_communes_with_coverage(tmp_path: Path) -> None:
    args = ["demo", "--out", str(tmp_path), "--resolution", "1200", "--workers", "1", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--regions", "dz-communes", "--coverage"])
    assert result.exit_code == 0, result.output
    assert "largest regions" in result.stdout and "commune_code" in result.stdout
    assert "largest countries" not in result.stdout
    (partition,) = tmp_path.glob("out/data/layer1/1B/tile_index/parameter_hash=*")
    table = pq.read_table(partition, columns=["commune_code"])
    assert table.num_rows > 0
    counts = Counter(table.column("commune_code").to_pylist())
    top, rows = counts.most_common(1)[0]
    assert f"{rows:,}" in result.stdout and top in result.stdout
    assert (tmp_path / "regions-dz-communes-1200arcsec" / "regions.parquet").is_file()
    (coverage,) = tmp_path.glob("out/data/layer1/1B/tile_coverage/parameter_hash=*")
    assert coverage.name == partition.name
    report = partition.parents[4] / "reports/layer1/1B/state=S1" / partition.name
    for name in ("preview.png", "preview-coverage.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "coverage map:" in result.stdout
