"""telemetry: the typed events and their event-log lines, the callback implementations
and the progress display."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from tileindex.cli.progress import ProgressTelemetry
from tileindex.errors import GeometryInvalidError, ImmutablePartitionError
from tileindex.grid import MaskCounts, Window
from tileindex.plan import ChunkShape, WorkUnit
from tileindex.report import CountrySummary, PatCounters, RunReport, rfc3339_utc
from tileindex.telemetry import (
    ERROR_EVENT,
    ExecutorEvent,
    JsonLinesTelemetry,
    MergeEvent,
    MultiTelemetry,
    NullTelemetry,
    PlanEvent,
    ShardFlushEvent,
    Telemetry,
    UnitEvent,
    error_event,
)

HASH = "f" * 64
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SUMMARY = CountrySummary("FJ", 10, 4, 6, 0, 3, 9)


def _report() -> RunReport:
    pat = PatCounters(1.0, 1.0, 1, 10, 4, 0, 0, 1, 5, 1, 64)
    return RunReport(
        parameter_hash=HASH,
        predicate="center",
        ingress_versions={"iso": "a", "countries": "b", "raster": "c"},
        grid_dims={"nrows": 2, "ncols": 5},
        countries_total=1,
        rows_emitted=4,
        determinism_receipt={"partition_path": "/p", "sha256_hex": "e" * 64},
        pat=pat,
        engine="serial",
        started_at=rfc3339_utc(),
        finished_at=rfc3339_utc(),
    )


def _drive(t: Telemetry, report: RunReport | None) -> None:
    t.on_start(1, 2)
    t.on_unit_done("FJ", 5, 2, 0.25)
    t.on_unit_done("FJ", 5, 2, 0.5)
    t.on_country_done(SUMMARY)
    t.on_event(error_event("E001_GEO_INVALID", "ring self-intersects", HASH, country_iso="FJ"))
    t.on_finish(report)


def test_error_event_has_the_spec_fields():
    ev = error_event(
        ImmutablePartitionError.code, "already published", HASH, raster_row=3, raster_col=0
    )
    assert ev["event"] == ERROR_EVENT == "S1_ERROR"
    assert ev["code"] == "E010_IMMUTABLE_PARTITION"
    assert RFC3339_Z.match(ev["at"])
    assert ev["parameter_hash"] == HASH
    assert ev["message"] == "already published"
    assert ev["raster_row"] == 3 and ev["raster_col"] == 0  # 0 is kept, only None is dropped
    assert "country_iso" not in ev
    json.dumps(ev, allow_nan=False)


def test_error_event_from_an_error_context():
    err = GeometryInvalidError("FJ: ring self-intersects at (1, 2)", country_iso="FJ")
    ev = error_event(err.code, err.message, None, **err.context)
    assert ev["country_iso"] == "FJ"
    assert ev["code"] == "E001_GEO_INVALID"
    assert ev["parameter_hash"] is None
    assert set(ev) == {"event", "code", "at", "parameter_hash", "message", "country_iso"}


def test_error_event_refuses_unknown_context():
    with pytest.raises(TypeError, match="row"):
        error_event("E004_BOUNDS", "m", HASH, row=3)


@pytest.mark.parametrize(
    "t",
    [NullTelemetry(), MultiTelemetry(), JsonLinesTelemetry("/dev/null")],
)
def test_implementations_satisfy_the_protocol(t):
    assert isinstance(t, Telemetry)


def test_null_telemetry_does_nothing(capsys):
    _drive(NullTelemetry(), _report())
    assert capsys.readouterr() == ("", "")


def test_json_lines_telemetry(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    t = JsonLinesTelemetry(path)
    _drive(t, _report())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == [
        "S1_START",
        "S1_UNIT_DONE",
        "S1_UNIT_DONE",
        "S1_COUNTRY_DONE",
        "S1_ERROR",
        "S1_FINISH",
    ]
    assert all(RFC3339_Z.match(line["at"]) for line in lines)
    assert lines[0]["total_units"] == 2
    assert lines[2]["seconds"] == 0.5
    assert lines[3]["cells_included"] == 4 and lines[3]["tile_id_max"] == 9
    assert lines[4]["country_iso"] == "FJ"
    assert lines[5]["ok"] is True and lines[5]["rows_emitted"] == 4

    _drive(t, None)  # appends
    lines = path.read_text().splitlines()
    assert len(lines) == 12
    assert json.loads(lines[-1])["ok"] is False


def test_json_lines_errors_only(tmp_path):
    path = tmp_path / "events.jsonl"
    _drive(JsonLinesTelemetry(path, progress=False), None)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["S1_ERROR"]


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_start(self, total_countries, total_units):
        self.calls.append("start")

    def on_unit_done(self, iso, cells_visited, cells_included, seconds):
        self.calls.append("unit")

    def on_country_done(self, summary):
        self.calls.append("country")

    def on_event(self, event):
        self.calls.append(event["event"])

    def on_finish(self, report):
        self.calls.append("finish")


def test_multi_telemetry_fans_out_in_order():
    a, b = _Recorder(), _Recorder()
    _drive(MultiTelemetry(a, b), None)
    assert a.calls == b.calls == ["start", "unit", "unit", "country", "S1_ERROR", "finish"]


# -- the progress display of the CLI (tileindex.cli.progress) ---------------------------


def _render(tele: ProgressTelemetry, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(tele)
    return console.export_text().splitlines()


def _live(units_total: int, countries_total: int = 249) -> ProgressTelemetry:
    console = Console(width=80, file=io.StringIO())
    tele = ProgressTelemetry(live=True, console=console)  # not entered: no refresh thread
    tele.on_start(countries_total, units_total)
    return tele


def _assert_fits(lines: list[str], width: int = 80) -> None:
    assert lines, "nothing rendered"
    assert not any("…" in line for line in lines), lines  # no cell cut short
    assert max(len(line) for line in lines) <= width, lines


def test_display_fits_80_columns_with_every_counter_whole() -> None:
    tele = _live(units_total=12_345)
    plan = [[0, "RU", 10_240, 11_264, 123_456_789], [1, "AA", 0, 10, 500]]
    tele.on_event({"event": "S1_PLAN", "units": plan})
    for _ in range(10_000):
        tele.on_unit_done("RU", 5_000_000, 2_000_000, 0.1)
    for _ in range(3):
        tele.on_country_done(SUMMARY)
    lines = _render(tele)
    _assert_fits(lines)
    text = "\n".join(lines)
    assert "10000/12345" in text
    assert "countries 3/249" in text
    assert "M rows/s" in text and "M cells/s" in text
    assert "heaviest left: RU rows 10240-11264 (123.5 M cells)" in text
    assert re.search(r"\b\d:\d\d:\d\d\b", text)  # elapsed time, whole


def test_display_fits_80_columns_before_the_first_unit() -> None:
    lines = _render(_live(units_total=260))
    _assert_fits(lines)
    assert "0/260" in "\n".join(lines)


def test_display_wraps_a_long_region_key_instead_of_cutting_it() -> None:
    key = "K" * 128  # the longest key docs/CONTRACT.md §10.1 allows
    tele = _live(units_total=2, countries_total=10_000)
    tele.on_event({"event": "S1_PLAN", "units": [[0, key, 0, 1024, 9_000_000]]})
    lines = _render(tele)
    _assert_fits(lines)
    assert key in "".join(line.strip() for line in lines)


def test_plain_progress_names_the_heaviest_unit_left(capsys: pytest.CaptureFixture[str]) -> None:
    tele = ProgressTelemetry(live=False, interval_s=0.0)
    tele.on_start(2, 3)
    tele.on_event(
        {
            "event": "S1_PLAN",
            "units": [
                [0, "AA", 0, 10, 500],
                [1, "RU", 0, 1024, 9_000_000],
                [2, "RU", 1024, 2048, 8_000_000],
            ],
        }
    )
    tele.on_event({"event": "S1_UNIT", "unit_id": 1})
    tele.on_unit_done("RU", 9_000_000, 4_000_000, 1.0)
    err = capsys.readouterr().err
    assert "units 1/3" in err
    assert "heaviest left: RU rows 1024-2048 (8.0 M cells)" in err


UNIT = WorkUnit(
    7, "FJ", (Window(3, 9, 0, 4), Window(3, 5, 40, 43)), ChunkShape(16, 16), row_start=3, row_stop=9
)


def test_event_lines_keep_their_fields_in_order() -> None:
    # the event log's lines as the contract's readers know them: name, time, then fields
    lines = {
        "S1_EXECUTOR": ExecutorEvent("dask", 4, "http://h:8787/status").to_json(),
        "S1_PLAN": PlanEvent.of([UNIT]).to_json(),
        "S1_UNIT": UnitEvent.of(UNIT, MaskCounts(30, 12, 2), 0.12345678, "pid9").to_json(),
        "S1_SHARD_FLUSH": ShardFlushEvent(0, 12, 3456, 0.5, "pid9").to_json(),
        "S1_MERGE": MergeEvent(parts=1, rows=12, bytes=3456, seconds=0.75).to_json(),
    }
    fields = {
        "S1_EXECUTOR": ["executor", "workers", "dashboard"],
        "S1_PLAN": ["units"],
        "S1_UNIT": [
            "unit_id",
            "country_iso",
            "row_start",
            "row_stop",
            "col_spans",
            "cells_visited",
            "cells_included",
            "seconds",
            "worker",
        ],
        "S1_SHARD_FLUSH": ["part_index", "rows", "bytes", "seconds", "worker"],
        "S1_MERGE": ["parts", "rows", "bytes", "seconds"],
    }
    for name, line in lines.items():
        assert list(line) == ["event", "at", *fields[name]]
        assert line["event"] == name and RFC3339_Z.match(line["at"])
        assert json.loads(json.dumps(line)) == line  # plain JSON values, lists not tuples
    # 6 + 2 cells in its two windows' rows 3..9 and 3..5: 6*4 + 2*3 = 30
    assert lines["S1_PLAN"]["units"] == [[7, "FJ", 3, 9, 30]]
    assert lines["S1_UNIT"]["col_spans"] == [[0, 4], [40, 43]]
    assert lines["S1_UNIT"]["seconds"] == 0.123457
    assert (lines["S1_UNIT"]["cells_visited"], lines["S1_UNIT"]["cells_included"]) == (30, 12)


def test_error_event_line_keeps_the_contract_order() -> None:
    ev = error_event("E003_DUP_TILE", "twice", HASH, country_iso="FJ", raster_col=4)
    assert list(ev) == [
        "event",
        "code",
        "at",
        "parameter_hash",
        "message",
        "country_iso",
        "raster_col",
    ]
