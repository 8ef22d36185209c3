"""Fault injection for resilience tests, read from the environment by the workers.

``TILEINDEX_FAULTS`` holds comma-separated faults ``SITE:ACTION:TARGET[:ATTEMPTS]``:

* SITE ``unit`` (masking a work unit, TARGET = unit id) or ``part`` (encoding a part
  file, TARGET = part index);
* ACTION ``raise`` (a RuntimeError), ``kill`` (SIGKILL to the worker process itself),
  ``enospc`` (an OSError "No space left on device" from the writer) or ``corrupt``
  (``part`` only: flip one byte of the written tile_index file after its checksum);
* ATTEMPTS: the fault fires on attempts 1..ATTEMPTS of that task (default 1).

Production runs never set it; a spawned worker inherits the parent's environment, so
the same setting reaches every executor.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from tileindex.errors import ConfigError

ENV = "TILEINDEX_FAULTS"
_SITES = ("unit", "part")
_ACTIONS = ("raise", "kill", "enospc", "corrupt")


@dataclass(frozen=True)
class Fault:
    site: str
    action: str
    target: int
    attempts: int = 1


def parse(spec: str) -> tuple[Fault, ...]:
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        bits = item.split(":")
        try:
            site, action, target = bits[0], bits[1], int(bits[2])
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


def _active(site: str, target: int, attempt: int, action: str | None = None) -> Fault | None:
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    for fault in parse(spec):
        if (
            fault.site == site
            and fault.target == target
            and attempt <= fault.attempts
            and (action is None or fault.action == action)
        ):
            return fault
    return None


def before(site: str, target: int, attempt: int) -> None:
    """Fire a ``raise``/``kill``/``enospc`` fault planned for this task attempt."""
    fault = _active(site, target, attempt)
    if fault is None or fault.action == "corrupt":
        return
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"injected at {site} {target}")
    raise RuntimeError(f"injected fault in {site} {target}, attempt {attempt}")


def corrupt_after_write(target: int, attempt: int, path: Path) -> None:
    """Flip a byte of ``path`` when a ``corrupt`` fault is planned for this part."""
    if _active("part", target, attempt, "corrupt") is None:
        return
    with path.open("r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
