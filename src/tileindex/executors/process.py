"""Spawn process pools whose workers never outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

# how often a worker's watchdog looks for its parent when it has no parent sentinel
POLL_SECONDS = 0.5
# a worker that lost its parent exits with this status (nobody is left to read it)
ORPHAN_EXIT = 70
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each exiting when this process dies.

    spawn: workers start clean (no inherited locks or GEOS state) on every OS.
    """
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: make this process exit when ``parent_pid`` dies.

    A parent killed with SIGKILL (or by the OOM killer) runs no clean-up, and a pool
    worker blocked on its call queue would wait for ever, reparented to init. On Linux
    the kernel signals the worker at once (``PR_SET_PDEATHSIG``); everywhere a daemon
    thread also watches the parent and ends the process when it goes. Once the workers
    are gone the multiprocessing resource tracker reads EOF on its pipe and exits too.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(ORPHAN_EXIT)
    watchdog = threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="tileindex-parent-watch", daemon=True
    )
    watchdog.start()


def _watch_parent(parent_pid: int) -> None:
    # a spawned child holds a sentinel that becomes ready when its parent exits (a pipe
    # on POSIX, a process handle on Windows); the ppid check covers other start methods
    parent = multiprocessing.parent_process()
    while True:
        if parent is not None:
            parent.join(POLL_SECONDS)
            if not parent.is_alive():
                os._exit(ORPHAN_EXIT)
        else:
            threading.Event().wait(POLL_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(ORPHAN_EXIT)
