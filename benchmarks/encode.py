"""The encode phase against pyarrow's own write of the same tables (issue: encoding at
the writer's speed).

    python benchmarks/encode.py [--resolution 30] [--parts 0,6,12,18,24] [--repeats 3]
                                [--record LABEL]

Works on a published world build at ``--resolution`` (``center``; prepared and built
once under ``benchmarks/_work/``, or reused from ``benchmarks/lookup.py``). For each
chosen part file it turns the part's rows back into runs (the build's own input to the
encoder: row, col0, col1, key) and reads both datasets' tables into memory. Then, in
one process and alternating which goes first in each repeat:

- ``encode``: ``tileindex.tasks.encode_part`` on those runs -- everything the build's
  workers do for a part: columns from runs, table assembly, checks, the parquet write,
  fsync, SHA-256, the move into place;
- ``pyarrow``: ``pq.ParquetWriter`` with the same settings
  (``tileindex.shards.parquet_options``) writing the in-memory tables, row groups of
  2^20 rows: the writer alone, the floor of any encoder that keeps these bytes.

Both write the same bytes (checked once per part). Printed: medians per part and over
all, and the ratio encode / pyarrow (target: at most 1.15). The encode phase is also
split by a profile-free timer: the part of ``encode`` spent inside ``write_table``
(the rest is ours). ``--record`` appends the table to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from run import record, world_index  # noqa: E402

from tileindex.grid import Runs  # noqa: E402
from tileindex.layout import ROWS_PER_ROW_GROUP, part_files, part_name  # noqa: E402
from tileindex.plan import PartTask  # noqa: E402
from tileindex.shards import parquet_options  # noqa: E402
from tileindex.tasks import encode_part  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
TARGET = 1.15
DATASETS = ("tile_index", "tile_bounds")


def _runs(table: pa.Table, key_column: str) -> tuple[list[str], Runs]:
    """The runs of a part's rows (they are in (key, tile_id) order)."""
    keys = table.column(key_column).to_numpy(zero_copy_only=False)
    r = table.column("raster_row").to_numpy().astype(np.int64)
    c = table.column("raster_col").to_numpy().astype(np.int64)
    codes, k = np.unique(keys, return_inverse=True)
    brk = np.flatnonzero((np.diff(r) != 0) | (np.diff(c) != 1) | (np.diff(k) != 0)) + 1
    s, e = np.r_[0, brk], np.r_[brk, r.size]
    return [str(x) for x in codes], Runs(r[s], c[s], c[e - 1] + 1, k[s].astype(np.int32))


class _WriteClock:
    """Seconds spent inside ``pq.ParquetWriter.write_table`` (patched while timing)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._orig = pq.ParquetWriter.write_table

    def __enter__(self) -> _WriteClock:
        orig, clock = self._orig, self

        def timed(writer, table, row_group_size=None):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return orig(writer, table, row_group_size=row_group_size)
            finally:
                clock.seconds += time.perf_counter() - t0

        pq.ParquetWriter.write_table = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        pq.ParquetWriter.write_table = self._orig  # type: ignore[method-assign]


def _encode(index, codes, runs, n, part, stage: Path) -> tuple[float, float]:
    shutil.rmtree(stage, ignore_errors=True)
    for name in DATASETS:
        (stage / name).mkdir(parents=True)
    with _WriteClock() as clock:
        t0 = time.perf_counter()
        encode_part(
            index.grid,
            index.predicate,
            codes,
            runs,
            PartTask(part, 0, n),
            stage,
            ROWS_PER_ROW_GROUP,
            8,
            key_column=index.key_column,
        )
        total = time.perf_counter() - t0
    return total, clock.seconds


def _plain(tables: dict[str, pa.Table], folder: Path, key_column: str) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, table in tables.items():
        options = parquet_options(name, key_column)
        with pq.ParquetWriter(folder / f"{name}.parquet", table.schema, **options) as w:
            w.write_table(table, row_group_size=ROWS_PER_ROW_GROUP)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=float, default=30.0)
    p.add_argument("--parts", default="0,6,12,18,24", help="part indexes to encode")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", metavar="LABEL")
    args = p.parse_args()

    index = world_index(args.resolution)
    files = {name: part_files(index.path(name)) for name in DATASETS}
    picks = [int(x) for x in args.parts.split(",") if int(x) < len(files["tile_index"])]
    rows, all_ours, all_plain, all_write = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tileindex-encode-", dir=WORK) as tmp:
        tmpdir = Path(tmp)
        for part in picks:
            tables = {n: pq.read_table(files[n][part]).combine_chunks() for n in DATASETS}
            n = tables["tile_index"].num_rows
            codes, runs = _runs(tables["tile_index"], index.key_column)
            stage = tmpdir / "stage"
            _encode(index, codes, runs, n, part, stage)  # warm (JIT, tables, page cache)
            _plain(tables, tmpdir / "plain", index.key_column)
            for name in DATASETS:  # the same bytes as the build, or the ratio means nothing
                assert filecmp.cmp(stage / name / part_name(part), files[name][part], False)
            ours, write, plain = [], [], []
            for rep in range(args.repeats):
                order = ("ours", "plain") if rep % 2 == 0 else ("plain", "ours")
                for which in order:
                    if which == "ours":
                        total, inside = _encode(index, codes, runs, n, part, stage)
                        ours.append(total)
                        write.append(inside)
                    else:
                        plain.append(_plain(tables, tmpdir / "plain", index.key_column))
            mo, mw, mp = (statistics.median(x) for x in (ours, write, plain))
            rows.append((part, n, len(runs), mo, mw, mp))
            all_ours += ours
            all_plain += plain
            all_write += write
            print(
                f"part {part}: {n:,} rows, {len(runs):,} runs; encode {mo:.3f} s "
                f"(write_table {mw:.3f} s), pyarrow {mp:.3f} s, ratio {mo / mp:.3f}",
                flush=True,
            )
    mo, mw, mp = (statistics.median(x) for x in (all_ours, all_write, all_plain))
    ratio = sum(r[3] for r in rows) / sum(r[5] for r in rows)
    ours_share = (sum(r[3] for r in rows) - sum(r[4] for r in rows)) / sum(r[4] for r in rows)
    verdict = "met" if ratio <= TARGET else "not met"
    print(
        f"all parts: encode {sum(r[3] for r in rows):.3f} s, pyarrow {sum(r[5] for r in rows):.3f}"
        f" s, ratio {ratio:.3f} (target <= {TARGET}: {verdict}); the encoder's own work "
        f"(outside write_table) is {ours_share:.1%} of its write_table time"
    )
    if args.record:
        lines = [
            f"World {args.resolution:g}″ (`center`), parts {', '.join(map(str, picks))}; "
            f"medians of {args.repeats} alternating repeats in one process "
            "(`benchmarks/encode.py`). `encode` = `tasks.encode_part` from runs (columns, "
            "tables, checks, write, fsync, SHA-256, move); `pyarrow` = `ParquetWriter` "
            "with the same settings on the same in-memory tables; identical bytes.",
            "",
            "| part | rows | runs | encode s | of which write_table s | pyarrow s | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p_} | {n_:,} | {r_:,} | {o:.3f} | {w:.3f} | {pl:.3f} | {o / pl:.3f} |"
            for p_, n_, r_, o, w, pl in rows
        ]
        lines += [
            "",
            f"Total: encode / pyarrow = **{ratio:.3f}** (target ≤ {TARGET}: {verdict}); the "
            f"encoder's own work outside `write_table` = {ours_share:.1%} of its write time.",
        ]
        record(f"Encode phase vs pyarrow's own write: {args.record}", "\n".join(lines))


if __name__ == "__main__":
    main()
