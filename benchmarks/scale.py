"""The world at 1 km and beyond on this machine: does a build keep its rows/s and its
memory budgets as the grid grows to WorldPop's 100 m grid (3″)?

    python benchmarks/scale.py [--resolutions 30,7.5,3] [--workers 2] [--predicate center]
                               [--keep] [--record LABEL]

For each resolution: the inputs are prepared once (``tileindex prepare``: Natural Earth
1:10m and a sparse grid-only GeoTIFF, so a 3″ grid costs no disk), then one
``tileindex build --workers N --no-cache`` runs as a child process measured from outside
(wall; the RSS of the whole process tree sampled every 0.1 s). From the run report and
the published files: rows, rows/s, the parent's and the largest worker's peak RSS, the
temp-disk counters, the bytes spilled runs took, the part files per dataset and their
sizes. Each run is compared with the first resolution's (the baseline, normally 30″):
rows/s ratio and parent-peak ratio. The published data is deleted after each run
unless ``--keep`` (the 3″ world is ~40 GB).

Budgets (docs/CONTRACT.md §9): ≤ 1 GiB per worker, ≤ 2 GiB in all (parent + workers,
here the measured process tree), ≤ 2 GiB temp disk per worker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, _report_file, git_stamp, inputs, measure, ours_cmd, phases

WORK = BENCH / "_work" / "scale"
RESULTS = BENCH / "RESULTS.md"
GIB = 1 << 30


def _files(out: Path) -> dict[str, dict[str, float]]:
    res = {}
    for name in ("tile_index", "tile_bounds"):
        (folder,) = out.glob(f"data/layer1/1B/{name}/parameter_hash=*")
        sizes = [p.stat().st_size for p in folder.glob("part-*.parquet")]
        res[name] = {
            "files": len(sizes),
            "bytes": sum(sizes),
            "median_mb": sorted(sizes)[len(sizes) // 2] / 1e6,
            "max_mb": max(sizes) / 1e6,
        }
    return res


def run_one(res: float, workers: int, predicate: str, keep: bool) -> dict[str, Any]:
    inp = inputs(res)
    out = WORK / f"{res:g}arcsec"
    shutil.rmtree(out, ignore_errors=True)
    print(f"[{res:g}″] building with {workers} workers ...", flush=True)
    m = measure(ours_cmd(inp, out, predicate, workers), f"scale-{res:g}", WORK / f"{res:g}.log")
    report = json.loads(_report_file(out, "s1_run_report.json").read_text())
    pat = report["pat"]
    m.update(
        resolution=res,
        rows=report["rows_emitted"],
        grid=report["grid_dims"],
        pat=pat,
        files=_files(out),
        phases=phases(out),
        receipt=report["determinism_receipt"]["sha256_hex"],
    )
    m["rows_per_s"] = m["rows"] / m["wall_s"]
    if not keep:
        shutil.rmtree(out / "data", ignore_errors=True)
    print(json.dumps({k: v for k, v in m.items() if k != "pat"}, default=str), flush=True)
    return m


def _mib(v: float) -> str:
    return f"{v / 2**20:,.0f}"


def render(runs: list[dict[str, Any]], label: str, workers: int, predicate: str) -> str:
    base = runs[0]
    commit, when = git_stamp()
    lines = [
        "",
        f"### Scale on one machine: {label} (commit {commit}, {when})",
        "",
        f"`benchmarks/scale.py`: `tileindex build --workers {workers} --no-cache --predicate "
        f"{predicate}` on the world (Natural Earth 1:10m), one run per grid, measured from "
        "outside; RSS in all = the process tree's sampled peak. Ratios against the "
        f"{base['resolution']:g}″ run of the same session.",
        "",
        "| grid | cells | rows | wall s | CPU % (of 200) | load before | rows/s | "
        "rows/s vs base | parent peak MiB | "
        "vs base | worker peak MiB | tree peak MiB | temp disk/worker MiB | spill MiB | "
        "files/dataset | tile_index file MB (median) | tile_bounds file MB (median) | output GB |",
        "|---" * 18 + "|",
    ]
    for r in runs:
        pat, f = r["pat"], r["files"]
        cells = r["grid"]["nrows"] * r["grid"]["ncols"]
        lines.append(
            f"| {r['resolution']:g}″ | {cells:,} | {r['rows']:,} | {r['wall_s']:.1f} | "
            f"{100 * r['cpu_s'] / r['wall_s']:.0f} | {r['load1_before']:.1f} | "
            f"{r['rows_per_s'] / 1e6:.2f} M | {r['rows_per_s'] / base['rows_per_s']:.3f} | "
            f"{_mib(pat['main_rss_peak_bytes'])} | "
            f"{pat['main_rss_peak_bytes'] / base['pat']['main_rss_peak_bytes']:.2f} | "
            f"{_mib(pat['max_worker_rss_bytes'])} | {_mib(r['tree_rss_peak_bytes'])} | "
            f"{_mib(pat['temp_disk_worker_peak_bytes'])} | "
            f"{_mib(pat.get('spill_bytes_total', 0))} | {f['tile_index']['files']} | "
            f"{f['tile_index']['median_mb']:.1f} | {f['tile_bounds']['median_mb']:.1f} | "
            f"{(f['tile_index']['bytes'] + f['tile_bounds']['bytes']) / 1e9:.2f} |"
        )
    lines.append("")
    for r in runs:
        pat = r["pat"]
        ok = (
            pat["max_worker_rss_bytes"] <= GIB
            and r["tree_rss_peak_bytes"] <= 2 * GIB
            and pat["temp_disk_worker_peak_bytes"] <= 2 * GIB
        )
        ph = r["phases"]
        lines.append(
            f"- {r['resolution']:g}″: budgets {'met' if ok else 'NOT met'}; CPU "
            f"{r['cpu_s']:.0f} s; masking {ph['mask_worker_s']:.1f} worker-s over "
            f"{ph['units']} units, encoding {ph['encode_worker_s']:.1f} worker-s "
            f"(phase wall {ph['encode_phase_s']:.1f} s); receipt `{r['receipt'][:12]}…`."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", default="30,7.5,3")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--predicate", default="center")
    p.add_argument("--keep", action="store_true", help="keep the published data")
    p.add_argument("--record", metavar="LABEL")
    p.add_argument(
        "--render-only", action="store_true", help="render the last runs' results.json again"
    )
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    runs = []
    if args.render_only:
        runs = json.loads((WORK / "results.json").read_text())
    for res in () if args.render_only else (float(x) for x in args.resolutions.split(",")):
        runs.append(run_one(res, args.workers, args.predicate, args.keep))
        (WORK / "results.json").write_text(json.dumps(runs, indent=1, default=str))
    text = render(runs, args.record or "unrecorded", args.workers, args.predicate)
    print(text)
    if args.record:
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(text)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
