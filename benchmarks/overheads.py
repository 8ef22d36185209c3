"""Two fixed costs of a build, each against a baseline in the same run: the start-up of
a process that imports tileindex (every CLI command and build worker), and the bytes
the coordinator sends with the units' jobs.

    python benchmarks/overheads.py [--baseline COMMIT] [--repeats 7] [--record LABEL]

- start-up: fresh interpreters, alternating the working tree's ``src`` and the
  ``--baseline`` commit's (extracted with ``git archive``), each timing with
  ``perf_counter`` ``import tileindex.tasks`` plus a first pyarrow array (pyarrow loads
  pandas on its first NumPy conversion, so that is in both);
- job payload at 30″: the world's units (``plan_countries``) with what each job pickled
  before (its country's ``CountryGeometry``) and what it pickles now (the digest), plus
  the geometry files the coordinator now writes once per country.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PY, ROOT, baseline_src, inputs, record

from tileindex.geometry import country_geometry, geometry_digest
from tileindex.memory_inputs import read_inputs
from tileindex.plan import plan_countries

STARTUP = (
    "import time; t = time.perf_counter(); import numpy as np, tileindex.tasks, pyarrow as pa; "
    "pa.array(np.array([1])); print(time.perf_counter() - t)"
)


def startup(baseline: str, repeats: int) -> dict[str, list[float]]:
    sources = {"baseline": baseline_src(baseline), "now": ROOT / "src"}
    times: dict[str, list[float]] = {name: [] for name in sources}
    for rep in range(repeats):
        for name in sources if rep % 2 == 0 else list(sources)[::-1]:
            out = subprocess.run(
                [PY, "-c", STARTUP],
                env={"PYTHONPATH": str(sources[name]), "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
            )
            times[name].append(float(out.stdout.strip()))
    return times


def payload(resolution: float) -> dict[str, int]:
    inp = inputs(resolution)
    iso, layer, grid_in = read_inputs(
        inp / "iso.parquet", inp / "countries.parquet", inp / "grid.tif", "country_iso"
    )
    geometries = {
        code: country_geometry(code, layer.rows[code]) if code in layer.rows else None
        for code in iso.codes
    }
    units = plan_countries(grid_in.grid, geometries, None)
    per_country = Counter(u.country_iso for u in units)
    sizes = {c: len(pickle.dumps(geometries[c], protocol=5)) for c in per_country}
    digests = {c: geometry_digest(geometries[c]) for c in per_country}  # type: ignore[arg-type]
    return {
        "units": len(units),
        "countries": len(per_country),
        "before": sum(n * sizes[c] for c, n in per_country.items()),
        "now_jobs": sum(n * len(pickle.dumps(digests[c])) for c, n in per_country.items()),
        "now_files": sum(sizes.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="b80754e")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--resolution", type=float, default=30.0)
    p.add_argument("--record", metavar="LABEL")
    args = p.parse_args()
    times = startup(args.baseline, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    pay = payload(args.resolution)
    mib = 2**20
    text = (
        "| | baseline | now |\n|---|---|---|\n"
        f"| start-up: import tileindex.tasks + first array (median of {args.repeats}) "
        f"| {med['baseline']:.2f} s | {med['now']:.2f} s |\n"
        f"| bytes pickled into the {pay['units']} unit jobs at {args.resolution:g}″ "
        f"| {pay['before'] / mib:.1f} MiB | {pay['now_jobs'] / mib:.3f} MiB (+ "
        f"{pay['now_files'] / mib:.1f} MiB of geometry files, once per country) |\n\n"
        f"- start-up runs (s): baseline {', '.join(f'{t:.2f}' for t in times['baseline'])}; "
        f"now {', '.join(f'{t:.2f}' for t in times['now'])}\n"
    )
    print(text)
    print(json.dumps({"startup": times, "payload": pay}))
    if args.record:
        record(
            f"Overheads: {args.record}, baseline {args.baseline}",
            "`benchmarks/overheads.py`: fresh interpreters alternating the two sources; the "
            "world's units planned as the build plans them.\n\n" + text,
        )


if __name__ == "__main__":
    main()
