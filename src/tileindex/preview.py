"""A map PNG of a published tile_index partition, streamed into a bounded raster."""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from tileindex.contract import DatasetDictionary
from tileindex.errors import ConfigError, InputError, InputFileError, RasterMismatchError
from tileindex.fsio import write_atomic
from tileindex.grid import Grid, Window
from tileindex.layout import part_files, pick_parameter_hash

log = logging.getLogger(__name__)

MIN_WIDTH, MAX_WIDTH = 320, 8192
_COLUMNS = ["country_iso", "raster_row", "raster_col"]
_BATCH_ROWS = 1 << 20
_CODE_RE = re.compile(r"[A-Z]{2}")
# country index: 1 + 26 * letter0 + letter1, so index order is ISO order and 0 is "none"
_N_INDEX = 1 + 26 * 26

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

# Layout in pixels at 1600 px wide; the PNG is drawn at 128 dpi, a power of two, so
# that width / dpi inches times dpi gives back exactly ``width`` pixels.
_DPI = 128
_MARGIN = {"left": 16, "right": 28, "top": 70, "bottom": 40}  # left grows with the labels
_TICK_CHAR_PX = 9.0  # width of a tick label character at 8 pt, 128 dpi
_MAX_HEIGHT_RATIO = 1.25  # a tall bbox narrows the map instead of making a tower


@dataclass(frozen=True)
class PreviewResult:
    """What was drawn.

    ``bbox``: the lon/lat extent shown ``(west, south, east, north)``;
    ``cells_per_pixel``: k when each raster pixel covers k x k grid cells (1: full
    detail); ``countries_in_view``: countries with rows in the view;
    ``countries_drawn``: those owning at least one pixel (a country smaller than a
    pixel loses it to the neighbour with more cells there); ``colors``: ISO code
    -> hex colour of every drawn country; ``map_box_px``: the map's (left, top, right,
    bottom) pixel edges in the PNG, for callers that annotate or check the image.
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
) -> PreviewResult:
    """Draw the tile_index partition under ``root`` as a ``width`` pixels wide PNG map.

    Without ``bbox`` the whole grid is drawn, each pixel covering k x k cells and taking
    the colour of the country with most of those cells (ties: the country with fewer
    cells in view, then the smaller ISO code);
    with one, only the cells in it, at full detail when they fit. Without
    ``parameter_hash`` the only partition under ``root`` is used. Memory is bounded by
    the picture, not the partition: rows are streamed batch by batch, and row groups
    outside the view are skipped by their statistics.
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
    phash = pick_parameter_hash(root, dictionary, parameter_hash)
    partition = dictionary.path("tile_index", root, phash)
    files = _partition_files(partition, root)
    info = _read_report(dictionary.path("run_report", root, phash))

    view = _view(info.grid, box, width)
    raster = _Majority(view.shape)
    for codes, rows, cols in _stream(files, view.window):
        raster.add(codes, view.pixel_index(rows, cols))
    best = raster.finish().reshape(view.shape)

    colours = _assign_colours(best)
    drawn = {_code_name(c): _PALETTE[p] for c, p in sorted(colours.items())}
    _draw(png, best, colours, view, info, phash, raster)
    log.info("preview of %s: %d rows, %d countries -> %s", phash, raster.rows, len(drawn), png)
    return PreviewResult(
        png=png,
        parameter_hash=phash,
        rows_drawn=raster.rows,
        countries_drawn=len(drawn),
        cells_per_pixel=view.k,
        bbox=view.extent,
        countries_in_view=raster.countries_seen,
        colors=drawn,
        map_box_px=view.map_box_px,
    )


# -- locating the partition and its report ---------------------------------------------


def _partition_files(partition: Path, root: Path) -> list[Path]:
    if not partition.is_dir():
        raise InputFileError(
            f"tile_index partition {partition} does not exist; run 'tileindex build ... "
            f"--out {root}' first or pass a parameter hash that was built"
        )
    files = part_files(partition)
    if not files:
        raise InputFileError(
            f"tile_index partition {partition} holds no part files; rebuild it with "
            "'tileindex build'"
        )
    return files


@dataclass(frozen=True)
class _ReportInfo:
    grid: Grid
    predicate: str
    rows_emitted: int


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
        return _ReportInfo(grid, str(doc["predicate"]), int(doc["rows_emitted"]))
    except (KeyError, TypeError, ValueError, RasterMismatchError) as exc:
        raise InputError(
            f"run report {path} lacks a usable grid_dims / grid_transform / predicate / "
            f"rows_emitted ({exc}); rebuild the partition with this version of tileindex"
        ) from exc


# -- the view: which cells, how many per pixel, where on the page ------------------------


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


def _code_name(index: int) -> str:
    i = int(index) - 1
    return chr(65 + i // 26) + chr(65 + i % 26)


def _stream(
    files: Sequence[Path], window: Window
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """(country index, raster_row, raster_col) of the rows inside ``window``, one batch
    at a time, in file and row order; row groups whose row or column statistics miss
    the window are not read."""
    for path in files:
        try:
            pf = pq.ParquetFile(path, read_dictionary=["country_iso"])
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"tile_index file {path}: cannot read ({exc})") from exc
        names = pf.schema_arrow.names
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise InputError(f"{path} is not a tile_index file: no column {', '.join(missing)}")
        groups = _groups_meeting(pf.metadata, names, window)
        if not groups:
            continue
        try:
            for batch in pf.iter_batches(
                batch_size=_BATCH_ROWS, row_groups=groups, columns=_COLUMNS
            ):
                out = _decode(batch, path, window)
                if out[0].size:
                    yield out
        except pa.ArrowException as exc:
            raise InputFileError(f"tile_index file {path}: cannot read ({exc})") from exc


def _groups_meeting(md: pq.FileMetaData, names: list[str], window: Window) -> list[int]:
    ir, ic = names.index("raster_row"), names.index("raster_col")
    keep = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        ok = True
        for idx, lo, hi in (
            (ir, window.row_start, window.row_stop),
            (ic, window.col_start, window.col_stop),
        ):
            st = rg.column(idx).statistics
            if st is not None and st.has_min_max and (st.max < lo or st.min >= hi):
                ok = False
        if ok:
            keep.append(g)
    return keep


def _decode(
    batch: pa.RecordBatch, path: Path, window: Window
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    iso = batch.column(0)
    if not pa.types.is_dictionary(iso.type):
        iso = iso.dictionary_encode()
    words = iso.dictionary.to_pylist()
    bad = [w for w in words if not (isinstance(w, str) and _CODE_RE.fullmatch(w))]
    if bad:
        raise InputError(
            f"{path}: country_iso {bad[0]!r} is not an uppercase alpha-2 code; "
            "this is not a valid tile_index partition (check it with the validator)"
        )
    lut = np.array([1 + 26 * (ord(w[0]) - 65) + ord(w[1]) - 65 for w in words], np.int64)
    codes = lut[iso.indices.to_numpy(zero_copy_only=False)]
    rows = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
    cols = batch.column(2).to_numpy(zero_copy_only=False).astype(np.int64)
    inside = (
        (rows >= window.row_start)
        & (rows < window.row_stop)
        & (cols >= window.col_start)
        & (cols < window.col_stop)
    )
    if not inside.all():
        codes, rows, cols = codes[inside], rows[inside], cols[inside]
    return codes, rows, cols


class _Majority:
    """Per pixel, the country with most cells in it. Ties go to the country with fewer
    rows in view, so a microstate sharing its cells with the host (any_overlap) still
    shows at full detail; then to the smaller ISO code.

    Rows arrive sorted by country (docs/CONTRACT.md §6), so one country's counts are gathered in
    ``_count`` and folded into the winners when the next country starts; memory is a
    few arrays of the picture's size whatever the number of rows.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        size = shape[0] * shape[1]
        self._best = np.zeros(size, dtype=np.uint16)
        self._best_n = np.zeros(size, dtype=np.uint32)
        self._count = np.zeros(size, dtype=np.uint32)
        self._code = 0
        self._lo, self._hi = size, 0
        self._total = np.zeros(_N_INDEX, dtype=np.int64)  # rows in view per country
        self.rows = 0

    @property
    def countries_seen(self) -> int:
        return int(np.count_nonzero(self._total))

    def add(self, codes: npt.NDArray[np.int64], pix: npt.NDArray[np.int64]) -> None:
        self.rows += int(codes.size)
        cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        bounds = np.concatenate(([0], cuts, [codes.size])).tolist()
        for a, b in itertools.pairwise(bounds):
            code = int(codes[a])
            if code != self._code:
                self._fold()
                self._code = code
            part = pix[a:b]
            self._total[code] += b - a
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

    def finish(self) -> npt.NDArray[np.uint16]:
        self._fold()
        self._code = 0
        return self._best


# -- colours: neighbours differ ---------------------------------------------------------


def _assign_colours(best: npt.NDArray[np.uint16]) -> dict[int, int]:
    """Palette entry per drawn country, greedy over what the picture shows: countries
    that touch (8-neighbourhood, corners too) must differ; countries a few pixels apart
    (a microstate and the country around its neighbour, two shores of a strait) differ
    when a colour is left. Each country starts from a colour derived from its code, so
    colours stay put across views where they can; the most connected choose first."""
    codes = np.unique(best[best > 0]).tolist()
    touching = _pairs(best, (1,))
    close = _pairs(best, _NEAR_PX)
    size = len(_PALETTE)
    chosen: dict[int, int] = {}
    for code in sorted(codes, key=lambda c: (-len(touching[c]), -len(close[c]), c)):
        hard = [chosen[n] for n in touching[code] if n in chosen]
        soft = {chosen[n] for n in close[code] if n in chosen}
        start = zlib.crc32(_code_name(code).encode("ascii")) % size
        ring = [(start + i) % size for i in range(size)]
        free = [p for p in ring if p not in hard and p not in soft] or [
            p for p in ring if p not in hard
        ]
        # more neighbours than colours: the least repeated one
        chosen[code] = free[0] if free else min(ring, key=lambda p: (hard.count(p), p))
    return chosen


_NEAR_PX = (1, 2, 4, 8)


def _pairs(best: npt.NDArray[np.uint16], distances: Sequence[int]) -> dict[int, set[int]]:
    """Countries seen within each distance (in the 8 directions) of one another."""
    h, w = best.shape
    found = []
    for d in distances:
        for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
            if dy >= h or abs(dx) >= w:
                continue
            a = best[: h - dy, max(0, -dx) : w - max(0, dx)]
            b = best[dy:, max(0, dx) : w - max(0, -dx)]
            touch = (a != b) & (a > 0) & (b > 0)
            found.append(a[touch].astype(np.int64) * _N_INDEX + b[touch])
    edges = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    out: dict[int, set[int]] = {int(c): set() for c in np.unique(best[best > 0]).tolist()}
    for u, v in zip((edges // _N_INDEX).tolist(), (edges % _N_INDEX).tolist(), strict=True):
        out[u].add(v)
        out[v].add(u)
    return out


# -- drawing ----------------------------------------------------------------------------


def _draw(
    png: Path,
    best: npt.NDArray[np.uint16],
    colours: Mapping[int, int],
    view: _View,
    info: _ReportInfo,
    phash: str,
    raster: _Majority,
) -> None:
    # the object API with an Agg canvas: no pyplot, no global backend switch
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba_array
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    lut = np.zeros((_N_INDEX, 4), dtype=np.uint8)
    lut[:] = np.round(to_rgba_array(NO_COUNTRY) * 255).astype(np.uint8)
    for code, p in colours.items():
        lut[code] = np.round(to_rgba_array(_PALETTE[p])[0] * 255).astype(np.uint8)
    image = lut[best]

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

    _label(ax, best, view, s, patheffects)

    g = info.grid
    cell = g.a * 3600.0
    cell_text = f"{cell:.4g}″" if cell < 360 else f"{g.a:.6g}°"
    where = (
        "world"
        if view.world
        else "bbox " + ", ".join(f"{v:.4g}" for v in view.extent) + " (W, S, E, N)"
    )
    detail = (
        "full detail (1 cell per pixel or more)"
        if view.k == 1
        else f"1 pixel = {view.k} × {view.k} cells, majority country"
    )
    hidden = raster.countries_seen - len(colours)
    countries = f"{len(colours)} countries shown" + (
        f", {hidden} more without a pixel of their own" if hidden > 0 else ""
    )
    rows = (
        f"{raster.rows:,} rows"
        if raster.rows == info.rows_emitted
        else f"{raster.rows:,} of {info.rows_emitted:,} rows"
    )
    line1 = f"tile_index  ·  parameter_hash {phash[:12]}…  ·  predicate {info.predicate}"
    line1 += f"  ·  {where}"
    line2 = (
        f"grid {g.ncols:,} × {g.nrows:,} cells of {cell_text}  ·  {rows}  ·  "
        f"{countries}  ·  {detail}"
    )
    room = width - left - 8 * s
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    titles = (
        (fig.text(left / width, 1 - 14 * s / height, line1, weight="bold", va="top"), 12.0),
        (fig.text(left / width, 1 - 40 * s / height, line2, color="#333333", va="top"), 9.0),
    )
    for title, size in titles:
        title.set_fontsize(size * s)
        wide = title.get_window_extent(renderer).width
        if wide > room:  # a narrow picture shrinks its title rather than cutting it
            title.set_fontsize(size * s * room / wide)

    try:
        write_atomic(
            png, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
        )
    except OSError as exc:
        raise InputFileError(f"cannot write the preview {png}: {exc.strerror}") from exc


def _label(ax: Any, best: npt.NDArray[np.uint16], view: _View, s: float, effects: Any) -> None:
    """ISO code of each country on its deepest pixel (farthest from its border). In a
    bbox view a country too small to carry its label gets it beside, with a leader."""
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
        if code == 0 or not (big or not view.world):
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
        name = _code_name(code)
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


def _depth(best: npt.NDArray[np.uint16], steps: int = 96) -> npt.NDArray[np.int32]:
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
