"""``tileindex parity``: the fast kernel against the legacy engine on sampled windows."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    input_options,
    json_option,
    predicate_option,
    window_options,
)
from tileindex.parity import ParityResult, run_parity
from tileindex.predicates import PREDICATES


@click.command(name="parity")
@input_options
@click.option(
    "--codes",
    required=True,
    help="Comma-separated ISO alpha-2 codes, e.g. US,BR,IN,IS.",
)
@window_options(64, 4, "Windows per country (3 in 4 centred on its boundary).", min_samples=1)
@predicate_option(compare=True)
@json_option
def parity(
    iso: Path,
    countries: Path,
    raster: Path,
    codes: str,
    window: int,
    samples: int,
    seed: int,
    predicate: str,
    as_json: bool,
) -> None:
    """Compare the fast engine with the legacy engine, window by window.

    Prints, per window, the number of included cells and the SHA-256 of their tile ids
    under both engines side by side; exits 1 on any difference.
    """
    code_list = [c.strip() for c in codes.split(",") if c.strip()]
    with clean_errors():
        result = run_parity(
            iso,
            countries,
            raster,
            code_list,
            window=window,
            samples=samples,
            seed=seed,
            predicates=PREDICATES if predicate == "both" else (predicate,),
        )
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else table(result))
    if not result.ok:
        raise SystemExit(1)


def table(result: ParityResult) -> str:
    head = (
        f"{'code':<4} {'predicate':<11} {'rows':>11} {'cols':>11} {'fast':>6} {'legacy':>6} "
        f"{'sha256 fast':<12} {'sha256 legacy':<13} {'s fast':>7} {'s legacy':>8}  result"
    )
    lines = [head]
    for w in result.windows:
        lines.append(
            f"{w.country_iso:<4} {w.predicate:<11} "
            f"{f'{w.row_start}..{w.row_stop - 1}':>11} {f'{w.col_start}..{w.col_stop - 1}':>11} "
            f"{w.fast_count:>6} {w.reference_count:>6} {w.fast_sha256[:12]:<12} "
            f"{w.reference_sha256[:12]:<13} {w.fast_seconds:>7.3f} {w.reference_seconds:>8.3f}  "
            + ("same" if w.equal else "DIFFERENT")
        )
        if not w.equal:
            lines.append(
                f"     only fast: {list(w.only_fast)}  only legacy: {list(w.only_reference)}"
            )
    n_bad = sum(1 for w in result.windows if not w.equal)
    fast_s = sum(w.fast_seconds for w in result.windows)
    ref_s = sum(w.reference_seconds for w in result.windows)
    lines.append(
        f"{len(result.windows)} windows, {n_bad} different · fast {fast_s:.2f} s, legacy "
        f"{ref_s:.2f} s · total {result.seconds:.1f} s"
    )
    return "\n".join(lines)
