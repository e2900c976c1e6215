"""Atomic file writes: a file appears whole or not at all, and no temporary file outlives its writer.

Every temporary file is named .NAME.minigpt2-tmp-PID-RANDOM beside its target. It is removed on any
exception (KeyboardInterrupt included); one left by a killed process (SIGKILL, power loss) is swept by
the next write into the same folder, once its PID is no longer running.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
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
        _readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _readable(tmp: Path) -> None:
    """An ordinary file's mode (0666 less the umask): some writers create theirs private (0600)."""
    os.chmod(tmp, 0o666 & ~_umask())


@contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM wait until the block is done (a few renames), so it is never cut in half."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_files(folder: Path, files: dict, after=None) -> None:
    """Write {name: write(path)} into folder as one unit: every file to a temporary first; then all are
    renamed into place with SIGINT/SIGTERM deferred; if a rename fails, the files replaced so far are
    restored from hard-link backups. On any failure the folder holds what it held before.

    after(): runs inside the same protected block after the renames (e.g. a manifest's final write).
    """
    for name in files:
        target = folder / name
        if target.exists() and not target.is_file():
            from .errors import OutputError
            raise OutputError(f"{target} is a folder, not a file; remove it or choose another folder")
    temps: dict[str, Path] = {}
    backups: dict[str, Path] = {}
    done: list[str] = []
    try:
        for name, write in files.items():
            temps[name] = tmp_path(folder / name)
            write(temps[name])
            _readable(temps[name])
        with _signals_deferred():
            try:
                for name in files:
                    target = folder / name
                    if target.is_symlink() or target.is_file():          # a link is kept as a link
                        backups[name] = tmp_path(target)
                        try:
                            os.link(target, backups[name], follow_symlinks=False)
                        except OSError:                          # no hard links here: a copy will do
                            shutil.copy2(target, backups[name], follow_symlinks=False)
                    os.replace(temps[name], target)
                    done.append(name)
                if after is not None:
                    after()
            except BaseException:
                for name in reversed(done):                      # put the earlier files back
                    if name in backups:
                        os.replace(backups.pop(name), folder / name)
                    else:
                        os.unlink(folder / name)
                raise
    finally:
        for p in (*temps.values(), *backups.values()):
            try:
                os.unlink(p)
            except OSError:
                pass
