"""Malformed input bytes thrown at the readers: always a TileIndexError with a message,
never another exception, a crash or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tileindex.errors import TileIndexError
from tileindex.inputs import read_country_layer, read_grid, read_iso_list

from factories import write_countries, write_grid, write_iso

SETTINGS = settings(
    max_examples=150,
    deadline=5000,  # a reader that hangs fails the example
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("valid")
    iso = write_iso(folder / "iso.parquet", ["AA", "BB"])
    layer = write_countries(
        folder / "countries.parquet",
        [("AA", shapely.box(0, 0, 1, 1)), ("BB", shapely.Polygon([(2, 2), (3, 2), (2, 3)]))],
    )
    grid = write_grid(folder / "grid.tif", 36, 18, (10.0, 0.0, -180.0, 0.0, -10.0, 90.0))
    return {"iso": iso.read_bytes(), "countries": layer.read_bytes(), "grid": grid.read_bytes()}


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "zero"]))
    n = len(data)
    if kind == "truncate":
        return data[: draw(st.integers(0, n - 1))]
    if kind == "flip":
        out = bytearray(data)
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8)):
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "splice":
        at = draw(st.integers(0, n))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    at = draw(st.integers(0, n - 1))
    return data[:at] + bytes(min(64, n - at)) + data[at + 64 :]


def _check(read, path: Path) -> None:
    try:
        read(path)
    except TileIndexError as exc:
        assert str(exc).strip(), "an error needs a message"
        assert "\n" not in str(exc), "errors are one line"


@SETTINGS
@given(data=st.data())
def test_iso_reader_never_crashes(valid, tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "iso.parquet"
    path.write_bytes(data.draw(mutated(valid["iso"])))
    _check(read_iso_list, path)


@SETTINGS
@given(data=st.data())
def test_country_reader_never_crashes(valid, tmp_path: Path, data: st.DataObject) -> None:
    iso_path = tmp_path / "iso.parquet"
    iso_path.write_bytes(valid["iso"])
    iso = read_iso_list(iso_path)
    path = tmp_path / "countries.parquet"
    path.write_bytes(data.draw(mutated(valid["countries"])))
    _check(lambda p: read_country_layer(p, iso), path)


@SETTINGS
@given(data=st.data())
def test_grid_reader_never_crashes(valid, tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "grid.tif"
    path.write_bytes(data.draw(mutated(valid["grid"])))
    _check(read_grid, path)


@SETTINGS
@given(wkb=st.binary(max_size=200))
def test_garbage_wkb_is_e001_or_accepted(tmp_path: Path, wkb: bytes) -> None:
    iso = read_iso_list(write_iso(tmp_path / "iso.parquet", ["AA"]))
    path = write_countries(tmp_path / "countries.parquet", [("AA", wkb)])
    _check(lambda p: read_country_layer(p, iso), path)
