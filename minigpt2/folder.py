"""A folder held open by its descriptor: created as parallel runs may, locked, and acted on relative to itself.

On Linux every operation (open, rename, link, unlink, stat) is relative to the folder's descriptor (dir_fd=),
and a writer that wants a path gets /proc/self/fd/N/NAME, which also resolves through the held descriptor:
once open, renaming the folder, or replacing its path by a symbolic link, redirects nothing. Elsewhere the
same calls fall back to paths.

make_folders creates the missing folders of a path, tolerating runs that create (EEXIST) or remove
(ENOENT) the same parents at the same time, and returns those it made; remove_made removes exactly
those, innermost first, while empty and still the folders it made. lock_folder takes filelock's lock on
the folder's own descriptor (no lock file), or, where the file system cannot lock a folder (NFS), on a
lock file inside it, removed again on release.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import time
from pathlib import Path

DIR_FD = (hasattr(os, "O_DIRECTORY") and os.path.isdir("/proc/self/fd")
          and {os.open, os.stat, os.unlink, os.rename, os.link, os.rmdir} <= os.supports_dir_fd)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
LOCK_NAME = ".minigpt2.lock"     # only where a folder cannot be locked itself
LOCK_WAIT_S = 30.0               # how long a second run waits for the first to finish writing a folder


class Folder:
    """An open folder. path is for messages; every operation goes through the descriptor where it can."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC) if DIR_FD else None
        self._lock = None        # (kind, fd) while locked

    def close(self) -> None:
        self.unlock()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _n(self, name: str) -> str:
        return name if self.fd is not None else str(self.path / name)

    def at(self, name: str) -> Path:
        """A path to name inside this folder for code that wants one (a writer, a library)."""
        return Path(f"/proc/self/fd/{self.fd}/{name}") if self.fd is not None else self.path / name

    def open(self, name: str, flags: int, mode: int = 0o666) -> int:
        return os.open(self._n(name), flags | CLOEXEC, mode, dir_fd=self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        """name's own status (a link is not followed), or None when there is nothing by that name."""
        try:
            return os.stat(self._n(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def is_same(self, name: str, fd: int) -> bool:
        """Whether name still refers to the file open as fd (not removed or replaced since)."""
        st = self.lstat(name)
        return st is not None and os.path.samestat(st, os.fstat(fd))

    def unlink(self, name: str) -> None:
        os.unlink(self._n(name), dir_fd=self.fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(self._n(src), self._n(dst), src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def link(self, src: str, dst: str) -> None:
        os.link(self._n(src), self._n(dst), src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    def names(self) -> list[str]:
        return os.listdir(self.fd if self.fd is not None else self.path)

    def removed(self) -> bool:
        """Whether the held folder has been removed since it was opened."""
        return self.fd is not None and os.fstat(self.fd).st_nlink == 0

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of the regular file name (a link, FIFO or device is refused before any read: ValueError);
        ValueError too when it holds more than limit bytes."""
        fd = self.open(name, os.O_RDONLY | NOFOLLOW | NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{self.path / name} is not a regular file")
            if st.st_size > limit:
                raise ValueError(f"{self.path / name} is over {limit} bytes")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise ValueError(f"{self.path / name} is over {limit} bytes")
        return data

    # -- the lock ---------------------------------------------------------------------------------
    def try_lock(self) -> bool:
        """Take the folder's lock if no other process holds it. OSError if it cannot be taken at all."""
        from filelock import lock_descriptor

        if self.fd is not None:
            try:
                if not lock_descriptor(self.fd, blocking=False):
                    return False
                self._lock = ("folder", self.fd)
                return True
            except OSError as e:
                if e.errno not in (errno.EBADF, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
        while True:                 # this file system cannot lock a folder: a lock file in it
            fd = self.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | NOFOLLOW | NONBLOCK, 0o666)
            try:
                if not lock_descriptor(fd, blocking=False):
                    os.close(fd)
                    return False
            except BaseException:
                os.close(fd)
                raise
            if self.is_same(LOCK_NAME, fd):          # not removed by its previous holder meanwhile
                self._lock = ("file", fd)
                return True
            os.close(fd)

    def unlock(self) -> None:
        if self._lock is None:
            return
        from filelock import unlock_descriptor

        kind, fd = self._lock
        self._lock = None
        if kind == "file":
            try:
                self.unlink(LOCK_NAME)              # while still held: a waiter then sees it gone, and retries
            except OSError:
                pass
            os.close(fd)
        else:
            unlock_descriptor(fd)


def open_locked(path: Path, wait_s: float, busy: str) -> tuple[Folder, list]:
    """The folder at path (created as needed), open and locked: (folder, the folders made). It waits up to
    wait_s for another run's lock, saying so once on stderr; then OutputError(busy). A folder removed by
    the run that held it meanwhile is made again."""
    from .errors import OutputError

    for _ in range(100):
        made = make_folders(path)
        try:
            folder = Folder(path)
        except OSError as e:
            remove_made(made)
            raise OutputError(f"cannot open {path}: {e.strerror or e}") from None
        try:
            deadline, said = time.monotonic() + wait_s, False
            while not _try_lock(folder):
                if time.monotonic() >= deadline:
                    raise OutputError(busy)
                if not said:
                    print(f"minigpt2: waiting for another minigpt2 run to finish writing {path}", file=sys.stderr)
                    said = True
                time.sleep(0.05)
            if not folder.removed():
                return folder, made
        except BaseException:
            close_removing(folder, made)
            raise
        folder.close()
    raise OutputError(f"cannot create {path}: it keeps being removed by another process")


def _try_lock(folder: Folder) -> bool:
    try:
        return folder.try_lock()
    except OSError as e:            # a file system with no locks at all: go on, and say what is not checked
        print(f"minigpt2: warning: cannot lock {folder.path} ({e.strerror or e}); another run writing into it "
              "at the same time would not be noticed", file=sys.stderr)
        return True


def make_folders(path: Path) -> list[tuple[Path, os.stat_result]]:
    """Create path and its missing parents, as os.makedirs(exist_ok=True) would, but safe against parallel
    runs creating or removing the same parents; returns [(folder, its status)] for each folder this call
    made, outermost first. OutputError naming the reason when it cannot."""
    from .errors import OutputError

    path = Path(os.path.abspath(path))
    for _ in range(100):
        made = []
        missing = []
        for p in (path, *path.parents):
            if os.path.isdir(p):
                break
            missing.append(p)
        try:
            for p in reversed(missing):
                try:
                    os.mkdir(p)
                    made.append((p, os.stat(p, follow_symlinks=False)))
                except FileExistsError:
                    if not p.is_dir():
                        raise OutputError(f"cannot create {path}: {p} is a file, not a folder") from None
            return made
        except FileNotFoundError:       # a parent made a moment ago was removed by another run: again
            remove_made(made)
        except OutputError:
            remove_made(made)
            raise
        except OSError as e:
            remove_made(made)
            raise OutputError(f"cannot create {path}: {e.strerror or e}") from None
    raise OutputError(f"cannot create {path}: its parents keep being removed by another process")


def close_removing(folder: Folder, made: list) -> None:
    """Close folder and remove the folders made for it (while empty): under the folder's own lock where it
    has one, so that a run waiting for it sees it removed and makes it again."""
    if folder._lock is not None and folder._lock[0] == "file":
        folder.unlock()             # its lock file would keep the folder from being removed
    remove_made(made)
    folder.close()


def remove_made(made: list) -> None:
    """Remove the folders make_folders made, innermost first, each only while empty and still the same
    folder (not one put in its place since); stops at the first that cannot go."""
    for p, st in reversed(made):
        try:
            now = os.stat(p, follow_symlinks=False)
            if not os.path.samestat(now, st):
                return
            os.rmdir(p)
        except OSError:
            return
