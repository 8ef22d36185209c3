"""The build's headline ratios in one session: the 30″ world ``center`` with 2 workers
against the floor script (GDAL centre rule + the same writer, one process), and
``any_overlap`` against ``center``.

    python benchmarks/ratios.py [--resolution 30] [--repeats 2] [--record LABEL]

Each repeat runs, as child processes measured from outside, ``floor``, ``center`` and
``any_overlap`` (2 workers, no cache), rotating which goes first. Printed: medians and
the ratios center / floor (target ≤ 0.35) and any_overlap / center (target ≤ 1.05);
``--record`` appends them to ``benchmarks/RESULTS.md``. ``benchmarks/run.py`` is the
full suite (engines, scaling, profile); this is the quick check of the two ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, floor_cmd, git_stamp, inputs, measure, ours_cmd

WORK = BENCH / "_work" / "ratios"
RESULTS = BENCH / "RESULTS.md"


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
    for rep in range(args.repeats):
        order = names[rep % 3 :] + names[: rep % 3]
        for name in order:
            out = WORK / f"{name}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            m = measure(cmds[name](out), name, WORK / f"{name}-{rep}.log")
            walls[name].append(m["wall_s"])
            print(f"rep {rep} {name}: {m['wall_s']:.1f} s (CPU {m['cpu_s']:.1f} s)", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    med = {n: statistics.median(v) for n, v in walls.items()}
    r_floor = med["center"] / med["floor"]
    r_pred = med["any_overlap"] / med["center"]
    text = (
        f"center {med['center']:.1f} s, floor {med['floor']:.1f} s, any_overlap "
        f"{med['any_overlap']:.1f} s (medians of {args.repeats}); center / floor = "
        f"**{r_floor:.2f}** (target ≤ 0.35: {'met' if r_floor <= 0.35 else 'not met'}); "
        f"any_overlap / center = **{r_pred:.3f}** (target ≤ 1.05: "
        f"{'met' if r_pred <= 1.05 else 'not met'}); load before runs "
        f"{min(loads):.1f}-{max(loads):.1f}."
    )
    print(text)
    if args.record:
        commit, when = git_stamp()
        runs = "; ".join(f"{n} {', '.join(f'{w:.1f}' for w in walls[n])} s" for n in names)
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(
                f"\n### Build ratios at {args.resolution:g}″: {args.record} (commit {commit}, "
                f"{when})\n\n`benchmarks/ratios.py`, 2 workers, no cache, measured from "
                f"outside. Runs: {runs}.\n\n{text}\n"
            )
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
