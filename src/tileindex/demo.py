"""The demo job: real inputs prepared once into a cache folder, the world (or a packaged
region layer) built, a map drawn."""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from tileindex.contract import DEFAULT_KEY_COLUMN
from tileindex.errors import ConfigError, InputError
from tileindex.pipeline import BuildResult, build
from tileindex.prepare import prepare_inputs
from tileindex.regions_data import KEYS_FILE, REGION_LAYERS, REGIONS_FILE, prepare_regions
from tileindex.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_DEMO_DIR = Path("tileindex-demo")
_LARGEST = 10
_BBOX_MARGIN_DEG = 0.5  # around a region layer's extent on its map


@dataclass(frozen=True)
class DemoResult:
    """What the demo built and drew. ``largest``: (key, rows), most rows first;
    ``key_column``: ``country_iso``, or the region layer's key column; ``names``: the
    name of each key in ``largest`` (region layers only); ``coverage_png``: the
    coverage map, when asked for."""

    build: BuildResult
    preview_png: Path
    largest: tuple[tuple[str, int], ...]
    key_column: str = DEFAULT_KEY_COLUMN
    names: Mapping[str, str] = field(default_factory=dict)
    coverage_png: Path | None = None


def inputs_folder(out: Path, resolution_arcsec: float) -> Path:
    return Path(out) / f"inputs-{resolution_arcsec:g}arcsec"


def regions_folder(out: Path, layer: str, resolution_arcsec: float) -> Path:
    return Path(out) / f"regions-{layer}-{resolution_arcsec:g}arcsec"


def run_demo(
    out: Path = DEFAULT_DEMO_DIR,
    *,
    resolution_arcsec: float = 30.0,
    predicate: str = "center",
    workers: int | None = None,
    cache_dir: Path | None = None,
    telemetry: Telemetry | None = None,
    say: Callable[[str], None] = log.info,
    regions: str | None = None,
    coverage: bool = False,
) -> DemoResult:
    """Prepare the inputs (once), build the tile index, render a preview map.

    By default the world's countries (Natural Earth on the WorldPop grid). With
    ``regions``, a packaged region layer instead (``dz-communes``: Algeria's 1,538
    communes, :func:`tileindex.regions_data.prepare_regions`, docs/CONTRACT.md §10.1),
    drawn over the layer's extent. With ``coverage``, the build publishes tile_coverage
    (§10.3) and a second map shades its fractions.
    """
    from tileindex.preview import render_preview  # matplotlib only when a map is drawn

    if regions is not None and regions not in REGION_LAYERS:
        raise ConfigError(
            f"unknown region layer {regions!r}; choose one of {', '.join(sorted(REGION_LAYERS))}"
        )
    bbox: tuple[float, float, float, float] | None = None
    if regions is None:
        key_column = DEFAULT_KEY_COLUMN
        inputs = inputs_folder(out, resolution_arcsec)
        if not (inputs / "prepare_report.json").exists():
            say(f"preparing real inputs at {resolution_arcsec:g}″ into {inputs} (once) ...")
            prepare_inputs(inputs, resolution_arcsec, overwrite=True)
        else:
            say(f"reusing the inputs prepared in {inputs}")
        iso, layer, what = inputs / "iso.parquet", inputs / "countries.parquet", "tile index"
    else:
        key_column = REGION_LAYERS[regions].key_column
        inputs = regions_folder(out, regions, resolution_arcsec)
        if not (inputs / "prepare_report.json").exists():
            say(f"preparing the region layer {regions} at {resolution_arcsec:g}″ into {inputs} ...")
            prepare_regions(inputs, regions, resolution_arcsec, overwrite=True)
        else:
            say(f"reusing the region layer prepared in {inputs}")
        iso, layer, what = inputs / KEYS_FILE, inputs / REGIONS_FILE, f"{regions} index"
        bbox = _layer_bbox(layer)
    say(f"building the {what} ({predicate}{', with coverage' if coverage else ''}) ...")
    result = build(
        iso,
        layer,
        inputs / "grid.tif",
        Path(out) / "out",
        key_column=key_column,
        predicate=predicate,
        workers=workers,
        cache_dir=cache_dir,
        telemetry=telemetry,
        coverage=coverage,
    )
    folder = result.paths["run_report"].parent
    png = folder / "preview.png"
    say(f"drawing the preview map {png} ...")
    root, phash = Path(out) / "out", result.parameter_hash
    render_preview(root, png, parameter_hash=phash, bbox=bbox, overwrite=True)
    coverage_png = None
    if coverage:
        coverage_png = folder / "preview-coverage.png"
        say(f"drawing the coverage map {coverage_png} ...")
        render_preview(
            root, coverage_png, parameter_hash=phash, bbox=bbox, overwrite=True, coverage=True
        )
    largest = heapq.nlargest(
        _LARGEST,
        ((s.country_iso, s.cells_included) for s in result.summaries),
        key=lambda t: t[1],
    )
    names = {} if regions is None else _names(iso, key_column, {k for k, _ in largest})
    return DemoResult(result, png, tuple(largest), key_column, names, coverage_png)


def _layer_bbox(layer: Path) -> tuple[float, float, float, float]:
    """The layer's extent from its GeoParquet ``bbox`` (written by prepare_regions),
    with a margin, inside the lon/lat range."""
    try:
        geo = json.loads(pq.read_schema(layer).metadata[b"geo"])
        w, s, e, n = (float(v) for v in geo["columns"][geo["primary_column"]]["bbox"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{layer}: no GeoParquet bbox to frame the map ({exc}); prepare it again with "
            "'tileindex prepare --regions'"
        ) from exc
    m = _BBOX_MARGIN_DEG
    return (max(w - m, -180.0), max(s - m, -90.0), min(e + m, 180.0), min(n + m, 90.0))


def _names(keys: Path, key_column: str, wanted: set[str]) -> dict[str, str]:
    table = pq.read_table(keys, columns=[key_column, "name"])
    return {
        k: n
        for k, n in zip(
            table.column(key_column).to_pylist(), table.column("name").to_pylist(), strict=True
        )
        if k in wanted
    }
