"""Atomic file writes: a file appears whole or not at all, and no temporary file outlives its writer.

Every temporary file is named .NAME.minigpt2-tmp-PID-RANDOM beside its target. It is removed on any
exception (KeyboardInterrupt included); one left by a killed process (SIGKILL, power loss) is swept by
the next write into the same folder, once its PID is no longer running.
"""
from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".minigpt2-tmp-"
TMP_RE = re.compile(r"^\..+" + re.escape(TMP_MARK) + r"(\d+)-[0-9a-f]{8}$")


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # e.g. EPERM: it exists, as someone else's
        return True
    return True


def sweep_stale(folder: Path) -> int:
    """Remove this tool's temporary files in folder whose writer is gone. Returns how many."""
    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        m = TMP_RE.match(e.name)
        if m and e.is_file(follow_symlinks=False) and not _alive(int(m.group(1))):
            try:
                os.unlink(e.path)
                n += 1
            except OSError:
                pass
    return n


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """with atomic_file(p) as tmp: write tmp; on a clean exit it becomes p (os.replace), else it is removed."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
