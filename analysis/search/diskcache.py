"""The disk cache: arrays that depend only on the weights, kept between runs, checked on every load.

A cache file is MAGIC, an 8-byte header length, a JSON header, then the raw arrays (64-byte aligned).
The header carries the fingerprint of the weights and settings the arrays came from, and each array's
dtype, shape and checksum. A load that finds any mismatch, or cannot read the file, prints one warning
line on stderr and returns None: the caller rebuilds the arrays and saves them over the bad file. A
file written by an older minigpt2 (another MAGIC version) is rebuilt the same way, without a warning.
Writes are atomic (minigpt2.atomic): a killed run leaves at most a temporary file, swept by the next
load or save in the same folder (once no process holds its lock). A cache folder that cannot be searched
(mode 000) or written (read-only) warns once, and the run goes on without it (or without saving to it).

Loads memory-map the file: the arrays are read-only views of it (no copy; the page cache serves a warm
run). Files are only ever replaced by rename, never rewritten in place, so a mapped file never changes
under a reader. The checksum is a 64-bit sum of the array's 8-byte words, each block of 1,024 words
weighted by a distinct odd number: any single changed word, zeroed or garbage data, truncation and
swapped blocks change it, and numpy computes it at memory speed (3 GB of projected vocabularies in about
0.1 s, where zlib's CRC-32 took 0.7 s). It is weaker than a CRC against some multi-word damage: two flips
of the same word bit 63 (two float32 sign bits at odd positions) cancel, as do words reordered within one
8 KiB block. Position-weighted sums that catch those ran at 2-3 GB/s, slower than CRC-32 here.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import sys
from pathlib import Path

import numpy as np

from minigpt2.atomic import atomic_file, sweep_stale

MAGIC = b"MINIGPT2-CACHE\x002\n"
ALIGN = 64
CACHE_VERSION = "2"


def cache_dir() -> Path:
    """$MINIGPT2_CACHE, else $XDG_CACHE_HOME/minigpt2, else ~/.cache/minigpt2."""
    if os.environ.get("MINIGPT2_CACHE"):
        return Path(os.environ["MINIGPT2_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minigpt2"


def fingerprint(model, words: np.ndarray, label: str, arrays: tuple) -> str:
    """Hash of the settings (label), the word filter and a strided sample (plus the sum) of each weight used."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{CACHE_VERSION}|{label}|{model.cfg.describe()}".encode())
    h.update(np.ascontiguousarray(words).tobytes())
    for arr in arrays:
        flat = arr.reshape(-1)
        h.update(np.ascontiguousarray(flat[:: max(1, flat.size // 65536)]).tobytes())
        h.update(np.float64(flat.sum(dtype=np.float64)).tobytes())
    return h.hexdigest()


def short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def warn(message: str) -> None:
    print(f"minigpt2: warning: {message}", file=sys.stderr)


_unreadable: set[Path] = set()      # cache folders found unusable this process: warned about once, then skipped
_unwritable: set[Path] = set()


def _root(path: Path) -> Path:
    """The cache folder path belongs to: cache_dir() (for every file under it), else path's own folder."""
    root = cache_dir()
    return root if root in path.parents else path.parent


def _skip(path: Path, unusable: set, e: OSError, what: str) -> None:
    root = _root(path)
    if root not in _unreadable | _unwritable:
        warn(f"cannot {what} the cache folder {root} ({e.strerror or e}); going on without "
             f"{'it' if unusable is _unreadable else 'saving to it'}")
    unusable.add(root)
    if unusable is _unreadable:
        _unwritable.add(root)


CHECK_BLOCK = 1024   # words per weighted block


def checksum(a: np.ndarray) -> int:
    """The array's bytes as 8-byte words: sum over blocks of CHECK_BLOCK words of (2 b + 1) x the block's
    sum, mod 2^64 (an odd weight keeps every single-bit change visible), plus the last few bytes."""
    u64 = np.uint64
    raw = np.frombuffer(memoryview(np.ascontiguousarray(a)).cast("B"), np.uint8)
    n = raw.size // 8
    words = raw[:n * 8].view(u64)
    nb = -(-n // CHECK_BLOCK)
    sums = np.add.reduceat(words, np.arange(0, n, CHECK_BLOCK), dtype=u64) if n else np.zeros(0, u64)  # [nb]
    total = int((sums * np.arange(1, 2 * nb + 1, 2, dtype=u64)).sum(dtype=u64))
    tail = int.from_bytes(raw[n * 8:].tobytes(), "little")               # < 8 bytes
    return (total + tail * 0x9E3779B97F4A7C15 + raw.size) % (1 << 64)


def save(path: Path, key: str, arrays: dict[str, np.ndarray]) -> bool:
    """Write arrays under key, atomically. A failure (read-only or full disk) warns once for the cache folder,
    later saves to it are skipped, and it returns False."""
    if _root(path) in _unwritable:
        return False
    entries, offset = [], 0
    for name, a in arrays.items():
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "sum64": checksum(a)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(path.parent)
        header = json.dumps({"key": key, "arrays": entries}).encode()
        offset = len(MAGIC) + 8 + len(header)
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for a in arrays.values():
                f.write(b"\0" * (-offset % ALIGN))
                offset += -offset % ALIGN
                f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
                offset += a.nbytes
        return True
    except OSError as e:
        _skip(path, _unwritable, e, "write to")
        return False


def load(path: Path, key: str, expect: dict[str, tuple[np.dtype, tuple]]) -> dict[str, np.ndarray] | None:
    """The arrays saved under key, if path holds exactly them (names, dtypes, shapes, checksums); else None.
    They are read-only views of the memory-mapped file.

    A missing file, or one of an older minigpt2's format, is silent; any other problem warns once and
    returns None.
    """
    if _root(path) in _unreadable:
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except FileNotFoundError:
        sweep_stale(path.parent)
        return None
    except OSError as e:                     # e.g. a folder that cannot be searched (mode 000)
        if isinstance(e, NotADirectoryError):
            return None
        _skip(path, _unreadable, e, "read")
        return None
    sweep_stale(path.parent)
    try:
        arrays = _read(path, key, expect)
    except _OlderFormat:
        return None                          # written by an older minigpt2: rebuilt, which is no news
    except _Damaged as e:
        reason = str(e)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, RecursionError) as e:
        reason = f"damaged (unreadable: {type(e).__name__})"
    else:
        return arrays
    warn(f"cache file {path} is {reason}; rebuilding it")
    return None


class _Damaged(ValueError):
    """What is wrong with a cache file, in words."""


class _OlderFormat(Exception):
    """A cache file of an older minigpt2 (another MAGIC version): rebuilt without a warning."""


def _read(path, key, expect):
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)    # the mapping outlives the file object
    if data[:len(MAGIC)] != MAGIC:
        if data[:len(MAGIC) - 2] == MAGIC[:-2]:
            raise _OlderFormat
        raise _Damaged("not a minigpt2 cache file")
    n = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
    if not 2 <= n <= min(1 << 20, len(data) - len(MAGIC) - 8):
        raise _Damaged("damaged (header length)")
    offset = len(MAGIC) + 8
    try:
        header = json.loads(data[offset:offset + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Damaged("damaged (its header is not JSON)") from None
    if not (isinstance(header, dict) and isinstance(header.get("arrays"), list)
            and all(isinstance(e, dict) for e in header["arrays"])):
        raise _Damaged("damaged (header)")
    if header.get("key") != key:
        raise _Damaged("for other weights or settings, or damaged (fingerprint mismatch)")
    entries = header["arrays"]
    if [e.get("name") for e in entries] != list(expect):
        raise _Damaged("damaged (unexpected contents)")
    offset, result = offset + n, {}
    for e in entries:
        dtype, want = expect[e["name"]]                           # None in want: any length on that axis
        shape = tuple(e["shape"]) if isinstance(e.get("shape"), list) else ()
        if (np.dtype(e["dtype"]) != np.dtype(dtype) or len(shape) != len(want)
                or any(w is not None and w != n for w, n in zip(want, shape))
                or not all(type(n) is int and 0 <= n < 1 << 40 for n in shape)):
            raise _Damaged(f"damaged ({e['name']} has dtype {e['dtype']} and shape {shape}, "
                           f"expected {np.dtype(dtype).str} and {tuple(want)})")
        offset += -offset % ALIGN
        count = int(np.prod(shape, dtype=np.int64))
        if offset + count * np.dtype(dtype).itemsize > len(data):
            raise _Damaged("truncated")
        arr = np.frombuffer(data, dtype, count, offset).reshape(shape)
        offset += arr.nbytes
        if checksum(arr) != e.get("sum64"):
            raise _Damaged(f"corrupt (checksum mismatch in {e['name']})")
        result[e["name"]] = arr
    return result
