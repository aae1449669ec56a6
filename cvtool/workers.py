"""Worker processes that stop when the process that started them dies.

A killed parent (SIGKILL, the OOM killer) cannot stop its loky workers; without
a watch they would finish their queued work and write files for minutes.  Folder
jobs (``cvtool.batch``) watch in every task; code that maps its own function
over a loky pool (R-CNN proposals, selective search's colour spaces, ``prepare``)
wraps it with :func:`call_watched`.  This module sits at the bottom of the
package (it imports only ``cvtool.io.atomic``), so core modules can use it
without importing the batch runner.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

PARENT_POLL_SECONDS = 0.5
_watched_parent: int | None = None
_watch_by_ppid = True


def _exit_orphaned() -> None:
    from cvtool.io.atomic import stop_writes

    stop_writes(None)  # delete this process's temp files; nothing new appears
    os._exit(1)


def _parent_gone(parent_pid: int, by_ppid: bool) -> bool:
    if by_ppid:  # re-parented: the usual and exact test
        return os.getppid() != parent_pid
    try:  # started through an intermediary (e.g. a fork server): is the PID still there?
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _parent_watchdog(parent_pid: int, by_ppid: bool) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if _parent_gone(parent_pid, by_ppid):
            _exit_orphaned()


def watch_parent(parent_pid: int) -> None:
    """In a worker process: exit now if ``parent_pid`` is gone, and watch it from then on.

    A killed parent (SIGKILL, OOM killer) cannot stop its workers; without this
    they would finish their queued images and idle for minutes.  A worker is
    re-parented when its parent dies, so ``os.getppid()`` changing is the
    portable signal.  Costs one ``getppid`` per task and a thread that wakes
    twice a second.  (Not ``prctl(PR_SET_PDEATHSIG)``: it fires when the
    *thread* that spawned the worker exits, and loky may spawn from a helper
    thread.)
    """
    global _watched_parent, _watch_by_ppid
    if _watched_parent == parent_pid:
        if _parent_gone(parent_pid, _watch_by_ppid):
            _exit_orphaned()
        return
    if os.getpid() == parent_pid:  # not in a worker
        return
    by_ppid = os.getppid() == parent_pid
    if _parent_gone(parent_pid, by_ppid):
        _exit_orphaned()
    _watched_parent, _watch_by_ppid = parent_pid, by_ppid
    threading.Thread(target=_parent_watchdog, args=(parent_pid, by_ppid), name="cvtool-parent-watch",
                     daemon=True).start()


def call_watched(func: Callable[..., Any], parent_pid: int, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in a worker process that exits when ``parent_pid`` dies.

    For code that maps its own function with joblib's loky backend (``run_batch``
    does this itself): ``delayed(call_watched)(func, os.getpid(), *args)``.
    """
    watch_parent(parent_pid)
    return func(*args, **kwargs)
