"""Writing a report folder without ever touching a file the report did not write.

A report folder holds MANIFEST, which lists the report's own files. A folder may receive a report when
it is new, empty, or holds an earlier report (a valid MANIFEST): then only the files that report listed
are replaced or removed, and every other file stays as it was. Any other non-empty folder is refused,
unless force: then the report's files are written beside the others (replacing same-named ones), and
nothing is deleted.

Each file is written to a temporary sibling first (minigpt2.atomic); only when all of them are written
are they renamed into place, so a failure (a full disk, an interrupt) leaves the earlier report intact.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from minigpt2.atomic import TMP_RE, atomic_file, sweep_stale, write_files
from minigpt2.errors import OutputError
from minigpt2.safeio import load_json

MANIFEST = "minigpt2-report.json"
_OWN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.(csv|html|npy|npz|json|svg)$")  # what a report writes


def read_manifest(folder: Path) -> list[str] | None:
    """The files an earlier report listed, or None when folder holds no valid manifest."""
    try:
        data = load_json(folder / MANIFEST, 16 << 20)    # a regular file, bounded: never a FIFO, never deep
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("tool") == "minigpt2" and isinstance(data.get("files"), list)):
        return None
    files = data["files"]
    if not all(isinstance(f, str) and _OWN_NAME.match(f) for f in files):
        return None
    return files


def check_out(out: str | Path, force: bool = False) -> Path:
    """The folder a report may be written to, or OutputError saying why not. Touches nothing."""
    if not str(out).strip():
        raise OutputError("--out is empty: name a folder for the report, e.g. --out minigpt2-report")
    path = Path(out).expanduser()
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path} is a symbolic link to nothing (or a loop); choose another --out")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; choose another --out")
    if path.is_dir() and read_manifest(path) is None and (path / MANIFEST).exists():
        # even with --force: a report would overwrite (and, on failure, remove) a file it did not write
        raise OutputError(f"{path / MANIFEST} is not a minigpt2 report's manifest, and a report would replace "
                          "it; move it away or choose another --out")
    if path.is_dir() and not force and read_manifest(path) is None:
        others = [n for n in os.listdir(path) if not TMP_RE.match(n)]
        if others:
            raise OutputError(f"{path} is not empty and holds no minigpt2 report; choose a new or empty folder, "
                              "or add --force to write the report's files into it (nothing else is touched)")
    if not path.exists():
        probe_folder(path)
    elif not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path} is not writable")
    return path


def probe_folder(path: Path) -> None:
    """OutputError unless the missing folder path can be created: made and removed again, so that a bad
    --out fails before any work, and nothing is left behind."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: {parent} is a file, not a folder")
    made = []
    try:
        for p in reversed([q for q in (path.absolute(), *path.absolute().parents) if not q.exists()]):
            p.mkdir()
            made.append(p)
    except OSError as e:
        raise OutputError(f"cannot create {path}: {e.strerror or e}") from None
    finally:
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass


def write_folder(out: str | Path, files: dict[str, Callable[[Path], None]], force: bool = False) -> Path:
    """Write files {name: write(path)} into out under the rules above, as one unit (minigpt2.atomic.write_files):
    on any failure the folder holds what it held before. Returns the folder."""
    folder = check_out(out, force)
    for name in files:
        if not _OWN_NAME.match(name) or name == MANIFEST:
            raise ValueError(f"not a report file name: {name!r}")
    fa = folder.absolute()
    created = [p for p in (fa, *fa.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    sweep_stale(folder)
    had = read_manifest(folder)                     # None: no manifest at all (check_out refused a foreign one)
    earlier = had or []

    def finish():                                   # inside the protected block, after the renames
        for name in set(earlier) - set(files):      # an earlier report's files this one does not have
            old = folder / name
            if old.is_file() and not old.is_symlink():
                old.unlink()
        _write_manifest(folder, sorted(files))

    try:
        _write_manifest(folder, sorted(set(earlier) | set(files)))   # lists every file of ours meanwhile
        write_files(folder, files, after=finish)
    except BaseException:
        if had is not None:
            _write_manifest(folder, earlier)
        else:                                       # the manifest is the one this call wrote
            (folder / MANIFEST).unlink(missing_ok=True)
        for made in created:           # folders this call created, innermost first, if still empty
            try:
                made.rmdir()
            except OSError:
                break
        raise
    return folder


def _write_manifest(folder: Path, names: list[str]) -> None:
    with atomic_file(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"tool": "minigpt2", "files": names}, indent=1) + "\n", encoding="utf-8")
