"""SIGINT and SIGTERM around file writes: a critical section (renames, a rollback) is never cut in half.

Masking the signals would not do: pthread_sigmask blocks them in the calling thread only, and once
OpenBLAS (or any library) has started threads, the kernel hands a process-directed SIGTERM to one of
those, and Python then runs its handler in the main thread anyway, in the middle of the renames. So
`guarded()` installs a Python-level handler instead, for SIGINT and SIGTERM, in the main thread:

- outside `held()`, the first signal acts at once, as it would have (the previous handler runs, e.g.
  KeyboardInterrupt or the command line's Terminated, so the cleanup in `finally` blocks runs); every
  later signal is then only recorded, so the cleanup it started is not cut short either;
- inside `held()`, a signal is recorded, and acted on when the outermost held block ends.

A signal whose previous handler was the default action (SIGTERM in a plain Python program) raises
Signalled through the cleanup instead, and is re-raised with the default action (the process dies of
it, exit status as before) when the outermost `guarded()` block has restored the handlers. Outside the
main thread, where Python cannot install handlers, both are no-ops.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Signalled(BaseException):
    """A signal whose default action is to end the process: raised so that cleanups run, then re-raised."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Guard:
    def __init__(self):
        self.depth = 0          # nested guarded() blocks
        self.holding = 0        # nested held() blocks
        self.pending: int | None = None
        self.acted = False      # a signal has acted: later ones are only recorded
        self.previous: dict = {}

    def on_signal(self, signum, frame):
        if self.holding or self.acted:
            if self.pending is None and not self.acted:
                self.pending = signum
            return
        self.act(signum)

    def act(self, signum: int) -> None:
        self.acted, self.pending = True, None
        handler = self.previous.get(signum)
        if callable(handler):
            handler(signum, None)           # e.g. raise KeyboardInterrupt, or the command line's Terminated
        elif handler != signal.SIG_IGN:     # SIG_DFL, or a handler not set from Python
            raise Signalled(signum)


_guard = _Guard()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def guarded() -> Iterator[None]:
    """Signals act as described above until the block ends (re-entrant; a no-op outside the main thread)."""
    if not _main_thread():
        yield
        return
    g = _guard
    if g.depth == 0:
        g.pending, g.acted = None, False
        g.previous = {s: signal.signal(s, g.on_signal) for s in SIGNALS}
    g.depth += 1
    try:
        yield
    except Signalled as e:
        if g.depth == 1:
            _restore(g)
            signal.raise_signal(e.signum)   # the default action: the process ends of this signal
        raise
    finally:
        g.depth -= 1
        if g.depth == 0 and g.previous:
            pending = g.pending
            _restore(g)
            if pending is not None and not g.acted:
                g.acted = True
                signal.raise_signal(pending)    # the previous handler (now back in place) acts on it


def _restore(g: _Guard) -> None:
    for s, handler in g.previous.items():
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    g.previous = {}


@contextmanager
def held() -> Iterator[None]:
    """A critical section: SIGINT/SIGTERM arriving inside it are acted on only when it ends."""
    if not _main_thread():
        yield
        return
    with guarded():
        g = _guard
        g.holding += 1
        try:
            yield
        finally:
            g.holding -= 1
            if g.holding == 0 and g.pending is not None and not g.acted:
                g.act(g.pending)
