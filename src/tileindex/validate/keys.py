"""Keys: ``(country_iso, tile_id)`` unique and ascending across the partition, every code
in the ISO list, tile_index and tile_bounds holding the same keys in the same order; and
what each country's rows add up to (count, digest, tile id range) for the evidence and
the recount. In region mode the key column has another name and the keys ascend by
their UTF-8 bytes (docs/CONTRACT.md §10.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tileindex.validate.axes import IntArray, U64Array
from tileindex.validate.findings import E003, E005, Checks


@dataclass
class CountryRows:
    """One country's rows so far: count, SHA-256 of the tile ids in order, tile id range."""

    count: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    tile_min: int | None = None
    tile_max: int | None = None

    def add(self, ids: U64Array) -> None:
        self.count += int(ids.size)
        self.sha.update(np.ascontiguousarray(ids, dtype="<u8").data)
        lo, hi = int(ids.min()), int(ids.max())
        self.tile_min = lo if self.tile_min is None else min(self.tile_min, lo)
        self.tile_max = hi if self.tile_max is None else max(self.tile_max, hi)


class KeyChecks:
    """The key checks over the rows as they stream past, batch by batch."""

    def __init__(
        self,
        c: Checks,
        iso_codes: Iterable[str],
        key_column: str = "country_iso",
        key_list: str = "ISO list",
    ) -> None:
        self.c = c
        self.iso_set = frozenset(iso_codes)
        self.key_column = key_column
        self.key_list = key_list
        self.code_ids: dict[str, int] = {}
        self.codes: list[str] = []  # codes[i] is the code of id i
        # the last key seen, with the code as UTF-8 bytes: keys ascend bytewise
        self.last: tuple[bytes, int] | None = None
        self.last_code = ""
        self.foreign: dict[str, int] = {}
        self.rows: dict[str, CountryRows] = {}
        self.row_count = 0

    def ids_of(self, arr: pa.Array) -> IntArray:
        """Per-row ids of the codes of a dictionary array (null -> the code "")."""
        values = arr.dictionary.cast(pa.string()).to_pylist()
        lut = np.array([self._id(v or "") for v in values] or [0], dtype=np.int64)
        indices = arr.indices
        if indices.null_count:
            values.append("")
            lut = np.append(lut, self._id(""))
            indices = pc.fill_null(indices, len(values) - 1)
        return lut[indices.to_numpy(zero_copy_only=False)]

    def _id(self, code: str) -> int:
        got = self.code_ids.get(code)
        if got is None:
            got = self.code_ids[code] = len(self.codes)
            self.codes.append(code)
        return got

    def index(self, ids: IntArray, tid: U64Array) -> None:
        """The keys of a tile_index batch: runs of one code, codes ascending, tile ids
        ascending within a run, continuing from the previous batch."""
        c = self.c
        n = ids.size
        self.row_count += n
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        same = ids[1:] == ids[:-1]
        for name, bad, what in (
            ("key unique", same & (tid[1:] == tid[:-1]), "duplicate key"),
            ("key order", same & (tid[1:] < tid[:-1]), "key out of order"),
        ):
            if bad.any():
                k = np.flatnonzero(bad)
                i = int(k[0]) + 1
                code = self.codes[ids[i]]
                c.fail(
                    name,
                    E003,
                    f"{what}: ({self.key_column}={code}, tile_id={int(tid[i])}) after tile_id "
                    f"{int(tid[i - 1])}",
                    code,
                    int(tid[i]),
                    count=int(k.size),
                )
        for s, t in zip(
            np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [n])).tolist(), strict=True
        ):
            code = self.codes[ids[s]]
            key = (code.encode("utf-8"), int(tid[s]))
            if self.last is not None and key <= self.last:
                name = "key unique" if key == self.last else "key order"
                c.fail(
                    name,
                    E003,
                    f"key {(code, key[1])} comes after {(self.last_code, self.last[1])}"
                    + (" (keys ascend by their UTF-8 bytes)" if key[0] < self.last[0] else ""),
                    code,
                    key[1],
                )
            self.last, self.last_code = (key[0], int(tid[t - 1])), code
            if code not in self.iso_set:
                self.foreign[code] = self.foreign.get(code, 0) + (t - s)
            self.rows.setdefault(code, CountryRows()).add(tid[s:t])

    def same_keys(
        self, index_ids: IntArray, index_tid: U64Array, ids: IntArray, tid: U64Array
    ) -> None:
        """A tile_bounds batch's keys against those of the tile_index rows it pairs with
        (the tile_index batch was counted already)."""
        differ = (ids != index_ids) | (tid != index_tid)
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            self.c.fail(
                "same keys in both datasets",
                E003,
                f"row {self.row_count - ids.size + i}: tile_index has key "
                f"({self.codes[index_ids[i]]}, {int(index_tid[i])}), tile_bounds "
                f"({self.codes[ids[i]]}, {int(tid[i])})",
                self.codes[index_ids[i]],
                int(index_tid[i]),
                count=int(np.count_nonzero(differ)),
            )

    def finish(self, extra_index: int, extra_bounds: int) -> None:
        """After the last batch: rows one dataset has beyond the other, foreign codes."""
        if extra_index or extra_bounds:
            self.c.fail(
                "same keys in both datasets",
                E003,
                f"tile_index has {extra_index} row(s) more and tile_bounds {extra_bounds} row(s) "
                "more than the other: the datasets must hold the same keys",
            )
        for code, n in sorted(self.foreign.items()):
            self.c.fail(
                "iso foreign key",
                E005,
                f"{n} row(s) with {self.key_column} {code!r}, which is not in the {self.key_list}",
                code,
            )
