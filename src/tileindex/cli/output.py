"""What the commands print for people on stdout (results; progress and errors go to stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tileindex.pipeline import BuildResult

__all__ = ["print_build_summary"]


def print_build_summary(result: BuildResult) -> None:
    """A short table: outcome, counts, time, throughput, where things are."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rate = result.rows_emitted / max(result.seconds, 1e-9)
    verb = "published" if result.outcome == "published" else "already published (identical, no-op)"
    table.add_row("outcome", verb)
    table.add_row("parameter_hash", result.parameter_hash)
    visited = "countries" if result.report.key_column == "country_iso" else "regions"
    table.add_row(visited, f"{result.countries_total} ({result.countries_with_rows} with rows)")
    table.add_row("rows", f"{result.rows_emitted:,}")
    table.add_row("seconds", f"{result.seconds:.1f} ({rate:,.0f} rows/s)")
    for key in ("tile_index", "tile_bounds", "run_report"):
        table.add_row(key, str(result.paths[key]))
    Console().print(table)
