"""Atomic file writes: a file appears whole or not at all, and no temporary file outlives its writer.

Every temporary file is named .NAME.minigpt2-tmp-RANDOM beside its target, and its writer holds an
flock on it from the moment it exists until it is renamed or removed. It is removed on any exception
(KeyboardInterrupt included); one left by a killed process (SIGKILL, power loss) is swept by a later
write or cache load in the same folder: a temporary is stale exactly when no process holds its lock.
That holds across PID namespaces and containers sharing the folder, where PIDs mean nothing.

Stage writes several files as one unit, relative to a held folder (minigpt2.folder): every file to a
temporary first; then, with signals held (minigpt2.signals), the temporaries are renamed into place and
the files to drop moved aside; if any step fails, every step is undone from hard-link backups. A write
that fails says which file and why, e.g. "no space left on device".
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .folder import NOFOLLOW, NONBLOCK, Folder
from .signals import guarded, held

TMP_MARK = ".minigpt2-tmp-"
# this version's names, and the PID-RANDOM ones an older minigpt2 left
TMP_RE = re.compile(r"\..+" + re.escape(TMP_MARK) + r"([0-9a-f]{16}|\d+-[0-9a-f]{8})\Z")

try:
    import fcntl
except ImportError:         # no flock (Windows): temporaries are never swept
    fcntl = None


def _flock(fd: int, wait: bool) -> bool:
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if wait:                    # no flock here (some network file systems): unlocked, never swept by us
            return True
        return False                # cannot tell whether its writer lives: keep it


def _claim(folder: Folder, make: Callable[[str], int | None], base: str) -> tuple[str, int | None]:
    """A new temporary name beside base, made by make(name), locked: (name, fd). make returns the new file
    open (a new, empty file: its lock is waited for, as only a sweeper can hold it, briefly), or None (a
    new name for an existing file: locked if free; if a writer, this one included, holds it, it is not
    stale either). fd is None where it cannot be opened to lock (a symbolic link): never swept."""
    while True:
        name = f".{base}{TMP_MARK}{secrets.token_hex(8)}"
        fd = make(name)
        wait = fd is not None
        if fd is None:
            try:
                fd = folder.open(name, os.O_RDONLY | NOFOLLOW | NONBLOCK)
            except OSError:
                return name, None
        _flock(fd, wait)
        if folder.is_same(name, fd):
            return name, fd
        os.close(fd)                            # swept before we locked it: another name


def new_temp(folder: Folder, base: str) -> tuple[str, int]:
    """An empty temporary file for base (mode 0666 less the umask), open and locked: (name, fd)."""
    return _claim(folder, lambda n: folder.open(n, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW), base)


def sweep_stale(folder: Folder | str | Path) -> int:
    """Remove this tool's temporary files in folder that no process holds locked. Returns how many.
    Links, folders and anything else named like them stay; so does all else in the folder."""
    if not isinstance(folder, Folder):
        try:
            with Folder(folder) as f:
                return sweep_stale(f)
        except OSError:
            return 0
    n = 0
    try:
        names = folder.names()
    except OSError:
        return 0
    for name in names:
        if not TMP_RE.match(name):
            continue
        try:
            fd = folder.open(name, os.O_RDONLY | NOFOLLOW | NONBLOCK)
        except OSError:                 # a link (ELOOP), gone, or not ours to read
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and _flock(fd, wait=False) and folder.is_same(name, fd):
                folder.unlink(name)
                n += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return n


def _named(e: OSError, path: Path, folder: Folder) -> OSError:
    """e as an OutputError that names path and says why, for a write that failed (a full disk included:
    numpy's "102912 requested and 82912 written" has no errno)."""
    from .errors import OutputError

    reason = e.strerror
    if e.errno is None and "requested and" in str(e):
        try:
            st = os.statvfs(folder.fd if folder.fd is not None else folder.path)
            full = st.f_bavail * st.f_frsize < 1 << 20
        except OSError:
            full = False
        reason = f"{os.strerror(errno.ENOSPC) if full else 'short write'} ({e})"
    return OutputError(f"cannot write {path}: {reason or e}")


class Stage:
    """with Stage(folder) as s: s.add(name, write)... then s.commit(steps). Leaving the block removes every
    temporary and backup still there, so a failure anywhere leaves the folder as it was."""

    def __init__(self, folder: Folder):
        self.folder = folder
        self.temps: list[tuple[str, str, int]] = []     # (target name, temporary name, locked fd)
        self.backups: dict[str, tuple[str, int]] = {}   # target name -> (backup name, locked fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with held():
            for _, tmp, fd in self.temps:
                self._drop(tmp, fd)
            for bak, fd in self.backups.values():
                self._drop(bak, fd)
            self.temps, self.backups = [], {}

    def _drop(self, name: str, fd: int | None) -> None:
        try:
            if fd is None or self.folder.is_same(name, fd):
                self.folder.unlink(name)
        except OSError:
            pass
        if fd is not None:
            os.close(fd)

    def add(self, name: str, write: Callable[[Path], None]) -> int:
        """write(path) a temporary for name. Returns its step number for commit()."""
        try:
            tmp, fd = new_temp(self.folder, name)
            self.temps.append((name, tmp, fd))
            write(self.folder.at(tmp))
            if not self.folder.is_same(tmp, fd):    # the writer made a new file in its place (safetensors does)
                fd = self._relock(len(self.temps) - 1)
            os.fchmod(fd, 0o666 & ~_umask())     # some writers make theirs private (0600)
        except OSError as e:
            raise _named(e, self.folder.path / name, self.folder) from None
        return len(self.temps) - 1

    def _relock(self, i: int) -> int:
        name, tmp, old = self.temps[i]
        fd = self.folder.open(tmp, os.O_RDONLY | NOFOLLOW | NONBLOCK)
        _flock(fd, wait=True)
        self.temps[i] = (name, tmp, fd)
        os.close(old)
        return fd

    def path(self, step: int) -> Path:
        """Where the temporary of step can be read."""
        return self.folder.at(self.temps[step][1])

    def commit(self, steps: list[int | str]) -> None:
        """Do steps in order (an int: rename that temporary into place; a str: move that file aside, removed
        once the commit is done) as one unit: if one fails, all are undone, and the error names the file."""
        f = self.folder
        done: list[tuple[str, bool, bool]] = []     # (name, had a backup, a temporary renamed in)
        with held():
            try:
                for step in steps:
                    name = self.temps[step][0] if isinstance(step, int) else step
                    if name not in self.backups and f.lstat(name) is not None:
                        self.backups[name] = self._backup(name)
                    had = name in self.backups
                    try:
                        if isinstance(step, int):
                            f.replace(self.temps[step][1], name)
                        elif had:
                            f.unlink(name)          # its backup keeps it until the commit is done
                    except OSError as e:
                        raise _named(e, f.path / name, f) from None
                    done.append((name, had, isinstance(step, int)))
            except BaseException:
                for name, had, renamed in reversed(done):
                    try:
                        bak = self.backups[name][0] if had else None
                        if bak is not None and f.lstat(bak) is not None:
                            f.replace(bak, name)            # the earlier file, back in place
                        elif renamed and not had:
                            f.unlink(name)                  # a new file: gone again
                    except OSError:
                        pass
                raise

    def _backup(self, name: str) -> tuple[str, int | None]:
        """name under a locked temporary name: a hard link (a symbolic link is kept as a link), else a copy."""
        f = self.folder
        try:
            return _claim(f, lambda n: f.link(name, n), name)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV):
                raise _named(e, f.path / name, f) from None
        st = f.lstat(name)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(f._n(name), dir_fd=f.fd)
            return _claim(f, lambda n: os.symlink(target, f._n(n), dir_fd=f.fd), name)
        tmp, fd = new_temp(f, name)
        try:
            with os.fdopen(f.open(name, os.O_RDONLY | NOFOLLOW | NONBLOCK), "rb") as src, \
                    os.fdopen(os.dup(fd), "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        except BaseException as e:
            self._drop(tmp, fd)
            if isinstance(e, OSError):
                raise _named(e, f.path / name, f) from None
            raise
        return tmp, fd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files(folder: Folder | str | Path, files: dict[str, Callable[[Path], None]]) -> None:
    """Write {name: write(path)} into folder as one unit (Stage): on any failure the folder holds what it
    held before. A name that is a folder, not a file, is refused before anything is written."""
    from .errors import OutputError

    if not isinstance(folder, Folder):
        with Folder(folder) as f:
            return write_files(f, files)
    for name in files:
        st = folder.lstat(name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{folder.path / name} is a folder, not a file; remove it or choose another folder")
    with guarded(), Stage(folder) as s:
        steps = [s.add(name, write) for name, write in files.items()]
        s.commit(steps)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """with atomic_file(p) as tmp: write tmp; on a clean exit it becomes p (os.replace), else it is removed."""
    path = Path(path)
    with guarded(), Folder(path.parent) as folder, Stage(folder) as s:
        tmp, fd = new_temp(folder, path.name)
        s.temps.append((path.name, tmp, fd))
        yield folder.at(tmp)
        os.fchmod(fd, 0o666 & ~_umask())
        s.commit([0])
