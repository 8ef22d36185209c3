"""Compare the cells of two tile_index datasets country by country.

    python benchmarks/diff.py A_TILE_INDEX_DIR B_TILE_INDEX_DIR [--countries CH,NL]

For each country: rows on each side and cells only in A (``only_a``) or only in B
(``only_b``); their sum is the symmetric difference. Both datasets are sorted by
(country_iso, tile_id), so both are streamed once, a country at a time, in memory
O(largest country), and compared with a sorted search. Also says which part files
are byte-identical.
"""

from __future__ import annotations

import argparse
import filecmp
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def _countries(folder: Path, keep: set[str] | None) -> Iterator[tuple[str, np.ndarray]]:
    """(code, sorted tile ids) per country, in dataset order."""
    code: str | None = None
    parts: list[np.ndarray] = []
    for f in sorted(folder.glob("*.parquet")):
        pf = pq.ParquetFile(f, read_dictionary=["country_iso"])
        for rg in range(pf.metadata.num_row_groups):
            st = pf.metadata.row_group(rg).column(0).statistics
            pruned = keep is not None and st is not None and st.has_min_max
            if pruned and not any(st.min <= k <= st.max for k in keep):
                continue
            t = pf.read_row_group(rg, columns=["country_iso", "tile_id"])
            iso = t.column(0).combine_chunks()
            ids = t.column(1).to_numpy()
            names = iso.dictionary.to_pylist()
            idx = iso.indices.to_numpy()
            cut = np.flatnonzero(idx[1:] != idx[:-1]) + 1
            for lo, hi in zip(np.r_[0, cut], np.r_[cut, idx.size], strict=True):
                name = names[int(idx[lo])]
                if name != code:
                    if code is not None and (keep is None or code in keep):
                        yield code, np.concatenate(parts)
                    code, parts = name, []
                if keep is None or name in keep:
                    parts.append(ids[lo:hi])
    if code is not None and (keep is None or code in keep):
        yield code, np.concatenate(parts) if parts else np.empty(0, np.uint64)


def _only(sorted_a: np.ndarray, b: np.ndarray) -> int:
    """How many values of b are not in sorted_a (both unique)."""
    if sorted_a.size == 0:
        return int(b.size)
    i = np.searchsorted(sorted_a, b)
    i[i == sorted_a.size] = 0
    return int(np.count_nonzero(sorted_a[i] != b))


def compare(a: Path, b: Path, countries: list[str] | None = None) -> dict[str, dict[str, int]]:
    keep = set(countries) if countries else None
    empty = np.empty(0, np.uint64)
    ia, ib = _countries(a, keep), _countries(b, keep)
    na, nb = next(ia, None), next(ib, None)
    out = {}
    while na is not None or nb is not None:
        code = min(x[0] for x in (na, nb) if x is not None)
        ta = na[1] if na is not None and na[0] == code else empty
        tb = nb[1] if nb is not None and nb[0] == code else empty
        oa, ob = _only(tb, ta), _only(ta, tb)
        out[code] = {
            "rows_a": int(ta.size),
            "rows_b": int(tb.size),
            "only_a": oa,
            "only_b": ob,
            "sym_diff": oa + ob,
        }
        if na is not None and na[0] == code:
            na = next(ia, None)
        if nb is not None and nb[0] == code:
            nb = next(ib, None)
    return out


def identical_files(a: Path, b: Path) -> dict[str, int]:
    names = sorted({p.name for p in a.glob("*.parquet")} | {p.name for p in b.glob("*.parquet")})
    same = sum(
        1
        for n in names
        if (a / n).exists() and (b / n).exists() and filecmp.cmp(a / n, b / n, shallow=False)
    )
    return {"files": len(names), "byte_identical": same}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--countries", help="comma-separated codes (default: all)")
    args = p.parse_args()
    res = compare(args.a, args.b, args.countries.split(",") if args.countries else None)
    total = {k: sum(r[k] for r in res.values()) for k in ("rows_a", "rows_b", "only_a", "only_b")}
    differing = {k: v for k, v in res.items() if v["sym_diff"]}
    print(
        json.dumps(
            {
                "total": total,
                "files": identical_files(args.a, args.b),
                "differing": differing,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
