"""Writing a report folder without ever touching a file the report did not write.

A report folder holds MANIFEST, which records each file the report wrote: its name, size and SHA-256.
A folder may receive a report when it is new, empty, or holds an earlier report (a valid MANIFEST). A
file counts as the earlier report's only while its content still matches its record; any other file is
foreign. A report replaces a foreign file of the same name only with force (else it is refused, naming
it, before anything is written), and never deletes one: an earlier report's file that the user has
changed, or that a hand-made manifest lists, stays. Any other non-empty folder is refused, unless force:
then the report's files are written beside the others (replacing same-named ones), and nothing is
deleted.

One run at a time writes a folder: it holds the folder's lock (minigpt2.folder) from before its checks
until its last rename; a second run waits up to LOCK_WAIT_S for it, saying so on stderr, then gives up
with one line. The folder is held open, so every step acts on it even if its path is swapped meanwhile.
Each file is written to a temporary sibling first; only when all of them are written are they renamed
into place, as one unit (minigpt2.atomic.Stage), so a failure (a full disk, an interrupt) leaves the
earlier report intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Callable

from minigpt2.atomic import TMP_RE, Stage, sweep_stale
from minigpt2.errors import OutputError
from minigpt2.folder import LOCK_NAME, LOCK_WAIT_S, NOFOLLOW, NONBLOCK, Folder, close_removing, make_folders, \
    open_locked, remove_made
from minigpt2.signals import guarded, held

MANIFEST = "minigpt2-report.json"
_OWN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.(csv|html|npy|npz|json|svg|parquet)\Z")   # what a report (or store) writes
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
MANIFEST_LIMIT = 1 << 20            # bytes: a real manifest is a few KB


def read_manifest(folder: Folder, manifest: str = MANIFEST) -> list[dict] | None:
    """The records {name, size, sha256} of the earlier report in folder, or None when its MANIFEST is not a
    valid one (not a regular file, too large, not JSON, not minigpt2's). An older minigpt2's manifest (a
    list of names) is valid, with records that match no file: its files are foreign."""
    try:
        data = json.loads(folder.read(manifest, MANIFEST_LIMIT).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (isinstance(data, dict) and data.get("tool") == "minigpt2" and isinstance(data.get("files"), list)):
        return None
    records = []
    for r in data["files"]:
        if isinstance(r, str):
            r = {"name": r, "size": -1, "sha256": ""}
        if not (isinstance(r, dict) and isinstance(r.get("name"), str) and _OWN_NAME.match(r["name"])
                and type(r.get("size")) is int and isinstance(r.get("sha256"), str)):
            return None
        records.append({"name": r["name"], "size": r["size"], "sha256": r["sha256"]})
    return records


def _sha256(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _record(name: str, path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY)
    try:
        return {"name": name, "size": os.fstat(fd).st_size, "sha256": _sha256(fd)}
    finally:
        os.close(fd)


def _matches(folder: Folder, name: str, records: list[dict]) -> bool:
    """Whether name is a regular file whose size and SHA-256 are those of one of its records."""
    want = [r for r in records if r["name"] == name and _SHA256.match(r["sha256"])]
    st = folder.lstat(name)
    if not want or st is None or not stat.S_ISREG(st.st_mode) or all(r["size"] != st.st_size for r in want):
        return False
    try:
        fd = folder.open(name, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    except OSError:
        return False
    try:
        return os.path.samestat(os.fstat(fd), st) and _sha256(fd) in {r["sha256"] for r in want}
    finally:
        os.close(fd)


def _passing(name: str) -> bool:
    """A file of a minigpt2 run in progress (or killed): not the user's."""
    return bool(TMP_RE.match(name)) or name == LOCK_NAME


def _check(folder: Folder, names, force: bool, manifest: str = MANIFEST, what: str = "report") -> list[dict]:
    """OutputError unless a report (what: or a corpus store, with its own manifest) of files names may go
    into folder (the rules above); else the earlier one's records ([] when there is none)."""
    path = folder.path
    if folder.lstat(manifest) is not None:
        records = read_manifest(folder, manifest)
        if records is None:     # even with --force: a report would replace a file it did not write
            raise OutputError(f"{path / manifest} is not a minigpt2 {what}'s manifest, and a {what} would "
                              "replace it; move it away or choose another --out")
    else:
        records = []
        if not force and any(not _passing(n) for n in folder.names()):
            raise OutputError(f"{path} is not empty and holds no minigpt2 {what}; choose a new or empty folder, "
                              f"or add --force to write the {what}'s files into it (nothing else is touched)")
    foreign = []
    for name in names:
        st = folder.lstat(name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path / name} is a folder, not a file; remove it or choose another folder")
        if st is not None and not force and not _matches(folder, name, records):
            foreign.append(name)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise OutputError(f"{path / foreign[0]}{more} was not written by minigpt2, or has changed since; the "
                          "report would replace it: move it away, or add --force to replace it")
    return records


def check_out(out: str | Path, force: bool = False, manifest: str = MANIFEST, what: str = "report") -> Path:
    """The folder a report (or a corpus store: what, with its manifest) may be written to, or OutputError
    saying why not. Touches nothing."""
    if not str(out).strip():
        raise OutputError(f"--out is empty: name a folder for the {what}, e.g. --out minigpt2-{what.split()[-1]}")
    path = Path(out).expanduser()
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path} is a symbolic link to nothing (or a loop); choose another --out")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; choose another --out")
    if not path.exists():
        probe_folder(path)
        return path
    try:
        folder = Folder(path)
    except OSError as e:
        raise OutputError(f"cannot open {path}: {e.strerror or e}") from None
    with folder:
        _check(folder, (), force, manifest, what)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path} is not writable")
    return path


def probe_folder(path: Path) -> None:
    """OutputError unless the missing folder path can be created: made and removed again, so that a bad
    --out fails before any work, and nothing is left behind (parallel runs making the same parents are
    fine: minigpt2.folder.make_folders)."""
    remove_made(make_folders(path))


def write_folder(out: str | Path, files: dict[str, Callable[[Path], None]], force: bool = False) -> Path:
    """Write files {name: write(path)} into out under the rules above, as one unit: on any failure the
    folder holds what it held before, and the folders this call created are gone. Returns the folder."""
    path = check_out(out, force)
    for name in files:
        if not _OWN_NAME.match(name) or name == MANIFEST:
            raise ValueError(f"not a report file name: {name!r}")
    with guarded():
        folder, made = open_locked(path, LOCK_WAIT_S, f"{path} is being written by another minigpt2 run; run "
                                   "again once it has finished, or choose another --out")
        try:
            sweep_stale(folder)
            earlier = _check(folder, files, force)
            ours = {r["name"] for r in earlier if _matches(folder, r["name"], earlier)} - {MANIFEST}
            drop = sorted(ours - set(files))        # an earlier report's files this one does not have
            with Stage(folder) as stage:
                steps, new = [], []
                for name, write in files.items():
                    steps.append(stage.add(name, write))
                    new.append(_record(name, stage.path(steps[-1])))
                kept = [r for r in earlier if r["name"] in ours]
                meanwhile = stage.add(MANIFEST, _manifest(kept + new))  # lists every file of ours meanwhile
                final = stage.add(MANIFEST, _manifest(sorted(new, key=lambda r: r["name"])))
                stage.commit([meanwhile, *steps, *drop, final])
        except BaseException:
            with held():
                close_removing(folder, made)
            raise
        folder.close()
    return path


def _manifest(records: list[dict]) -> Callable[[Path], None]:
    text = json.dumps({"tool": "minigpt2", "files": records}, indent=1) + "\n"
    return lambda p: p.write_text(text, encoding="utf-8")
