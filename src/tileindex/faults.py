"""Fault injection for resilience tests, read from the environment by the workers.

``TILEINDEX_FAULTS`` holds comma-separated faults ``SITE:ACTION:TARGET[:ATTEMPTS]``:

* SITE ``unit`` (masking a work unit, TARGET = unit id) or ``part`` (encoding a part
  file, TARGET = part index); TARGET ``*`` means every unit or part;
* ACTION ``raise`` (a RuntimeError), ``kill`` (SIGKILL to the worker process itself),
  ``enospc`` (an OSError "No space left on device" from the writer), ``sleep`` (the
  task first sleeps :data:`SLEEP_SECONDS`, to keep a build busy) or ``corrupt``
  (``part`` only: flip one byte of the written tile_index file after its checksum);
* ATTEMPTS: the fault fires on attempts 1..ATTEMPTS of that task (default 1).

Production runs never set it; a spawned worker inherits the parent's environment, so
the same setting reaches every executor. Each process parses a setting once: a task
costs one environment look-up when no fault is set.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tileindex.errors import ConfigError

ENV = "TILEINDEX_FAULTS"
SLEEP_SECONDS = 2.0
ANY_TARGET = -1  # TARGET ``*``
_SITES = ("unit", "part")
_ACTIONS = ("raise", "kill", "enospc", "sleep", "corrupt")


@dataclass(frozen=True)
class Fault:
    site: str
    action: str
    target: int  # ANY_TARGET: every target
    attempts: int = 1

    def fires(self, site: str, target: int, attempt: int) -> bool:
        return (
            self.site == site and self.target in (target, ANY_TARGET) and attempt <= self.attempts
        )


def parse(spec: str) -> tuple[Fault, ...]:
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        bits = item.split(":")
        try:
            site, action = bits[0], bits[1]
            target = ANY_TARGET if bits[2] == "*" else int(bits[2])
            attempts = int(bits[3]) if len(bits) > 3 else 1
        except (IndexError, ValueError):
            raise ConfigError(
                f"{ENV}: cannot read fault {item!r}; write SITE:ACTION:TARGET[:ATTEMPTS]"
            ) from None
        if site not in _SITES or action not in _ACTIONS:
            raise ConfigError(
                f"{ENV}: fault {item!r} needs a site in {_SITES} and an action in {_ACTIONS}"
            )
        faults.append(Fault(site, action, target, attempts))
    return tuple(faults)


@functools.lru_cache(maxsize=4)
def _planned(spec: str) -> tuple[Fault, ...]:
    # keyed by the setting itself, so a process that changes it (a test) still sees it
    return parse(spec)


def _firing(site: str, target: int, attempt: int) -> list[Fault]:
    spec = os.environ.get(ENV)
    if not spec:
        return []
    return [f for f in _planned(spec) if f.fires(site, target, attempt)]


def before(site: str, target: int, attempt: int) -> None:
    """Fire the ``sleep``/``raise``/``kill``/``enospc`` faults planned for this task
    attempt, in the order the setting lists them."""
    for fault in _firing(site, target, attempt):
        if fault.action == "sleep":
            time.sleep(SLEEP_SECONDS)
        elif fault.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault.action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"injected at {site} {target}")
        elif fault.action == "raise":
            raise RuntimeError(f"injected fault in {site} {target}, attempt {attempt}")


def corrupt_after_write(target: int, attempt: int, path: Path) -> None:
    """Flip a byte of ``path`` when a ``corrupt`` fault is planned for this part."""
    if not any(f.action == "corrupt" for f in _firing("part", target, attempt)):
        return
    with path.open("r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
