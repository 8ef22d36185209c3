"""Run metrics: Prometheus text exposition and JSON, built from a real run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import shapely
from click.testing import CliRunner

from tileindex.cli import main

from factories import build_args, make_inputs


def test_metrics_out_writes_prometheus_text_and_json(tmp_path: Path) -> None:
    iso, countries, raster = make_inputs(
        tmp_path, {"AA": [shapely.box(-10, -10, 10, 10)], "BB": [shapely.box(20, 0, 25, 5)]}
    )
    prom = tmp_path / "metrics.prom"
    args = build_args(
        iso,
        countries,
        raster,
        tmp_path / "out",
        "--workers",
        "1",
        "--metrics-out",
        str(prom),
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = prom.read_text()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        samples[name_labels] = float(value)

    def value(prefix: str, extra: str = "") -> float:
        (hit,) = [v for k, v in samples.items() if k.startswith(prefix + "{") and extra in k]
        return hit

    assert value("tileindex_tiles_total") == 425  # 20 x 20 + 5 x 5 one-degree cells
    units = value("tileindex_units_total")
    assert units == 2
    assert value("tileindex_unit_seconds_count") == units
    assert value("tileindex_unit_seconds_bucket", 'le="+Inf"') == units
    buckets = [v for k, v in samples.items() if k.startswith("tileindex_unit_seconds_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert value("tileindex_shard_flush_seconds_count") == 1
    assert any(k.startswith("tileindex_worker_rss_bytes") and v > 0 for k, v in samples.items())
    assert re.search(r"# TYPE tileindex_unit_seconds histogram", text)
    doc = json.loads(prom.with_name("metrics.prom.json").read_text())
    assert doc["tiles_total"] == 425 and doc["units_total"] == 2
    assert doc["tiles_per_second"] > 0
