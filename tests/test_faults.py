"""Builds that survive faults: each fault is injected through a real mechanism (the
TILEINDEX_FAULTS setting read by the workers, or a real SIGKILL) and the run either
recovers with the clean bytes or fails cleanly with nothing published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import shapely

from tileindex import faults
from tileindex.errors import DiskFullError, ImmutablePartitionError, WorkerError
from tileindex.faults import ANY_TARGET, ENV, parse
from tileindex.pipeline import build
from tileindex.shards import STAGING_DIRNAME, cleanup_stale_staging

from factories import build_args, make_inputs

COUNTRIES = {
    "AA": [
        shapely.Polygon(
            [(0, 0), (30, 2), (28, 25), (1, 20)], [[(10, 5), (10, 10), (15, 10), (15, 5)]]
        )
    ],
    "BB": [shapely.box(10, 5, 15, 10)],
    "CC": [shapely.box(-60, -30, -40, -10)],
}
LAYOUT = {"rows_per_row_group": 300, "row_groups_per_file": 2}
GRID = {"ncols": 720, "nrows": 360, "transform": (0.5, 0.0, -180.0, 0.0, -0.5, 90.0)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path_factory.mktemp("faults"), COUNTRIES, **GRID)


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory: pytest.TempPathFactory):
    return build(*inputs, tmp_path_factory.mktemp("clean"), chunk_size=64, **LAYOUT)


def _receipt(result) -> str:
    return result.report.determinism_receipt["sha256_hex"]


def _published(out: Path) -> bool:
    return (out / "data").exists()


def _staging_left(out: Path) -> list[Path]:
    folder = out / STAGING_DIRNAME
    return list(folder.iterdir()) if folder.exists() else []


def test_fault_spec_is_parsed_strictly() -> None:
    assert parse("unit:raise:3:2, part:corrupt:0")[0].attempts == 2
    with pytest.raises(ValueError, match="SITE:ACTION:TARGET"):
        parse("unit:raise")
    with pytest.raises(ValueError, match="action"):
        parse("unit:explode:1")
    assert parse("part:sleep:*")[0].target == ANY_TARGET
    with pytest.raises(ValueError, match="SITE:ACTION:TARGET"):
        parse("unit:raise:some")


def test_the_fault_setting_is_parsed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = faults.parse
    monkeypatch.setattr(faults, "parse", lambda spec: calls.append(spec) or real(spec))
    faults._planned.cache_clear()
    monkeypatch.setenv(ENV, "unit:raise:99")
    for unit in range(50):
        faults.before("unit", unit, 1)  # units 0-49: none of them fires
    assert calls == ["unit:raise:99"]
    monkeypatch.setenv(ENV, "unit:raise:3")  # a changed setting is read anew
    with pytest.raises(RuntimeError, match="injected fault in unit 3"):
        faults.before("unit", 3, 1)
    assert calls == ["unit:raise:99", "unit:raise:3"]
    faults._planned.cache_clear()


def test_a_star_targets_every_task_and_faults_fire_in_the_order_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faults, "SLEEP_SECONDS", 0.2)
    monkeypatch.setenv(ENV, "part:sleep:*,part:raise:7")
    t0 = time.monotonic()
    faults.before("part", 123, 1)  # sleeps, does not raise
    assert time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="part 7"):
        faults.before("part", 7, 1)  # sleeps, then raises
    assert time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    faults.before("part", 7, 2)  # attempt 2: neither fires
    faults.before("unit", 7, 1)  # another site
    assert time.monotonic() - t0 < 0.2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_unit_that_raises_is_retried_with_identical_results(
    inputs, clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv(ENV, "unit:raise:1:3")  # fails on attempts 1-3, succeeds on the 4th
    result = build(*inputs, tmp_path, chunk_size=64, workers=workers, **LAYOUT)
    assert _receipt(result) == _receipt(clean)
    assert result.summaries == clean.summaries


def test_a_unit_that_keeps_raising_fails_the_run_cleanly(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "unit:raise:0:9")
    with pytest.raises(WorkerError, match=r"unit 0 .* failed 4 times") as info:
        build(*inputs, tmp_path, chunk_size=64, **LAYOUT)
    assert "injected fault" in str(info.value)
    assert not _published(tmp_path) and not _staging_left(tmp_path)
    events = list(tmp_path.glob("logs/**/events.jsonl"))
    assert json.loads(events[0].read_text().splitlines()[-1])["code"] == "S1_WORKER_FAILED"


def test_a_killed_worker_is_replaced_and_its_units_rerun(
    inputs, clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "unit:kill:1")  # SIGKILL the worker running unit 1, once
    result = build(*inputs, tmp_path, chunk_size=64, workers=2, **LAYOUT)
    assert _receipt(result) == _receipt(clean)
    assert not _staging_left(tmp_path)


def test_workers_that_keep_dying_fail_the_run_cleanly(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "part:kill:0:9")
    with pytest.raises(WorkerError, match="died"):
        build(*inputs, tmp_path, chunk_size=64, workers=2, **LAYOUT)
    assert not _published(tmp_path) and not _staging_left(tmp_path)


def test_disk_full_while_writing_fails_cleanly(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "part:enospc:1")
    with pytest.raises(DiskFullError, match="no space left"):
        build(*inputs, tmp_path, chunk_size=64, **LAYOUT)
    assert not _published(tmp_path) and not _staging_left(tmp_path)


def test_a_corrupted_part_is_caught_by_its_checksum_and_rewritten(
    inputs, clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "part:corrupt:0")
    result = build(*inputs, tmp_path, chunk_size=64, **LAYOUT)
    assert _receipt(result) == _receipt(clean)


def test_a_part_that_stays_corrupt_fails_the_run(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "part:corrupt:0:9")
    with pytest.raises(WorkerError, match="checksum"):
        build(*inputs, tmp_path, chunk_size=64, **LAYOUT)
    assert not _published(tmp_path)


def _cli(inputs, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tileindex", *build_args(*inputs, out, *extra)]
    return subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_parent_leaves_nothing_and_the_rerun_is_identical(inputs, tmp_path: Path) -> None:
    clean_run = build(*inputs, tmp_path / "ref")  # default layout, like the CLI
    out = tmp_path / "out"
    # with one worker the units run in the parent: the fault SIGKILLs the parent itself
    proc = _cli(inputs, out, "--workers", "1", env={ENV: "unit:kill:2"})
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    assert not _published(out)
    stale = _staging_left(out)
    assert stale  # what the dead process was writing, outside the final paths
    rerun = _cli(inputs, out, "--workers", "1")
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    reports = list(out.glob("reports/**/s1_run_report.json"))
    receipt = json.loads(reports[0].read_text())["determinism_receipt"]["sha256_hex"]
    assert receipt == _receipt(clean_run)
    # the dead process's staging is recognised as stale and removed
    removed = cleanup_stale_staging(out, older_than_s=0)
    assert set(removed) >= set(stale)
    assert not _staging_left(out)


def test_racing_builds_publish_one_result_never_a_mixture(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    procs = [_cli(inputs, out, "--workers", "1") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = "".join(o for o, _ in outputs)
    assert "published" in said and ("identical" in said or said.count("published") == 2)
    reference = build(*inputs, tmp_path / "ref")
    index = next(out.glob("data/layer1/1B/tile_index/*"))
    files = {p.name: p.read_bytes() for p in index.iterdir()}
    ref_files = {p.name: p.read_bytes() for p in reference.paths["tile_index"].iterdir()}
    assert files == ref_files


def test_racing_builds_with_different_results_one_is_refused(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    phash = "cd" * 32
    procs = [
        _cli(inputs, out, "--workers", "1", "--parameter-hash", phash, "--predicate", predicate)
        for predicate in ("center", "any_overlap")
    ]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=120)]]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    loser = next(err for rc, err in results if rc == 1)
    assert "E010_IMMUTABLE_PARTITION" in loser
    # the published partition is wholly one predicate's
    index = next(out.glob("data/layer1/1B/tile_index/*"))
    rules = set(pq.read_table(index)["inclusion_rule"].to_pylist())
    assert len(rules) == 1
    bounds = next(out.glob("data/layer1/1B/tile_bounds/*"))
    assert pq.read_table(bounds).num_rows == pq.read_table(index).num_rows


def test_e010_leaves_the_existing_partition_untouched(inputs, clean, tmp_path: Path) -> None:
    phash = "ef" * 32
    first = build(*inputs, tmp_path, parameter_hash=phash)
    before = {p: p.read_bytes() for p in first.paths["tile_bounds"].iterdir()}
    with pytest.raises(ImmutablePartitionError):
        build(*inputs, tmp_path, parameter_hash=phash, predicate="any_overlap")
    assert {p: p.read_bytes() for p in first.paths["tile_bounds"].iterdir()} == before


def test_ctrl_c_leaves_nothing_published(inputs, tmp_path: Path) -> None:
    import signal

    out = tmp_path / "out"
    # the legacy engine keeps the build busy for seconds; interrupt it once it is staging
    proc = _cli(inputs, out, "--workers", "1", "--engine", "legacy")
    deadline = time.monotonic() + 60
    while not _staging_left(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: nothing was published" in err and "Traceback" not in err
    assert not _published(out) and not _staging_left(out)
