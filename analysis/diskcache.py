"""The disk cache: arrays that depend only on the weights, kept between runs, checked on every load.

A cache file is MAGIC, an 8-byte header length, a JSON header, then the raw arrays (64-byte aligned).
The header carries the fingerprint of the weights and settings the arrays came from, and each array's
dtype, shape and CRC-32. A load that finds any mismatch, or cannot read the file, prints one warning
line on stderr and returns None: the caller rebuilds the arrays and saves them over the bad file.
Writes are atomic (minigpt2.atomic): a killed run leaves at most a temporary file, swept on the next
save into the same folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np

from minigpt2.atomic import atomic_file, sweep_stale

MAGIC = b"MINIGPT2-CACHE\x001\n"
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


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"))


def save(path: Path, key: str, arrays: dict[str, np.ndarray]) -> bool:
    """Write arrays under key, atomically. A failure (read-only or full disk) warns and returns False."""
    entries, offset = [], 0
    for name, a in arrays.items():
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "crc32": _crc(a)})
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
        warn(f"cannot write the cache file {path} ({e.strerror or e}); it will be computed again next time")
        return False


def load(path: Path, key: str, expect: dict[str, tuple[np.dtype, tuple]],
         out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays saved under key, if path holds exactly them (names, dtypes, shapes, checksums); else None.

    A missing file is silent; any other problem warns once and returns None. out: buffers to read into.
    """
    if not path.is_file():
        return None
    try:
        arrays = _read(path, key, expect, out or {})
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


def _read(path, key, expect, out):
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise _Damaged("not a minigpt2 cache file (or an older format)")
        n = int.from_bytes(f.read(8), "little")
        if not 2 <= n <= 1 << 20:
            raise _Damaged("damaged (header length)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
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
        offset, result = len(MAGIC) + 8 + n, {}
        for e in entries:
            dtype, want = expect[e["name"]]                       # None in want: any length on that axis
            shape = tuple(e["shape"]) if isinstance(e.get("shape"), list) else ()
            if (np.dtype(e["dtype"]) != np.dtype(dtype) or len(shape) != len(want)
                    or any(w is not None and w != n for w, n in zip(want, shape))
                    or not all(type(n) is int and 0 <= n < 1 << 40 for n in shape)):
                raise _Damaged(f"damaged ({e['name']} has dtype {e['dtype']} and shape {shape}, "
                               f"expected {np.dtype(dtype).str} and {tuple(want)})")
            buf = out.get(e["name"])
            if buf is None or buf.dtype != np.dtype(dtype) or buf.shape != tuple(shape) or not buf.flags.c_contiguous:
                buf = np.empty(shape, dtype)
            offset += -offset % ALIGN
            f.seek(offset)
            if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
                raise _Damaged("truncated")
            offset += buf.nbytes
            if _crc(buf) != e["crc32"]:
                raise _Damaged(f"corrupt (checksum mismatch in {e['name']})")
            result[e["name"]] = buf
    return result

