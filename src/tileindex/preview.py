"""A map PNG of a published partition, streamed into a bounded raster: ``tile_index``
coloured by key (country or region), or ``tile_coverage``'s fractions in shades."""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from tileindex.contract import DEFAULT_KEY_COLUMN, DatasetDictionary
from tileindex.errors import ConfigError, InputError, InputFileError, RasterMismatchError
from tileindex.fsio import write_atomic
from tileindex.grid import Grid, Window
from tileindex.layout import (
    COVERAGE_DATASET,
    find_parameter_hashes,
    part_files,
    pick_parameter_hash,
)

log = logging.getLogger(__name__)

MIN_WIDTH, MAX_WIDTH = 320, 8192
_BATCH_ROWS = 1 << 20
_CODE_RE = re.compile(r"[A-Z]{2}")

# Light tab10 (grey left out: it is the no-country colour). Neighbours get different
# entries (greedy colouring), so nine are plenty for a planar-ish map.
_PALETTE = (
    "#7fb0d9",
    "#ffb070",
    "#86c986",
    "#ef7f7f",
    "#b9a0d6",
    "#c4a584",
    "#eea9da",
    "#d6d76d",
    "#74d6e0",
)
NO_COUNTRY = "#e4e4e4"
# --coverage: a cell's shade is COVERAGE_CMAP(fraction), a sequential matplotlib colormap
# from pale (fraction near 0) to full colour (1.0); cells without a row stay NO_COUNTRY
COVERAGE_CMAP = "YlGnBu"

# Layout in pixels at 1600 px wide; the PNG is drawn at 128 dpi, a power of two, so
# that width / dpi inches times dpi gives back exactly ``width`` pixels.
_DPI = 128
_MARGIN = {"left": 16, "right": 28, "top": 70, "bottom": 40}  # left grows with the labels
_TICK_CHAR_PX = 9.0  # width of a tick label character at 8 pt, 128 dpi
_MAX_HEIGHT_RATIO = 1.25  # a tall bbox narrows the map instead of making a tower
# a bbox view names small regions beside them with a leader line, but only this many:
# a layer of communes would bury the map under leaders
_MAX_LEADERS = 60
_LABEL_CHARS = 12  # a longer key is cut to this many characters on the map


@dataclass(frozen=True)
class PreviewResult:
    """What was drawn.

    ``bbox``: the lon/lat extent shown ``(west, south, east, north)``;
    ``cells_per_pixel``: k when each raster pixel covers k x k grid cells (1: full
    detail); ``key_column``: the partition's key column (``country_iso``, or the region
    layer's key, docs/CONTRACT.md §10.1); ``countries_in_view``: keys (countries or
    regions) with rows in the view; ``countries_drawn``: those owning at least one pixel
    (one smaller than a pixel loses it to the neighbour with more cells there; with
    ``coverage``, to the key covering more of the pixel); ``colors``: key -> hex colour
    of every drawn key (empty with ``coverage``); ``map_box_px``: the map's (left, top,
    right, bottom) pixel edges in the PNG, for callers that annotate or check the image.
    ``coverage``: the picture shows ``tile_coverage`` fractions (docs/CONTRACT.md §10.3);
    ``rows_below_one``: rows drawn whose fraction is below 1.0 (the boundary cells).
    """

    png: Path
    parameter_hash: str
    rows_drawn: int
    countries_drawn: int
    cells_per_pixel: int
    bbox: tuple[float, float, float, float]
    countries_in_view: int = 0
    colors: Mapping[str, str] = field(default_factory=dict, repr=False)
    map_box_px: tuple[int, int, int, int] = (0, 0, 0, 0)
    key_column: str = DEFAULT_KEY_COLUMN
    coverage: bool = False
    rows_below_one: int = 0


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` in degrees -> a checked tuple (see :func:`check_bbox`)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ConfigError(
            f"bbox {text!r} is not four numbers; give it as W,S,E,N in degrees, "
            "e.g. 2.5,49.4,7.3,53.6"
        )
    return check_bbox(values)


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """A bbox is ``(west, south, east, north)``, finite, with west < east in [-180, 180]
    and south < north in [-90, 90]. A box across ±180 is not supported: draw each side."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ConfigError(f"bbox {bbox!r} is not four numbers (west, south, east, north)") from None
    shown = f"{w:g},{s:g},{e:g},{n:g}"
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ConfigError(f"bbox {shown} has a non-finite value")
    if not (-180.0 <= w < e <= 180.0):
        raise ConfigError(
            f"bbox {shown}: need -180 <= west < east <= 180 (a box across the antimeridian "
            "is not supported; draw each side separately)"
        )
    if not (-90.0 <= s < n <= 90.0):
        raise ConfigError(f"bbox {shown}: need -90 <= south < north <= 90")
    return (w, s, e, n)


def render_preview(
    root: str | Path,
    png: str | Path,
    *,
    parameter_hash: str | None = None,
    bbox: Sequence[float] | None = None,
    width: int = 1600,
    dictionary: DatasetDictionary | str | Path | None = None,
    overwrite: bool = False,
    coverage: bool = False,
) -> PreviewResult:
    """Draw the partition under ``root`` as a ``width`` pixels wide PNG map.

    The key column (``country_iso`` or a region layer's, docs/CONTRACT.md §10.1) is the
    one the run report names. Without ``coverage``, ``tile_index`` is drawn, each key in
    a colour its neighbours do not share. Without ``bbox`` the whole grid is drawn, each
    pixel covering k x k cells and taking the colour of the key with most of those cells
    (ties: the key with fewer cells in view, then the smaller key by its UTF-8 bytes);
    with one, only the cells in it, at full detail when they fit.

    With ``coverage``, ``tile_coverage`` is drawn (docs/CONTRACT.md §10.3; a build
    without ``--coverage`` has none, and is refused): each pixel is shaded by
    :data:`COVERAGE_CMAP` at the **largest** fraction of it that one key covers, the
    mean of that key's ``coverage_fraction`` over the pixel's k x k cells (k = 1: the
    largest fraction of the cell over all keys), so a border shared by two keys shows
    as the split it is.

    Without ``parameter_hash`` the only partition under ``root`` is used (with
    ``coverage``: the only one with ``tile_coverage``). Memory is bounded by the
    picture and the number of keys, not the partition: rows are streamed batch by
    batch, and row groups outside the view are skipped by their statistics.
    """
    if (
        not isinstance(width, int)
        or isinstance(width, bool)
        or not (MIN_WIDTH <= width <= MAX_WIDTH)
    ):
        raise ConfigError(f"width {width!r} is outside {MIN_WIDTH}..{MAX_WIDTH} pixels")
    box = None if bbox is None else check_bbox(bbox)
    png = Path(png)
    if png.suffix.lower() != ".png":
        raise ConfigError(f"{png}: the preview is a PNG; give a file name ending in .png")
    if png.exists() and not overwrite:
        raise ConfigError(
            f"{png} already exists; choose another name or pass overwrite=True (--overwrite)"
        )
    if not isinstance(dictionary, DatasetDictionary):
        dictionary = DatasetDictionary.load(dictionary)
    root = Path(root)
    if coverage:
        phash = _pick_coverage_hash(root, dictionary, parameter_hash)
    else:
        phash = pick_parameter_hash(root, dictionary, parameter_hash)
    files = _partition_files(dictionary.path("tile_index", root, phash), root, "tile_index")
    info = _read_report(dictionary.path("run_report", root, phash))
    if coverage:
        partition = _coverage_partition(root, dictionary, phash, info)
        files = _partition_files(partition, root, COVERAGE_DATASET)
    view = _view(info.grid, box, width)
    keys = _Keys(info.key_column)
    if coverage:
        return _render_coverage(png, files, view, info, phash, keys)

    raster = _Majority(view.shape)
    for codes, rows, cols in _stream_index(files, view.window, keys):
        raster.add(codes, view.pixel_index(rows, cols))
    best = raster.finish().reshape(view.shape)

    colours = _assign_colours(best, keys)
    drawn = {keys.name(c): _PALETTE[p] for c, p in sorted(colours.items())}
    image = _index_image(best, colours, len(keys))
    hidden = raster.keys_seen - len(colours)
    shown = f"{len(colours):,} {_noun(info.key_column, len(colours))} shown" + (
        f", {hidden:,} more without a pixel of their own" if hidden > 0 else ""
    )
    detail = (
        "full detail (1 cell per pixel or more)"
        if view.k == 1
        else f"1 pixel = {view.k} × {view.k} cells, majority {_noun(info.key_column, 1)}"
    )
    _draw(
        png,
        image,
        view,
        info,
        title=_title("tile_index", info, phash, view),
        facts=[_rows_text(raster.rows, info), shown, detail],
        decorate=lambda ax, s: _label(ax, best, view, s, keys, len(colours)),
    )
    log.info("preview of %s: %d rows, %d keys -> %s", phash, raster.rows, len(drawn), png)
    return PreviewResult(
        png=png,
        parameter_hash=phash,
        rows_drawn=raster.rows,
        countries_drawn=len(drawn),
        cells_per_pixel=view.k,
        bbox=view.extent,
        countries_in_view=raster.keys_seen,
        colors=drawn,
        map_box_px=view.map_box_px,
        key_column=info.key_column,
    )


def _render_coverage(
    png: Path, files: Sequence[Path], view: _View, info: _ReportInfo, phash: str, keys: _Keys
) -> PreviewResult:
    raster = _LargestFraction(view.shape, _cells_per_pixel(view))
    for codes, rows, cols, fractions in _stream_coverage(files, view.window, info.grid, keys):
        raster.add(codes, view.pixel_index(rows, cols), fractions)
    value, seen, owner = raster.finish()
    image = _coverage_image(value.reshape(view.shape), seen.reshape(view.shape))
    noun = _noun(info.key_column, 1)
    unit = "cell" if view.k == 1 else f"pixel of {view.k} × {view.k} cells"
    facts = [
        _rows_text(raster.rows, info),
        f"{raster.rows_below_one:,} with fraction < 1",
        f"shade: the largest coverage_fraction of one {noun} per {unit}",
    ]
    _draw(
        png,
        image,
        view,
        info,
        title=_title("tile_coverage", info, phash, view),
        facts=facts,
        decorate=None,
        colorbar=True,
    )
    drawn = int(np.unique(owner[seen]).size)
    log.info("coverage preview of %s: %d rows -> %s", phash, raster.rows, png)
    return PreviewResult(
        png=png,
        parameter_hash=phash,
        rows_drawn=raster.rows,
        countries_drawn=drawn,
        cells_per_pixel=view.k,
        bbox=view.extent,
        countries_in_view=raster.keys_seen,
        map_box_px=view.map_box_px,
        key_column=info.key_column,
        coverage=True,
        rows_below_one=raster.rows_below_one,
    )


def _noun(key_column: str, n: int) -> str:
    if key_column == DEFAULT_KEY_COLUMN:
        return "country" if n == 1 else "countries"
    return f"{key_column} key" if n == 1 else f"{key_column} keys"


# -- locating the partition and its report ---------------------------------------------


def _partition_files(partition: Path, root: Path, name: str) -> list[Path]:
    if not partition.is_dir():
        raise InputFileError(
            f"{name} partition {partition} does not exist; run 'tileindex build ... "
            f"--out {root}' first or pass a parameter hash that was built"
        )
    files = part_files(partition)
    if not files:
        raise InputFileError(
            f"{name} partition {partition} holds no part files; rebuild it with 'tileindex build'"
        )
    return files


def _without_coverage(root: Path, what: str) -> InputFileError:
    return InputFileError(
        f"{what} under {root} has no tile_coverage: it was built without --coverage; "
        "rebuild with --coverage (tileindex build ... --coverage) to draw fractions"
    )


def _pick_coverage_hash(
    root: Path, dictionary: DatasetDictionary, parameter_hash: str | None
) -> str:
    """Like :func:`pick_parameter_hash`, among the builds that published tile_coverage."""
    if parameter_hash is not None or COVERAGE_DATASET not in dictionary.templates:
        return pick_parameter_hash(root, dictionary, parameter_hash)
    found = find_parameter_hashes(root, dictionary, COVERAGE_DATASET)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(
            f"{root} holds {len(found)} tile_coverage partitions ({', '.join(found)}); "
            "pass --parameter-hash to pick one"
        )
    phash = pick_parameter_hash(root, dictionary, None)  # none built at all: says so
    raise _without_coverage(root, f"the build {phash}")


def _coverage_partition(
    root: Path, dictionary: DatasetDictionary, phash: str, info: _ReportInfo
) -> Path:
    if not info.coverage or COVERAGE_DATASET not in dictionary.templates:
        raise _without_coverage(root, f"the build {phash}")
    partition = dictionary.path(COVERAGE_DATASET, root, phash)
    if not partition.is_dir():
        raise InputFileError(
            f"tile_coverage partition {partition} is missing although the run report has a "
            "coverage_receipt; rebuild with --coverage (tileindex build ... --coverage)"
        )
    return partition


@dataclass(frozen=True)
class _ReportInfo:
    grid: Grid
    predicate: str
    rows_emitted: int
    key_column: str = DEFAULT_KEY_COLUMN
    coverage: bool = False


def _read_report(path: Path) -> _ReportInfo:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(
            f"run report {path} is missing: the preview takes the grid from it; rebuild the "
            "partition with 'tileindex build'"
        ) from None
    except OSError as exc:
        raise InputFileError(f"run report {path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise InputError(f"run report {path} is not valid JSON ({exc}); rebuild it") from exc
    try:
        dims = doc["grid_dims"]
        transform = doc["grid_transform"]
        grid = Grid.from_transform(int(dims["ncols"]), int(dims["nrows"]), transform)
        # docs/CONTRACT.md §8.1, §10.1: the key column is recorded; a report written
        # before region mode has none and is a country build
        key_column = doc.get("key_column", DEFAULT_KEY_COLUMN)
        if not isinstance(key_column, str) or not key_column:
            raise ValueError(f"key_column {key_column!r} is not a column name")
        return _ReportInfo(
            grid,
            str(doc["predicate"]),
            int(doc["rows_emitted"]),
            key_column,
            doc.get("coverage_receipt") is not None,
        )
    except (KeyError, TypeError, ValueError, RasterMismatchError) as exc:
        raise InputError(
            f"run report {path} lacks a usable grid_dims / grid_transform / predicate / "
            f"rows_emitted / key_column ({exc}); rebuild the partition with this version "
            "of tileindex"
        ) from exc


@dataclass(frozen=True)
class _View:
    window: Window
    k: int
    shape: tuple[int, int]  # raster (height, width) in pixels
    extent: tuple[float, float, float, float]  # shown (west, south, east, north)
    image_extent: tuple[float, float, float, float]  # (left, right, bottom, top) of the raster
    fig_px: tuple[int, int]
    map_box_px: tuple[int, int, int, int]
    scale: float
    world: bool

    def pixel_index(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        r = (rows - self.window.row_start) // self.k
        c = (cols - self.window.col_start) // self.k
        return r * self.shape[1] + c


def _view(grid: Grid, bbox: tuple[float, float, float, float] | None, width: int) -> _View:
    west, east = grid.c, grid.c + grid.a * grid.ncols
    south, north = grid.f + grid.e * grid.nrows, grid.f
    if bbox is None:
        shift = 0.0
        window = Window(0, grid.nrows, 0, grid.ncols)
        extent = (west, south, east, north)
    else:
        w, s, e, n = bbox
        # a grid in 0..360 (or overhanging -180) meets the box at one of three shifts
        shift = max((0.0, 360.0, -360.0), key=lambda d: min(e + d, east) - max(w + d, west))
        lo, hi = max(w + shift, west), min(e + shift, east)
        bottom, top = max(s, south), min(n, north)
        if lo >= hi or bottom >= top:
            raise ConfigError(
                f"bbox {w:g},{s:g},{e:g},{n:g} does not meet the grid, which covers "
                f"lon {west:g}..{east:g}, lat {south:g}..{north:g}"
            )
        c0 = max(0, math.floor((lo - grid.c) / grid.a))
        c1 = min(grid.ncols, math.ceil((hi - grid.c) / grid.a))
        r0 = max(0, math.floor((top - grid.f) / grid.e))
        r1 = min(grid.nrows, math.ceil((bottom - grid.f) / grid.e))
        window = Window(r0, max(r1, r0 + 1), c0, max(c1, c0 + 1))
        extent = (lo - shift, bottom, hi - shift, top)

    # plate carree for the world; a regional box is stretched by 1/cos(mid latitude)
    # so that it looks as it does on the ground
    mid = math.radians((extent[1] + extent[3]) / 2.0)
    aspect = 1.0 if bbox is None else 1.0 / max(math.cos(mid), 0.2)
    scale = min(max(width / 1600.0, 0.5), 2.0)
    m = {key: round(v * scale) for key, v in _MARGIN.items()}
    lat_labels = _tick_labels(extent[1], extent[3], "N", "S")
    m["left"] += round(max(map(len, lat_labels), default=3) * _TICK_CHAR_PX * scale)
    ratio = (extent[3] - extent[1]) / (extent[2] - extent[0]) * aspect
    map_w = float(width - m["left"] - m["right"])
    map_h = map_w * ratio
    left = m["left"]
    if map_h > _MAX_HEIGHT_RATIO * width:
        map_h = _MAX_HEIGHT_RATIO * width
        map_w = map_h / ratio
        left = m["left"] + round((width - m["left"] - m["right"] - map_w) / 2.0)
    map_w_px, map_h_px = max(round(map_w), 1), max(round(map_h), 1)
    height = m["top"] + map_h_px + m["bottom"]

    k = max(
        1, math.ceil(window.width / map_w_px - 1e-9), math.ceil(window.height / map_h_px - 1e-9)
    )
    shape = (math.ceil(window.height / k), math.ceil(window.width / k))
    x0 = grid.c + grid.a * window.col_start - shift
    y0 = grid.f + grid.e * window.row_start
    image_extent = (x0, x0 + grid.a * k * shape[1], y0 + grid.e * k * shape[0], y0)
    return _View(
        window=window,
        k=k,
        shape=shape,
        extent=extent,
        image_extent=image_extent,
        fig_px=(width, height),
        map_box_px=(left, m["top"], left + map_w_px, m["top"] + map_h_px),
        scale=scale,
        world=bbox is None,
    )


# -- streaming the rows into a raster of country indexes --------------------------------


# -- streaming the rows into rasters of key indexes ---------------------------------------


class _Keys:
    """Dense indexes 1..n of the keys met in the view, in order of first appearance; 0
    is "no key". A partition's rows are sorted by key bytes (docs/CONTRACT.md §6.4,
    §10.1), so index order is key order and ties broken by index go to the smaller key.
    Memory and time are O(keys) whatever their number."""

    def __init__(self, column: str) -> None:
        self.column = column
        self._names: list[str] = [""]
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._names) - 1

    def name(self, index: int) -> str:
        return self._names[int(index)]

    def indexes(
        self, keys: pa.Array, path: Path, dataset: str, inside: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.int64]:
        """The key index of each row of ``keys`` (masked by ``inside``), new keys numbered
        in the order their first row comes."""
        if keys.null_count:
            raise InputError(
                f"{path}: {self.column} holds a null key; this is not a valid {dataset} "
                "partition (check it with the validator)"
            )
        if not pa.types.is_dictionary(keys.type):
            keys = keys.dictionary_encode()
        words = keys.dictionary.to_pylist()
        codes = keys.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if inside is not None:
            codes = codes[inside]
        used, first = np.unique(codes, return_index=True)
        lut = np.zeros(len(words), dtype=np.int64)
        for j in used[np.argsort(first, kind="stable")].tolist():
            word = words[j]
            index = self._index.get(word)
            if index is None:
                self._check(word, path, dataset)
                index = self._index[word] = len(self._names)
                self._names.append(word)
            lut[j] = index
        return lut[codes]

    def _check(self, word: object, path: Path, dataset: str) -> None:
        if self.column == DEFAULT_KEY_COLUMN:
            if not (isinstance(word, str) and _CODE_RE.fullmatch(word)):
                raise InputError(
                    f"{path}: country_iso {word!r} is not an uppercase alpha-2 code; "
                    f"this is not a valid {dataset} partition (check it with the validator)"
                )
        elif not (isinstance(word, str) and word):
            raise InputError(
                f"{path}: {self.column} key {word!r} is empty; this is not a valid {dataset} "
                "partition (check it with the validator)"
            )


def _span(rg: pq.RowGroupMetaData, column: int) -> tuple[int, int] | None:
    st = rg.column(column).statistics
    if st is None or not st.has_min_max:
        return None
    return int(st.min), int(st.max)


def _batches(
    files: Sequence[Path],
    dataset: str,
    columns: Sequence[str],
    meets: Callable[[pq.RowGroupMetaData, list[str]], bool],
) -> Iterator[tuple[Path, pa.RecordBatch]]:
    """``columns`` of every row group that ``meets`` the view (by its statistics), one
    batch at a time, in file and row order; the key column (the first) stays
    dictionary-encoded."""
    for path in files:
        try:
            pf = pq.ParquetFile(path, read_dictionary=[columns[0]])
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{dataset} file {path}: cannot read ({exc})") from exc
        names = pf.schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"{path} is not a {dataset} file: no column {', '.join(missing)}")
        md = pf.metadata
        groups = [g for g in range(md.num_row_groups) if meets(md.row_group(g), names)]
        if not groups:
            continue
        try:
            for batch in pf.iter_batches(
                batch_size=_BATCH_ROWS, row_groups=groups, columns=list(columns)
            ):
                yield path, batch
        except pa.ArrowException as exc:
            raise InputFileError(f"{dataset} file {path}: cannot read ({exc})") from exc


def _inside(
    rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], window: Window
) -> npt.NDArray[np.bool_] | None:
    inside = (
        (rows >= window.row_start)
        & (rows < window.row_stop)
        & (cols >= window.col_start)
        & (cols < window.col_stop)
    )
    return None if inside.all() else inside


_Stream = Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]]


def _stream_index(files: Sequence[Path], window: Window, keys: _Keys) -> _Stream:
    """(key index, raster_row, raster_col) of the tile_index rows inside ``window``."""

    def meets(rg: pq.RowGroupMetaData, names: list[str]) -> bool:
        for name, lo, hi in (
            ("raster_row", window.row_start, window.row_stop),
            ("raster_col", window.col_start, window.col_stop),
        ):
            span = _span(rg, names.index(name))
            if span is not None and (span[1] < lo or span[0] >= hi):
                return False
        return True

    columns = [keys.column, "raster_row", "raster_col"]
    for path, batch in _batches(files, "tile_index", columns, meets):
        rows = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        cols = batch.column(2).to_numpy(zero_copy_only=False).astype(np.int64)
        inside = _inside(rows, cols, window)
        codes = keys.indexes(batch.column(0), path, "tile_index", inside)
        if inside is not None:
            rows, cols = rows[inside], cols[inside]
        if codes.size:
            yield codes, rows, cols


def _stream_coverage(
    files: Sequence[Path], window: Window, grid: Grid, keys: _Keys
) -> Iterator[
    tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.float64],
    ]
]:
    """(key index, row, column, coverage_fraction) of the tile_coverage rows inside
    ``window``. tile_coverage has no row and column: they come from ``tile_id = row *
    ncols + col`` (docs/CONTRACT.md §6.2), and a row group is skipped by its tile_id
    range (rows; columns too when the range lies in one grid row)."""
    ncols = grid.ncols

    def meets(rg: pq.RowGroupMetaData, names: list[str]) -> bool:
        span = _span(rg, names.index("tile_id"))
        if span is None:
            return True
        (r0, c0), (r1, c1) = divmod(span[0], ncols), divmod(span[1], ncols)
        if r1 < window.row_start or r0 >= window.row_stop:
            return False
        return not (r0 == r1 and (c1 < window.col_start or c0 >= window.col_stop))

    columns = [keys.column, "tile_id", "coverage_fraction"]
    for path, batch in _batches(files, COVERAGE_DATASET, columns, meets):
        tile = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        rows, cols = np.divmod(tile, ncols)
        fractions = batch.column(2).to_numpy(zero_copy_only=False).astype(np.float64)
        inside = _inside(rows, cols, window)
        codes = keys.indexes(batch.column(0), path, COVERAGE_DATASET, inside)
        if inside is not None:
            rows, cols, fractions = rows[inside], cols[inside], fractions[inside]
        if codes.size:
            yield codes, rows, cols, fractions


def _runs(codes: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """(start, stop) of each run of one key in ``codes``."""
    cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [codes.size])).tolist()
    return list(itertools.pairwise(bounds))


class _PerKey:
    """Rows in view per key index, growing with the keys met (O(keys) memory)."""

    def __init__(self) -> None:
        self._n = np.zeros(64, dtype=np.int64)

    def add(self, code: int, n: int) -> None:
        if code >= self._n.size:
            self._n = np.concatenate((self._n, np.zeros(code + self._n.size, np.int64)))
        self._n[code] += n

    def __getitem__(self, codes: Any) -> Any:
        return self._n[codes]

    @property
    def seen(self) -> int:
        return int(np.count_nonzero(self._n))


class _Majority:
    """Per pixel, the key with most cells in it. Ties go to the key with fewer rows in
    view, so a microstate sharing its cells with the host (any_overlap) still shows at
    full detail; then to the smaller key.

    Rows arrive sorted by key (docs/CONTRACT.md §6.4), so one key's counts are gathered
    in ``_count`` and folded into the winners when the next key starts; memory is a few
    arrays of the picture's size, plus one counter per key, whatever the number of rows.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        size = shape[0] * shape[1]
        self._best = np.zeros(size, dtype=np.uint32)
        self._best_n = np.zeros(size, dtype=np.uint32)
        self._count = np.zeros(size, dtype=np.uint32)
        self._code = 0
        self._lo, self._hi = size, 0
        self._total = _PerKey()
        self.rows = 0

    @property
    def keys_seen(self) -> int:
        return self._total.seen

    def add(self, codes: npt.NDArray[np.int64], pix: npt.NDArray[np.int64]) -> None:
        self.rows += int(codes.size)
        for a, b in _runs(codes):
            code = int(codes[a])
            if code != self._code:
                self._fold()
                self._code = code
            part = pix[a:b]
            self._total.add(code, b - a)
            lo, hi = int(part.min()), int(part.max()) + 1
            # bincount over the touched span: far faster than np.add.at
            self._count[lo:hi] += np.bincount(part - lo, minlength=hi - lo).astype(np.uint32)
            self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)

    def _fold(self) -> None:
        if self._code == 0 or self._lo >= self._hi:
            return
        span = slice(self._lo, self._hi)
        count, best, best_n = self._count[span], self._best[span], self._best_n[span]
        hit = np.flatnonzero(count)
        n = count[hit]
        held, held_n = best[hit], best_n[hit]
        mine, theirs = self._total[self._code], self._total[held]
        tie = (n == held_n) & ((mine < theirs) | ((mine == theirs) & (self._code < held)))
        win = hit[(n > held_n) | tie]
        best[win] = self._code
        best_n[win] = count[win]
        count[hit] = 0
        self._lo, self._hi = self._count.size, 0

    def finish(self) -> npt.NDArray[np.uint32]:
        self._fold()
        self._code = 0
        return self._best


def _cells_per_pixel(view: _View) -> npt.NDArray[np.float64]:
    """Grid cells under each pixel: k x k, fewer in the last row and column of pixels
    where the window is not a multiple of k."""
    h, w = view.shape
    k, win = view.k, view.window
    tall = np.minimum(k, win.height - k * np.arange(h))
    wide = np.minimum(k, win.width - k * np.arange(w))
    return (tall[:, None] * wide[None, :]).astype(np.float64).ravel()


class _LargestFraction:
    """Per pixel, the largest share of it that one key covers: that key's
    coverage_fraction summed over the pixel's cells, over the number of cells (all cells
    have the same area in lon/lat degrees, the plane tile_coverage measures in,
    docs/CONTRACT.md §10.3, so this is the key's coverage fraction of the pixel as one
    big cell; one cell per pixel: the cell's own largest fraction). A full pixel sums
    k² ones, an exact float, so it reads exactly 1.0.

    Rows come sorted by key: one key's sums are gathered and folded (max) when the next
    key starts, as in :class:`_Majority`; memory is O(picture + keys)."""

    def __init__(self, shape: tuple[int, int], cells: npt.NDArray[np.float64]) -> None:
        size = shape[0] * shape[1]
        self._cells = cells
        self._value = np.zeros(size, dtype=np.float64)
        self._owner = np.zeros(size, dtype=np.uint32)
        self._seen = np.zeros(size, dtype=bool)
        self._sum = np.zeros(size, dtype=np.float64)
        self._code = 0
        self._lo, self._hi = size, 0
        self._total = _PerKey()
        self.rows = 0
        self.rows_below_one = 0

    @property
    def keys_seen(self) -> int:
        return self._total.seen

    def add(
        self,
        codes: npt.NDArray[np.int64],
        pix: npt.NDArray[np.int64],
        fractions: npt.NDArray[np.float64],
    ) -> None:
        self.rows += int(codes.size)
        self.rows_below_one += int(np.count_nonzero(fractions < 1.0))
        for a, b in _runs(codes):
            code = int(codes[a])
            if code != self._code:
                self._fold()
                self._code = code
            part = pix[a:b]
            self._total.add(code, b - a)
            lo, hi = int(part.min()), int(part.max()) + 1
            self._sum[lo:hi] += np.bincount(part - lo, weights=fractions[a:b], minlength=hi - lo)
            self._seen[part] = True
            self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)

    def _fold(self) -> None:
        if self._code == 0 or self._lo >= self._hi:
            return
        span = slice(self._lo, self._hi)
        total = self._sum[span]
        hit = np.flatnonzero(total)
        share = total[hit] / self._cells[span][hit]
        value, owner = self._value[span], self._owner[span]
        better = share > value[hit]  # a tie keeps the smaller key
        value[hit[better]] = share[better]
        owner[hit[better]] = self._code
        total[hit] = 0.0
        self._lo, self._hi = self._sum.size, 0

    def finish(
        self,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.uint32]]:
        self._fold()
        self._code = 0
        return self._value, self._seen, self._owner


# -- colours: neighbours differ ---------------------------------------------------------


def _assign_colours(best: npt.NDArray[np.uint32], keys: _Keys) -> dict[int, int]:
    """Palette entry per drawn key, greedy over what the picture shows: keys that touch
    (8-neighbourhood, corners too) must differ; keys a few pixels apart (a microstate and
    the country around its neighbour, two shores of a strait) differ when a colour is
    left. Each key starts from a colour derived from its name, so colours stay put across
    views where they can; the most connected choose first. Time is O(pixels + keys +
    neighbour pairs) and a sort of the keys: a layer of 10,000 regions colours as fast as
    the picture is scanned."""
    n = len(keys) + 1
    touching = _pairs(best, (1,), n)
    close = _pairs(best, _NEAR_PX, n)
    size = len(_PALETTE)
    chosen: dict[int, int] = {}
    for code in sorted(touching, key=lambda c: (-len(touching[c]), -len(close[c]), c)):
        hard = [chosen[m] for m in touching[code] if m in chosen]
        soft = {chosen[m] for m in close[code] if m in chosen}
        start = zlib.crc32(keys.name(code).encode("utf-8")) % size
        ring = [(start + i) % size for i in range(size)]
        free = [p for p in ring if p not in hard and p not in soft] or [
            p for p in ring if p not in hard
        ]
        # more neighbours than colours: the least repeated one
        chosen[code] = free[0] if free else min(ring, key=lambda p: (hard.count(p), p))
    return chosen


_NEAR_PX = (1, 2, 4, 8)


def _pairs(best: npt.NDArray[np.uint32], distances: Sequence[int], n: int) -> dict[int, set[int]]:
    """Keys seen within each distance (in the 8 directions) of one another; every drawn
    key is a key of the result. ``n``: one more than the largest key index."""
    h, w = best.shape
    found = []
    for d in distances:
        for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
            if dy >= h or abs(dx) >= w:
                continue
            a = best[: h - dy, max(0, -dx) : w - max(0, dx)]
            b = best[dy:, max(0, dx) : w - max(0, -dx)]
            touch = (a != b) & (a > 0) & (b > 0)
            found.append(a[touch].astype(np.int64) * n + b[touch].astype(np.int64))
    edges = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    out: dict[int, set[int]] = {int(c): set() for c in np.unique(best[best > 0]).tolist()}
    for u, v in zip((edges // n).tolist(), (edges % n).tolist(), strict=True):
        out[u].add(v)
        out[v].add(u)
    return out


# -- drawing ----------------------------------------------------------------------------


def _rgba(colour: str) -> npt.NDArray[np.uint8]:
    from matplotlib.colors import to_rgba_array

    return np.round(to_rgba_array(colour)[0] * 255).astype(np.uint8)


def _index_image(
    best: npt.NDArray[np.uint32], colours: Mapping[int, int], n_keys: int
) -> npt.NDArray[np.uint8]:
    lut = np.zeros((n_keys + 1, 4), dtype=np.uint8)
    lut[:] = _rgba(NO_COUNTRY)
    for code, p in colours.items():
        lut[code] = _rgba(_PALETTE[p])
    return lut[best]


def _coverage_image(
    value: npt.NDArray[np.float64], seen: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint8]:
    import matplotlib

    image = np.asarray(matplotlib.colormaps[COVERAGE_CMAP](value, bytes=True), dtype=np.uint8)
    image[~seen] = _rgba(NO_COUNTRY)
    return image


def _title(dataset: str, info: _ReportInfo, phash: str, view: _View) -> str:
    what = dataset if dataset == "tile_index" else f"{dataset}  ·  coverage_fraction"
    if info.key_column != DEFAULT_KEY_COLUMN:  # region mode: name the key (§10.1)
        what += f" by {info.key_column}"
    where = (
        "world"
        if view.world
        else "bbox " + ", ".join(f"{v:.4g}" for v in view.extent) + " (W, S, E, N)"
    )
    return f"{what}  ·  parameter_hash {phash[:12]}…  ·  predicate {info.predicate}  ·  {where}"


def _rows_text(rows: int, info: _ReportInfo) -> str:
    if rows == info.rows_emitted:
        return f"{rows:,} rows"
    return f"{rows:,} of {info.rows_emitted:,} rows"


def _draw(
    png: Path,
    image: npt.NDArray[np.uint8],
    view: _View,
    info: _ReportInfo,
    *,
    title: str,
    facts: Sequence[str],
    decorate: Callable[[Any, float], None] | None,
    colorbar: bool = False,
) -> None:
    # the object API with an Agg canvas: no pyplot, no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    width, height = view.fig_px
    s = view.scale
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    left, top, right, bottom = view.map_box_px
    ax = fig.add_axes(
        (left / width, 1 - bottom / height, (right - left) / width, (bottom - top) / height)
    )
    ax.imshow(
        image,
        extent=view.image_extent,
        origin="upper",
        interpolation="nearest",
        aspect="auto",
        resample=False,
    )
    w, so, e, n = view.extent
    ax.set_xlim(w, e)
    ax.set_ylim(so, n)
    for axis, (lo, hi), pos, neg in (
        (ax.xaxis, (w, e), "E", "W"),
        (ax.yaxis, (so, n), "N", "S"),
    ):
        axis.set_major_locator(MultipleLocator(_tick_step(hi - lo)))
        axis.set_major_formatter(FuncFormatter(_degrees(pos, neg)))
    ax.tick_params(labelsize=8 * s, length=3 * s, width=0.6, colors="#444444")
    for spine in ax.spines.values():
        spine.set_linewidth(0.6)
        spine.set_color("#666666")

    if decorate is not None:
        decorate(ax, s)
    room = width - left - 8 * s
    if colorbar:  # the titles end before the legend starts
        room = min(room, _colorbar(fig, view) - left - 12 * s)

    g = info.grid
    cell = g.a * 3600.0
    cell_text = f"{cell:.4g}″" if cell < 360 else f"{g.a:.6g}°"
    line2 = "  ·  ".join((f"grid {g.ncols:,} × {g.nrows:,} cells of {cell_text}", *facts))
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    titles = (
        (fig.text(left / width, 1 - 14 * s / height, title, weight="bold", va="top"), 12.0),
        (fig.text(left / width, 1 - 40 * s / height, line2, color="#333333", va="top"), 9.0),
    )
    for text, size in titles:
        text.set_fontsize(size * s)
        # a narrow picture shrinks its title rather than cutting it; hinted glyphs do
        # not shrink in proportion to the size, so measure again
        for _ in range(6):
            wide = text.get_window_extent(renderer).width
            if wide <= room:
                break
            text.set_fontsize(float(text.get_fontsize()) * min(room / wide, 0.97))

    try:
        write_atomic(
            png, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
        )
    except OSError as exc:
        raise InputFileError(f"cannot write the preview {png}: {exc.strerror}") from exc


def _colorbar(fig: Any, view: _View) -> float:
    """The coverage legend, top right above the map: COVERAGE_CMAP from 0 to 1, its name
    at its left; returns the legend's left edge in pixels."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    width, height = view.fig_px
    s = view.scale
    right = view.map_box_px[2]
    bar_w, bar_h = 150 * s, 10 * s
    cax = fig.add_axes(
        ((right - bar_w) / width, 1 - (16 * s + bar_h) / height, bar_w / width, bar_h / height)
    )
    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=matplotlib.colormaps[COVERAGE_CMAP])
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal", ticks=[0, 0.25, 0.5, 0.75, 1])
    bar.outline.set_linewidth(0.6)
    cax.tick_params(labelsize=7 * s, length=2 * s, width=0.6, pad=1.5 * s, colors="#444444")
    cax.set_xticklabels(["0", ".25", ".5", ".75", "1"])
    name = fig.text(
        (right - bar_w - 6 * s) / width,
        1 - (16 * s + bar_h / 2) / height,
        "coverage_fraction",
        fontsize=8 * s,
        ha="right",
        va="center",
        color="#333333",
    )
    return float(name.get_window_extent(fig.canvas.get_renderer()).x0)


def _label(
    ax: Any, best: npt.NDArray[np.uint32], view: _View, s: float, keys: _Keys, drawn: int
) -> None:
    """Each key on its deepest pixel (farthest from its border). In a bbox view a key too
    small to carry its label gets it beside, with a leader, unless more than
    _MAX_LEADERS keys are drawn (a layer of communes): then only the large ones."""
    from matplotlib import patheffects as effects

    leaders = not view.world and drawn <= _MAX_LEADERS
    left, top, right, bottom = view.map_box_px
    px_area = ((right - left) / best.shape[1]) * ((bottom - top) / best.shape[0])
    footprint = 3 * (28 * s) * (18 * s)  # screen pixels a label needs around it
    depth = _depth(best)
    flat = best.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_codes = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    stops = np.r_[starts[1:], flat.size]
    x_left, x_right, y_bottom, y_top = view.image_extent
    dx = (x_right - x_left) / best.shape[1]
    dy = (y_top - y_bottom) / best.shape[0]
    style = {
        "color": "#222222",
        "clip_on": True,
        "path_effects": [effects.withStroke(linewidth=2.5 * s, foreground="white")],
    }
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        code = int(sorted_codes[a])
        big = (b - a) * px_area >= footprint
        if code == 0 or not (big or leaders):
            continue
        idx = order[a:b]
        d = depth.ravel()[idx]
        idx = idx[d == d.max()]
        r, c = idx // best.shape[1], idx % best.shape[1]
        i = int(np.argmin((r - r.mean()) ** 2 + (c - c.mean()) ** 2))
        x, y = x_left + (c[i] + 0.5) * dx, y_top - (r[i] + 0.5) * dy
        # keep labels near the map's edge inside it
        fx = (x - view.extent[0]) / (view.extent[2] - view.extent[0])
        fy = (y - view.extent[1]) / (view.extent[3] - view.extent[1])
        ha = "left" if fx < 0.04 else "right" if fx > 0.96 else "center"
        name = keys.name(code)
        if len(name) > _LABEL_CHARS:
            name = name[: _LABEL_CHARS - 1] + "…"
        if big:
            va = "bottom" if fy < 0.03 else "top" if fy > 0.97 else "center"
            ax.text(x, y, name, fontsize=(6.5 if view.world else 10) * s, ha=ha, va=va, **style)
        else:
            ax.annotate(
                name,
                xy=(x, y),
                xytext=(0, (-14 if fy > 0.9 else 14) * s),
                textcoords="offset points",
                fontsize=9 * s,
                ha=ha,
                va="center",
                arrowprops={"arrowstyle": "-", "lw": 0.7, "color": "#222222", "shrinkB": 5 * s},
                annotation_clip=True,
                **style,
            )


def _depth(best: npt.NDArray[np.uint32], steps: int = 96) -> npt.NDArray[np.int32]:
    """Erosion steps each country pixel survives (4-neighbourhood; the picture's edge
    and other countries both erode): a cheap distance to the border, capped."""
    depth = np.zeros(best.shape, dtype=np.int32)
    alive = best > 0
    same_up = np.zeros(best.shape, dtype=bool)
    same_down = np.zeros(best.shape, dtype=bool)
    same_left = np.zeros(best.shape, dtype=bool)
    same_right = np.zeros(best.shape, dtype=bool)
    same_up[1:] = best[1:] == best[:-1]
    same_down[:-1] = same_up[1:]
    same_left[:, 1:] = best[:, 1:] == best[:, :-1]
    same_right[:, :-1] = same_left[:, 1:]
    for _ in range(steps):
        depth += alive
        nxt = alive.copy()
        nxt[1:] &= alive[:-1]
        nxt[:-1] &= alive[1:]
        nxt[:, 1:] &= alive[:, :-1]
        nxt[:, :-1] &= alive[:, 1:]
        nxt &= same_up & same_down & same_left & same_right
        if not nxt.any():
            break
        alive = nxt
    return depth


def _tick_labels(lo: float, hi: float, pos: str, neg: str) -> list[str]:
    step = _tick_step(hi - lo)
    fmt = _degrees(pos, neg)
    first = math.ceil(lo / step - 1e-9)
    return [fmt(i * step, None) for i in range(first, math.floor(hi / step + 1e-9) + 1)]


def _tick_step(span: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60):
        if span / step <= 12:
            return float(step)
    return 90.0


def _degrees(pos: str, neg: str) -> Any:
    def fmt(value: float, _: object) -> str:
        v = round(value, 6)
        if v == 0:
            return "0°"
        return f"{abs(v):g}°{pos if v > 0 else neg}"

    return fmt
