"""report: evidence value types, atomic JSON files and the resource meter."""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import re
import resource
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

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
# relative to the output root, as the dataset dictionary names it
PARTITION = f"data/layer1/1B/tile_index/parameter_hash={'0' * 64}/"
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
        "determinism_receipt": {"partition_path": PARTITION, "sha256_hex": "d" * 64},
        "pat": _pat(),
        "engine": "serial",
        "started_at": rfc3339_utc(),
        "finished_at": rfc3339_utc(),
        "outputs": {"tile_index": PARTITION},
        "grid_transform": (1.0, 0.0, -180.0, 0.0, -1.0, 90.0),
    }
    return RunReport(**(values | kw))


def test_contract_lists_match_the_spec() -> None:
    # the sets above are written from docs/CONTRACT.md §8; the code's lists must say the same
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
    ("kw", "words"),
    [
        ({"ingress_versions": {"iso": "a", "raster": "c"}}, r"ingress_versions needs .*'raster'\]"),
        ({"grid_dims": {"rows": 1, "cols": 2}}, r"grid_dims needs nrows and ncols"),
        ({"determinism_receipt": {"sha256_hex": "d"}}, r"determinism_receipt needs partition_path"),
    ],
)
def test_run_report_refuses_incomplete_mappings(kw, words):
    with pytest.raises(ValueError, match=words):
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
    with pytest.raises(ValueError, match="not JSON compliant"):
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
    # compact, one object per line, fields in CountrySummary's order (written out by hand)
    assert lines[0] == (
        '{"country_iso":"AD","cells_visited":9,"cells_included":3,"cells_excluded_outside":6,'
        '"cells_excluded_hole":0,"tile_id_min":1,"tile_id_max":3,"notes":[]}'
    )
    assert [CountrySummary.from_json(json.loads(line)) for line in lines] == summaries
    write_jsonl_atomic(path, [])
    assert path.read_text() == ""


def _descriptors() -> int:
    """Open descriptors counted without /proc: every number that fstat accepts."""
    limit = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16)
    count = 0
    for fd in range(limit):
        try:
            os.fstat(fd)
        except OSError:
            continue
        count += 1
    return count


def _cpu(t: os.times_result) -> float:
    return t.user + t.system


def test_resource_meter_measures_the_process(tmp_path):
    wall0, cpu0 = time.perf_counter(), os.times()
    meter = ResourceMeter()
    first = meter.sample()
    cpu1, wall1 = os.times(), time.perf_counter()
    # the meter counts from its creation, not from the start of the process (which has
    # run for seconds by now): both readings lie within what was measured around it
    assert 0 <= first.wall_seconds <= wall1 - wall0
    # both read the kernel's clock ticks and may differ only by float rounding: one sums
    # the differences, the other differences the sums (0.00999999999999801 > 0.0099999999999909)
    assert 0 <= first.cpu_seconds <= _cpu(cpu1) - _cpu(cpu0) + 1e-9
    assert first.rss_peak_bytes > 1 << 20  # a Python with numpy and pyarrow loaded
    assert first.rss_peak_bytes == peak_rss_bytes()
    # the kernel batches per-thread RSS counters, so the two readings may differ by a few pages
    assert first.rss_now_bytes is not None
    assert 0 < first.rss_now_bytes <= first.rss_peak_bytes + (1 << 20)
    assert first.open_files_now == _descriptors()

    handles = [open(tmp_path / f"f{i}", "w") for i in range(20)]  # noqa: SIM115
    try:
        during = meter.sample()
    finally:
        for h in handles:
            h.close()
    assert during.open_files_now == first.open_files_now + 20
    after = meter.sample()
    assert after.open_files_now == first.open_files_now
    assert after.open_files_peak == meter.open_files_peak == during.open_files_now

    # allocate (and touch) more than the gap to the lifetime peak: the peak must rise
    grow = first.rss_peak_bytes - first.rss_now_bytes + (64 << 20)
    with mmap.mmap(-1, grow) as block:  # fresh pages, as in test_module_level_probes
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[:] = 1
        busy = int(pages.sum())
        later = meter.sample()
        del pages
    assert busy == grow
    assert later.rss_peak_bytes >= first.rss_peak_bytes + (32 << 20)
    assert later.cpu_seconds > first.cpu_seconds
    assert later.wall_seconds > first.wall_seconds
    assert set(later.to_json()) >= {"rss_peak_bytes", "cpu_seconds", "open_files_peak"}


def test_module_level_probes():
    assert open_files_now() == _descriptors()
    with open(os.devnull) as _:
        assert open_files_now() == _descriptors()
    status = Path("/proc/self/status")
    if status.exists():  # Linux: the same figures through another interface
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        hwm = int(fields["VmHWM"].split()[0]) * 1024
        rss = int(fields["VmRSS"].split()[0]) * 1024
        assert peak_rss_bytes() >= hwm
        assert abs(rss_now_bytes() - rss) <= 4 << 20
    now = rss_now_bytes()
    # fresh pages from the kernel, each touched: a malloc'd block may reuse memory that an
    # earlier test freed and left resident, and then the resident set need not grow
    with mmap.mmap(-1, 48 << 20) as block:
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[:: mmap.PAGESIZE] = 1
        assert rss_now_bytes() - now >= 40 << 20
        assert int(pages[-mmap.PAGESIZE]) == 1
        del pages


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="resetting the peak needs Linux /proc"
)
def test_a_meter_reports_the_peak_since_it_started_not_the_process_history():
    # a build inside a long-lived process (notebook, service, test session) must not be
    # judged by what the process did before it (docs/CONTRACT.md §8.2 main_rss_peak_bytes)
    block = np.ones((256 << 20) // 8)  # touched: the process's peak rises by 256 MiB
    assert float(block.sum()) == block.size
    history = peak_rss_bytes()
    del block
    meter = ResourceMeter()
    usage = meter.sample()
    assert usage.rss_now_bytes is not None
    assert usage.rss_peak_bytes <= history - (128 << 20)
    assert usage.rss_peak_bytes >= usage.rss_now_bytes - (1 << 20)
