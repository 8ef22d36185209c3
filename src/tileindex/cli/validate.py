"""``tileindex validate``: check a published tile index against its inputs and the contract."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tileindex.cli.errors import clean_errors
from tileindex.cli.options import (
    dictionary_option,
    json_option,
    layer_input_options,
    out_read_option,
    parameter_hash_option,
    quiet_option,
    window_options,
)
from tileindex.validate import ValidationResult, validate_partition


@click.command(name="validate")
@out_read_option()
@parameter_hash_option("the partition to validate (default: the only one under OUT).")
@layer_input_options
@window_options(32, 8, "Windows re-decided cell by cell with the legacy engine.")
@click.option(
    "--full",
    is_flag=True,
    help="Also re-decide every cell of every country with the legacy engine (slow).",
)
@click.option(
    "--coverage-samples",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="With a tile_coverage partition: cells per country and kind (below 1.0, and 1.0 "
    "beside a boundary cell) whose fraction is re-derived with GEOS.",
)
@dictionary_option("the dataset dictionary YAML the build used (default: the built-in one).")
@json_option
@quiet_option
def validate(
    out: Path,
    parameter_hash: str | None,
    key_column: str,
    iso: Path | None,
    countries: Path,
    raster: Path,
    samples: int,
    window: int,
    seed: int,
    full: bool,
    coverage_samples: int,
    dictionary: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Validate a published tile index independently of the build.

    Checks the schemas, file layout, keys (order, uniqueness, same in both datasets),
    ISO foreign key, tile ids, centroids, bounds, areas, the run report (receipt, input
    digests, PAT budgets) and the country summaries; re-decides every country's cells
    by an independent method and SAMPLES windows with the legacy engine (every cell
    with --full); checks tile_coverage when the build published it. Every finding
    carries its contract code; exits 1 if there is any. A region-mode build is
    validated with the same --key-column, --regions and --keys (if the build had them).
    """

    def progress(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    with clean_errors():
        result = validate_partition(
            out,
            iso=iso,
            countries=countries,
            raster=raster,
            key_column=key_column,
            parameter_hash=parameter_hash,
            dictionary=dictionary,
            samples=samples,
            seed=seed,
            window=window,
            full=full,
            coverage_samples=coverage_samples,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(summary(result))
    if not result.ok:
        raise SystemExit(1)


def summary(result: ValidationResult) -> str:
    """The result for people: what was checked, what failed, grouped by code."""
    st = result.stats
    checks = st.get("checks", {})
    run, failed = checks.get("run", 0), checks.get("failed", 0)
    lines = [
        f"tileindex validate: {'OK' if result.ok else f'FAILED ({len(result.findings)} findings)'}",
        f"  partition   {st.get('tile_index')}",
        f"  predicate   {st.get('predicate')} · {st.get('rows', 0):,} rows · "
        f"{st.get('countries', 0)} countries ({st.get('countries_with_rows', 0)} with rows)",
        f"  checks      {run} run, {run - failed} passed, {failed} failed",
    ]
    for how in ("recount", "legacy_full"):
        info = st.get(how)
        if info:
            bad = info["mismatched"]
            lines.append(
                f"  {how.replace('_', ' '):<11} {info['countries']} countries by {info['method']}: "
                + (f"{len(bad)} differ ({' '.join(bad[:10])})" if bad else "all agree")
            )
    wins = st.get("sampled_windows", [])
    lines.append(f"  samples     {len(wins)} windows, legacy engine, seed {st.get('seed')}:")
    for w in wins:
        lines.append(
            f"              rows {w['row_start']}..{w['row_stop'] - 1} cols "
            f"{w['col_start']}..{w['col_stop'] - 1} (on {w['seeded_by']}'s boundary): "
            f"{' '.join(w['countries']) or 'no country'}"
        )
    sec = st.get("seconds", {})
    parts = ", ".join(f"{k} {v:.1f}" for k, v in sec.items() if k != "total")
    lines.append(f"  seconds     {sec.get('total', 0.0):.1f} ({parts})")
    for warning in result.warnings:
        lines.append(f"  warning     {warning}")
    for code, findings in result.by_code().items():
        lines.append(f"{code} ({len(findings)})")
        for f in findings:
            where = " ".join(
                x
                for x in (
                    f"[{f.country_iso}]" if f.country_iso else "",
                    f"[tile {f.tile_id}]" if f.tile_id is not None else "",
                )
                if x
            )
            lines.append(f"  - {where + ' ' if where else ''}{f.message}")
    return "\n".join(lines)
