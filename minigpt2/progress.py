"""Progress on stderr: tqdm's bars where someone watches (a terminal, or a notebook with ipywidgets), else
nothing, or for a long job a plain line every ~10% with its time so far and what is left.

tqdm.auto in a notebook without ipywidgets warns "IProgress not found" and falls back to text bars; here
the fallback is quiet: a notebook without ipywidgets gets tqdm's text bars, without the warning.
"""
from __future__ import annotations

import sys
import time


def _bar_class():
    """tqdm.auto's bar where ipywidgets can draw it, else tqdm.std's (no IProgress warning)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm
        return tqdm
    from tqdm.auto import tqdm
    return tqdm


def _watched() -> bool:
    """Whether a bar would be seen: stderr is a terminal, or this is a notebook's kernel."""
    if getattr(sys.stderr, "isatty", lambda: False)():
        return True
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and "IPKernelApp" in shell.get_ipython().config
    except Exception:
        return False


def tqdm(*args, **kwargs):
    """tqdm(...), shown only where watched (see _watched), and never with the IProgress warning."""
    kwargs["disable"] = kwargs.get("disable", False) or not _watched()
    return _bar_class()(*args, **kwargs)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def steps(items: list, desc: str, unit: str, progress: bool = True, out=None):
    """Yield items, telling stderr (out) how it goes when progress: a bar where watched; else, after the
    first item, an estimate of the whole, then a line every ~10%. For jobs of minutes (total effects)."""
    n = len(items)
    if not progress or n == 0:
        yield from items
        return
    if _watched() and out is None:
        yield from tqdm(items, desc=desc, unit=unit, leave=False)
        return
    out = out or sys.stderr
    start, step, last = time.perf_counter(), max(1, -(-n // 10)), 0
    for i, x in enumerate(items, 1):
        yield x
        took = time.perf_counter() - start
        if i == 1 and n > 1:
            print(f"{desc}: {n} {unit}s, about {duration(took * n)} (from the first)", file=out, flush=True)
        elif i - last >= step or i == n:
            last = i
            print(f"{desc}: {i} of {n} {unit}s ({100 * i // n}%), {duration(took)}, about "
                  f"{duration(took / i * (n - i))} left", file=out, flush=True)
