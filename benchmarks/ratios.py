"""The build's headline ratios in one session: the 30″ world ``center`` with 2 workers
against the floor script (GDAL centre rule + the same writer, one process), and
``any_overlap`` against ``center``.

    python benchmarks/ratios.py [--resolution 30] [--repeats 2] [--record LABEL]

Each repeat runs, as child processes measured from outside, ``floor``, ``center`` and
``any_overlap`` (2 workers, no cache), rotating which goes first. Printed: medians and
the ratios center / floor (target ≤ 0.35) and any_overlap / center (target ≤ 1.05), and
the writer's bound: the floor's own time inside pyarrow's ``write_table`` (the same
bytes the build writes), halved for 2 cores, over the floor's wall;
``--record`` appends them to ``benchmarks/RESULTS.md``. ``benchmarks/run.py`` is the
full suite (engines, scaling, profile); this is the quick check of the two ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, _json_tail, floor_cmd, inputs, measure, ours_cmd, record

WORK = BENCH / "_work" / "ratios"


def _part_digests(out: Path) -> dict[str, str]:
    """SHA-256 of every part file of both datasets, by dataset and file name (the floor
    writes ``out/<dataset>/``, a build ``out/data/.../<dataset>/parameter_hash=*/``)."""
    found = {}
    for path in sorted(out.rglob("part-*.parquet")):
        dataset = next(p for p in path.parts if p in ("tile_index", "tile_bounds"))
        found[f"{dataset}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--record", metavar="LABEL")
    args = p.parse_args()
    inp = inputs(args.resolution)
    cmds = {
        "floor": lambda o: floor_cmd(inp, o),
        "center": lambda o: ours_cmd(inp, o, "center", 2),
        "any_overlap": lambda o: ours_cmd(inp, o, "any_overlap", 2),
    }
    names = list(cmds)
    walls: dict[str, list[float]] = {n: [] for n in names}
    loads = []
    writes: list[float] = []  # the floor's time inside pyarrow's writer
    digests: dict[str, list[dict[str, str]]] = {"floor": [], "center": []}
    for rep in range(args.repeats):
        order = names[rep % 3 :] + names[: rep % 3]
        for name in order:
            out = WORK / f"{name}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            log = WORK / f"{name}-{rep}.log"
            m = measure(cmds[name](out), name, log)
            walls[name].append(m["wall_s"])
            if name == "floor":
                writes.append(_json_tail(log)["write_s"])
            print(f"rep {rep} {name}: {m['wall_s']:.1f} s (CPU {m['cpu_s']:.1f} s)", flush=True)
            if name in ("floor", "center"):
                digests[name].append(_part_digests(out))
            shutil.rmtree(out, ignore_errors=True)
    same_bytes = all(d == digests["center"][0] for d in digests["floor"] + digests["center"])
    med = {n: statistics.median(v) for n, v in walls.items()}
    r_floor = med["center"] / med["floor"]
    r_pred = med["any_overlap"] / med["center"]
    # the floor writes the same bytes with the same writer in one process: a build on 2
    # cores can at best halve that writing and do nothing else
    write = statistics.median(writes)
    bound = write / 2 / med["floor"]
    text = (
        f"center {med['center']:.1f} s, floor {med['floor']:.1f} s, any_overlap "
        f"{med['any_overlap']:.1f} s (medians of {args.repeats}); center / floor = "
        f"**{r_floor:.2f}** (target ≤ 0.35: {'met' if r_floor <= 0.35 else 'not met'}); "
        f"any_overlap / center = **{r_pred:.3f}** (target ≤ 1.05: "
        f"{'met' if r_pred <= 1.05 else 'not met'}); load before runs "
        f"{min(loads):.1f}-{max(loads):.1f}. The floor spends {write:.1f} s "
        f"({100 * write / med['floor']:.0f} %) inside pyarrow's `write_table` for the same "
        f"bytes the build writes (every part file of both datasets identical: {same_bytes}): "
        f"on 2 cores no build of those bytes with that writer can "
        f"go below {write / 2:.1f} s, **{bound:.2f}x the floor**; the build's center is "
        f"{med['center'] / (write / 2):.2f}x that bound."
    )
    print(text)
    if args.record:
        runs = "; ".join(f"{n} {', '.join(f'{w:.1f}' for w in walls[n])} s" for n in names)
        record(
            f"Build ratios at {args.resolution:g}″: {args.record}",
            "`benchmarks/ratios.py`, 2 workers, no cache, measured from outside. "
            f"Runs: {runs}.\n\n{text}",
        )


if __name__ == "__main__":
    main()
