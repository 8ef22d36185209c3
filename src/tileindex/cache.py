"""On-disk cache of masked units: run-length masks keyed by what determines them.

A unit's runs depend only on the country geometry, the grid, the predicate and the
unit's windows (and the kernel's exactness contract) — not on the parameter hash, the
output root or the worker. A rebuild that changes only unrelated parameters (a new
parameter hash from an orchestrator) reuses them instead of recomputing exact boundary
decisions. Entries are checksummed; a corrupt entry is deleted and recomputed. The
cache is bounded in bytes; the least recently used entries go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tileindex.fsio import write_atomic
from tileindex.grid import Grid, MaskCounts, Runs, Window

log = logging.getLogger(__name__)

# bump when a change to the engines could change any unit's cells
CACHE_FORMAT = "tileindex-mask-cache/1"
DEFAULT_MAX_BYTES = 2 * 1024**3


def default_cache_dir() -> Path:
    env = os.environ.get("TILEINDEX_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tileindex" / "masks"


def unit_key(geometry_digest: str, grid: Grid, predicate: str, windows: Sequence[Window]) -> str:
    doc = {
        "format": CACHE_FORMAT,
        "geometry": geometry_digest,
        "grid": grid.to_json(),
        "predicate": predicate,
        "windows": [[w.row_start, w.row_stop, w.col_start, w.col_stop] for w in windows],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _digest(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class MaskCache:
    """A folder of ``<key>.npz`` entries (see module doc)."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[Runs, MaskCounts] | None:
        """The unit's runs and counts stored under ``key``, or None (missing, corrupt)."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = [z["row"], z["col0"], z["col1"], z["counts"]]
                stored = str(z["sha256"])
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        except Exception as exc:  # a torn or tampered file: recompute
            log.warning("mask cache entry %s unreadable (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return None
        if _digest(arrays) != stored:
            log.warning("mask cache entry %s fails its checksum; recomputing", path)
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used (a read-only cache still serves)
        row, col0, col1, counts = arrays
        return Runs.of(row, col0, col1), MaskCounts(*(int(n) for n in counts))

    def put(self, key: str, runs: Runs, counts: MaskCounts) -> None:
        """Store an entry; the cache is an optimisation, so a folder that cannot be
        written (read-only, full) only costs the reuse, never the build."""
        try:
            self._put(key, runs, counts)
        except OSError as exc:
            log.warning("mask cache %s not writable (%s); continuing without it", self.root, exc)

    def _put(self, key: str, runs: Runs, counts: MaskCounts) -> None:
        numbers = np.array(
            [counts.cells_visited, counts.cells_included, counts.cells_excluded_hole],
            dtype=np.int64,
        )
        arrays = [runs.row, runs.col0, runs.col1, numbers]
        buf = io.BytesIO()
        np.savez(
            buf,
            row=runs.row,
            col0=runs.col0,
            col1=runs.col1,
            counts=numbers,
            sha256=np.array(_digest(arrays)),
        )
        write_atomic(self._path(key), buf.getvalue())

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/*.npz"))

    def evict(self) -> int:
        """Remove least recently used entries until the cache fits; returns how many
        (0 when the folder is missing or read-only)."""
        entries = []
        for p in self.root.glob("*/*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, p.name, st.st_size, p))
        total = sum(e[2] for e in entries)
        removed = 0
        for _, _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                path.unlink(missing_ok=True)
            except OSError:
                break
            total -= size
            removed += 1
        return removed
