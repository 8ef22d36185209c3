"""Durable file operations: atomic writes, fsync of files, folders and trees, digests.

Every file the package writes for a reader (evidence, inputs, cache entries, maps,
metrics) goes through :func:`write_atomic`: a hidden temp name in the same folder,
fsync, one rename, fsync of the folder. A killed process leaves at most a
``.NAME.*.tmp`` file, never a partial ``NAME``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "iter_tree",
    "make_dirs",
    "sha256_file",
    "write_atomic",
]

_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries durable; a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def iter_tree(root: Path) -> Iterator[tuple[Path, bool]]:
    """Every entry of ``root`` and below as ``(path, is_dir)``, children before their folder."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            yield Path(dirpath) / name, False
        yield Path(dirpath), True


def fsync_tree(root: Path) -> None:
    for path, is_dir in iter_tree(root):
        if is_dir:
            fsync_dir(path)
        else:
            fsync_file(path)


def make_dirs(path: Path) -> None:
    """``mkdir -p``, fsyncing the parent of every folder it creates so the entries last."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        fsync_dir(d.parent)


def write_atomic(path: Path, data: bytes | Callable[[Path], None]) -> None:
    """Write ``data`` (bytes, or a function that writes the file it is given) to ``path``
    atomically and durably; the parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            # os.open with 0o666 lets the umask decide the final mode, as open() would
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
