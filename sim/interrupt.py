"""Ctrl-C and SIGTERM for cascadelab's commands: they stop the work, and nothing that
looks complete is left behind.

The handler raises KeyboardInterrupt, so the work unwinds and staged result folders
are removed (`sim.results.staged`). Python cannot always deliver that exception: a
signal handler runs wherever the interpreter is, and an exception raised inside a
weakref callback or a ``__del__`` is printed as "Exception ignored" and dropped (seen
during the imports at a run's start, in importlib's module cache), and a library may
turn it into its own error (numba's compiler while it fills a cold cache). So the
handler also sets `INTERRUPTED`, and `check` raises again at the work's safe points:
after the command line's imports, after each simulated step and before a result folder
is committed. Python's "Exception ignored" report of such a dropped interruption is
left out (a traceback would look like a crash).
"""

from __future__ import annotations

import signal
import sys
import threading

#: Set once SIGTERM or Ctrl-C arrived in a process that called `install`.
INTERRUPTED = threading.Event()


def install() -> None:
    """Make SIGTERM and SIGINT interrupt the work; only from the main thread (Python
    delivers signals there), elsewhere nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        sys.unraisablehook = _unraisable


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Python's report of an exception it had to drop, without the traceback of an
    interruption `INTERRUPTED` remembers (the user pressed Ctrl-C; nothing is wrong)."""
    if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and INTERRUPTED.is_set()):
        sys.__unraisablehook__(unraisable)


def check() -> None:
    """Raise KeyboardInterrupt if an interruption arrived, even one that was swallowed."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _interrupt(signum: int, frame: object) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt
