"""The demo job: real inputs prepared once into a cache folder, the world built, a map drawn."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tileindex.pipeline import BuildResult, build
from tileindex.prepare import prepare_inputs
from tileindex.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_DEMO_DIR = Path("tileindex-demo")


@dataclass(frozen=True)
class DemoResult:
    build: BuildResult
    preview_png: Path
    largest: tuple[tuple[str, int], ...]  # (country_iso, rows), most rows first


def inputs_folder(out: Path, resolution_arcsec: float) -> Path:
    return Path(out) / f"inputs-{resolution_arcsec:g}arcsec"


def run_demo(
    out: Path = DEFAULT_DEMO_DIR,
    *,
    resolution_arcsec: float = 30.0,
    predicate: str = "center",
    workers: int | None = None,
    cache_dir: Path | None = None,
    telemetry: Telemetry | None = None,
    say: Callable[[str], None] = log.info,
) -> DemoResult:
    """Prepare the default inputs (once), build the tile index, render a preview map."""
    from tileindex.preview import render_preview  # matplotlib only when a map is drawn

    inputs = inputs_folder(out, resolution_arcsec)
    prepared = not (inputs / "prepare_report.json").exists()
    if prepared:
        say(f"preparing real inputs at {resolution_arcsec:g}″ into {inputs} (once) ...")
        prepare_inputs(inputs, resolution_arcsec, overwrite=True)
    else:
        say(f"reusing the inputs prepared in {inputs}")
    say(f"building the tile index ({predicate}) ...")
    result = build(
        inputs / "iso.parquet",
        inputs / "countries.parquet",
        inputs / "grid.tif",
        Path(out) / "out",
        predicate=predicate,
        workers=workers,
        cache_dir=cache_dir,
        telemetry=telemetry,
    )
    png = result.paths["run_report"].parent / "preview.png"
    say(f"drawing the preview map {png} ...")
    render_preview(Path(out) / "out", png, parameter_hash=result.parameter_hash, overwrite=True)
    largest = heapq.nlargest(
        10, ((s.country_iso, s.cells_included) for s in result.summaries), key=lambda t: t[1]
    )
    return DemoResult(result, png, tuple(largest))
