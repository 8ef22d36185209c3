"""telemetry: the S1_ERROR event and the callback implementations."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tileindex.errors import GeometryInvalidError, ImmutablePartitionError
from tileindex.report import CountrySummary, PatCounters, RunReport, rfc3339_utc
from tileindex.telemetry import (
    ERROR_EVENT,
    JsonLinesTelemetry,
    LoggingTelemetry,
    MultiTelemetry,
    NullTelemetry,
    Telemetry,
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
    [NullTelemetry(), LoggingTelemetry(), MultiTelemetry(), JsonLinesTelemetry("/dev/null")],
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


def test_logging_telemetry_logs_and_never_prints(caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="tileindex.telemetry"):
        _drive(LoggingTelemetry(), _report())
    assert capsys.readouterr() == ("", "")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "E001_GEO_INVALID" in errors[0].getMessage()
    assert any("FJ: 4 of 10 cells included" in r.getMessage() for r in caplog.records)
