"""report: evidence value types, atomic JSON files and the resource meter."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from tileindex.contract import CONTRACT_VERSION, PAT_COUNTERS, REPORT_FIELDS, SUMMARY_FIELDS
from tileindex.report import (
    CountrySummary,
    PatCounters,
    ResourceMeter,
    RunReport,
    ingress_versions,
    open_files_now,
    peak_rss_bytes,
    rfc3339_utc,
    rss_now_bytes,
    write_json_atomic,
    write_jsonl_atomic,
)

SPEC_PAT = {
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
}
SPEC_REPORT = {
    "parameter_hash",
    "predicate",
    "ingress_versions",
    "grid_dims",
    "countries_total",
    "rows_emitted",
    "determinism_receipt",
    "pat",
}
SPEC_SUMMARY = {
    "country_iso",
    "cells_visited",
    "cells_included",
    "cells_excluded_outside",
    "cells_excluded_hole",
    "tile_id_min",
    "tile_id_max",
}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _pat(**kw) -> PatCounters:
    values = dict.fromkeys(SPEC_PAT, 0) | {"wall_clock_seconds_total": 1.5} | kw
    return PatCounters(**values)


def _report(**kw) -> RunReport:
    values = {
        "parameter_hash": "0" * 64,
        "predicate": "center",
        "ingress_versions": {"iso": "a" * 64, "countries": "b" * 64, "raster": "c" * 64},
        "grid_dims": {"nrows": 16755, "ncols": 43199},
        "countries_total": 2,
        "rows_emitted": 10,
        "determinism_receipt": {"partition_path": "/out/p", "sha256_hex": "d" * 64},
        "pat": _pat(),
        "engine": "serial",
        "started_at": rfc3339_utc(),
        "finished_at": rfc3339_utc(),
        "outputs": {"tile_index": "/out/p"},
        "grid_transform": (1.0, 0.0, -180.0, 0.0, -1.0, 90.0),
    }
    return RunReport(**(values | kw))


def test_contract_lists_match_the_spec() -> None:
    # the sets above are written from SPEC §8; the code's lists must say the same
    assert set(PAT_COUNTERS) == SPEC_PAT
    assert set(REPORT_FIELDS) == SPEC_REPORT
    assert set(SUMMARY_FIELDS) == SPEC_SUMMARY


def test_country_summary_json():
    s = CountrySummary("FJ", 100, 40, 55, 5, 17, 99, notes=("crosses 180",))
    doc = s.to_json()
    assert set(doc) >= SPEC_SUMMARY
    assert doc["notes"] == ["crosses 180"]
    assert CountrySummary.from_json(json.loads(json.dumps(doc))) == s
    empty = CountrySummary("VA", 4, 0, 4, 0, None, None).to_json()
    assert json.loads(json.dumps(empty))["tile_id_min"] is None
    assert empty["tile_id_max"] is None


def test_pat_has_every_spec_counter():
    doc = _pat(workers_used=4).to_json()
    assert set(doc) >= SPEC_PAT
    assert PatCounters.from_json(doc) == _pat(workers_used=4)


def test_run_report_has_every_spec_field():
    report = _report()
    doc = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert set(doc) >= SPEC_REPORT
    assert set(doc["ingress_versions"]) == {"iso", "countries", "raster"}
    assert doc["grid_dims"] == {"nrows": 16755, "ncols": 43199}
    assert set(doc["determinism_receipt"]) == {"partition_path", "sha256_hex"}
    assert set(doc["pat"]) >= SPEC_PAT
    assert doc["contract_version"] == CONTRACT_VERSION
    for key in ("engine", "started_at", "finished_at", "outputs"):
        assert key in doc
    assert "chunk_size" not in doc  # docs/CONTRACT.md §8 puts it in pat, once
    assert RFC3339_Z.match(doc["started_at"]) and RFC3339_Z.match(doc["finished_at"])
    assert RunReport.from_json(doc) == report
    assert pickle.loads(pickle.dumps(report)) == report


def test_ingress_versions_names_the_three_inputs_as_the_contract_does():
    doc = ingress_versions(iso="a" * 64, countries="b" * 64, raster="c" * 64)
    assert doc == {"iso": "a" * 64, "countries": "b" * 64, "raster": "c" * 64}


@pytest.mark.parametrize(
    "kw",
    [
        {"ingress_versions": {"iso": "a", "raster": "c"}},
        {"grid_dims": {"rows": 1, "cols": 2}},
        {"determinism_receipt": {"sha256_hex": "d"}},
    ],
)
def test_run_report_refuses_incomplete_mappings(kw):
    with pytest.raises(ValueError):
        _report(**kw)


def test_rfc3339_utc():
    assert RFC3339_Z.match(rfc3339_utc())
    fixed = datetime(2026, 1, 2, 4, 5, 6, 789000, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339_utc(fixed) == "2026-01-02T02:05:06.789Z"
    parsed = datetime.fromisoformat(rfc3339_utc().replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_write_json_atomic(tmp_path):
    path = tmp_path / "deep" / "er" / "s1_run_report.json"
    write_json_atomic(path, _report())
    assert json.loads(path.read_text())["rows_emitted"] == 10
    write_json_atomic(path, {"replaced": True})
    assert json.loads(path.read_text()) == {"replaced": True}
    assert os.listdir(path.parent) == [path.name]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_write_json_atomic_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"v": math.nan})
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_write_jsonl_atomic(tmp_path):
    path = tmp_path / "country_summaries.jsonl"
    summaries = [
        CountrySummary("AD", 9, 3, 6, 0, 1, 3),
        CountrySummary("VA", 1, 0, 1, 0, None, None),
    ]
    write_jsonl_atomic(path, summaries)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [s.to_json() for s in summaries]
    write_jsonl_atomic(path, [])
    assert path.read_text() == ""


def test_resource_meter_measures_the_process(tmp_path):
    meter = ResourceMeter()
    first = meter.sample()
    assert first.rss_peak_bytes > 1 << 20  # a Python with numpy and pyarrow loaded
    assert first.rss_peak_bytes == peak_rss_bytes()
    # the kernel batches per-thread RSS counters, so the two readings may differ by a few pages
    assert first.rss_now_bytes is not None
    assert 0 < first.rss_now_bytes <= first.rss_peak_bytes + (1 << 20)
    assert first.open_files_now is not None and first.open_files_now >= 3  # stdio at least
    assert first.wall_seconds >= 0 and first.cpu_seconds >= 0

    handles = [open(tmp_path / f"f{i}", "w") for i in range(20)]  # noqa: SIM115
    try:
        during = meter.sample()
    finally:
        for h in handles:
            h.close()
    assert during.open_files_now >= first.open_files_now + 20
    after = meter.sample()
    assert after.open_files_peak == meter.open_files_peak >= during.open_files_now
    assert after.open_files_now < during.open_files_now

    # allocate (and touch) more than the gap to the lifetime peak: the peak must rise
    grow = first.rss_peak_bytes - first.rss_now_bytes + (64 << 20)
    block = np.ones(grow // 8, dtype=np.float64)
    busy = float(block.sum())
    later = meter.sample()
    assert busy == grow // 8
    assert later.rss_peak_bytes >= first.rss_peak_bytes + (32 << 20)
    assert later.cpu_seconds > first.cpu_seconds
    assert later.wall_seconds > first.wall_seconds
    assert set(later.to_json()) >= {"rss_peak_bytes", "cpu_seconds", "open_files_peak"}


def test_module_level_probes():
    assert peak_rss_bytes() > 0
    assert rss_now_bytes() > 0
    assert open_files_now() >= 3
